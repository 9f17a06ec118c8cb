"""`kt-nnunet demo`: the demo experiment on the embedded brain MRI data, in its own folder."""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Callable

import yaml

DEMO_BASE_ID = 900


def demo_config_text() -> str:
    return resources.files("kt_nnunet.experiment").joinpath("demo.yaml").read_text()


def run_demo(out: Path, *, force: bool = False, progress: Callable[[str], None] = print) -> Path:
    """Build the demo datasets (once) and run or resume the demo experiment in ``out``; returns results.json."""
    from kt_nnunet.data.demo import build_demo
    from kt_nnunet.experiment.config import parse_config
    from kt_nnunet.experiment.runner import run_experiment, use_experiment_folders

    out = Path(out).absolute()
    folders = use_experiment_folders(out, override=True)  # the demo never touches a user's own nnU-Net folders
    raw = Path(folders["nnUNet_raw"])
    if not any(raw.glob(f"Dataset{DEMO_BASE_ID}_*")):
        progress("building the demo datasets from the MNI152 template in nilearn ...")
        build_demo(raw, base_id=DEMO_BASE_ID, with_downstream=True)
    data = yaml.safe_load(demo_config_text())
    data["output"] = str(out)
    config = parse_config(data, source="kt-nnunet demo (kt_nnunet/experiment/demo.yaml)", base_dir=out)
    return run_experiment(config, force=force, progress=progress, own_nnunet_folders=True)
