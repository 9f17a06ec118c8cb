"""`kt-nnunet demo`: the demo experiment on the embedded brain MRI data, in its own folder."""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Callable, Optional

import yaml

DEMO_BASE_ID = 900


def demo_config_text() -> str:
    return resources.files("kt_nnunet.experiment").joinpath("demo.yaml").read_text()


def demo_runner(out: Path, *, force: bool = False, verbose: bool = False,
                progress: Optional[Callable[[str], None]] = None):
    """The demo experiment's runner for ``out``, with the demo datasets built (once) in its own nnU-Net folders."""
    from kt_nnunet.data.demo import build_demo
    from kt_nnunet.experiment.config import parse_config
    from kt_nnunet.experiment.runner import experiment_runner
    from kt_nnunet.nnunet.paths import nnunet_folders

    out = Path(out).absolute()
    data = yaml.safe_load(demo_config_text())
    data["output"] = str(out)
    config = parse_config(data, source="kt-nnunet demo (kt_nnunet/experiment/demo.yaml)", base_dir=out)
    # the demo never touches a user's own nnU-Net folders
    runner = experiment_runner(config, force=force, verbose=verbose, progress=progress, own_nnunet_folders=True)
    raw = Path(runner.folders["nnUNet_raw"])
    if not any(raw.glob(f"Dataset{DEMO_BASE_ID}_*")):
        runner.console.say("building the demo datasets from the MNI152 template in nilearn ...")
        with runner.console.capture("build_demo_data"), nnunet_folders(runner.folders):
            build_demo(raw, base_id=DEMO_BASE_ID, with_downstream=True)
    return runner


def run_demo(out: Path, *, force: bool = False, verbose: bool = False,
             progress: Optional[Callable[[str], None]] = None) -> Path:
    """Build the demo datasets (once) and run or resume the demo experiment in ``out``; returns results.json."""
    return demo_runner(out, force=force, verbose=verbose, progress=progress).run()
