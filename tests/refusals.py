"""Helpers for tests of refused input: the one `Error:` line a command must print, a tiny experiment config, and a
dataset kt-nnunet never wrote."""
from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner


def one_error_line(args, *expected):
    from kt_nnunet.cli import main

    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    for text in expected:
        assert text in lines[0], result.output
    return lines[0]


def write_experiment_config(tmp_path, output, name, **changes) -> Path:
    import yaml

    config = {"name": "tiny", "output": str(output), "source": 501, "transferal": 502,
              "test": {"dataset": 503, "split": "test"},
              "budget": {"epochs": 1, "iterations_per_epoch": 2, "val_iterations_per_epoch": 1},
              "teachers": [{"architecture": "unet", "tiny": True}], "students": ["light_unet"],
              "modes": ["single_teacher"], **changes}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def hand_labelled_dataset(folder: Path) -> Path:
    """A dataset kt-nnunet never wrote: nnU-Net's own dataset.json keys, no kt-nnunet record or provenance."""
    (folder / "labelsTr").mkdir(parents=True)
    (folder / "labelsTr" / "case_000.nii.gz").write_bytes(b"drawn by hand for a week")
    (folder / "dataset.json").write_text(json.dumps({"channel_names": {"0": "MRI"}, "labels": {"background": 0},
                                                     "numTraining": 1, "file_ending": ".nii.gz"}))
    return folder
