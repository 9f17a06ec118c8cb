"""The conformance kit's end-to-end step: a tiny dataset planned for one architecture with ``kt-nnunet plan``,
then the ``nnUNetv2_train`` and ``nnUNetv2_predict`` commands it prints, run exactly as printed.

Each command runs in a fresh process, as a user runs it, so this also checks that the plugin is found through its
entry point and that nnU-Net imports the network class by the dotted path in the plans. The architecture's
package must therefore be installed (``pip install -e .`` is enough).
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from kt_nnunet.errors import KtNnunetError

# One epoch of two iterations and one validation iteration: nnU-Net's whole training loop, in seconds on a CPU.
BUDGET = ("--epochs", "1", "--iterations", "2", "--val-iterations", "1")
DATASETS = {2: (981, "KitTiny2d", "2d"), 3: (982, "KitTiny3d", "3d_fullres")}
NUM_TRAIN = 5  # the fewest cases nnU-Net's five-fold split takes
TIMEOUT_S = 900


class TrainStepError(KtNnunetError, AssertionError):
    """A command of the tiny train step failed; the message holds the command and the end of its output."""


@dataclass(frozen=True)
class TrainStepResult:
    plans_file: Path
    model_folder: Path
    predictions: Optional[Path]
    commands: tuple[str, ...]


def nnunet_environment(workdir: Path, extra: Optional[dict] = None) -> dict:
    """The environment of the step's commands: nnU-Net's folders inside ``workdir``, kt-nnunet's trainers, this
    interpreter's scripts first on PATH, and nnU-Net settings that suit a few CPU cores."""
    from kt_nnunet.nnunet.ext_trainers import EXT_TRAINER_FOLDER
    from kt_nnunet.nnunet.paths import NNUNET_FOLDER_VARIABLES

    env = dict(os.environ)
    for variable in NNUNET_FOLDER_VARIABLES:
        env[variable] = str(Path(workdir, variable).absolute())
        Path(env[variable]).mkdir(parents=True, exist_ok=True)
    env["nnUNet_extTrainer"] = str(EXT_TRAINER_FOLDER)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("nnUNet_def_n_proc", "1")  # nnU-Net's final validation: workers cost more than they save here
    env.pop("nnUNet_n_proc_DA", None)  # 0 is fastest for training but crashes nnU-Net's planner
    env.update(extra or {})
    return env


def tiny_raw_dataset(dim: int, raw: Path) -> tuple[str, str]:
    """``(dataset name, configuration)`` of the step's tiny dataset in ``raw``, written on first use."""
    from kt_nnunet.data import ShapeConfig, synth_dataset

    dataset_id, name, configuration = DATASETS[dim]
    folder = raw / f"Dataset{dataset_id:03d}_{name}"
    if not folder.is_dir():
        shapes = ShapeConfig(shape=(64, 64)) if dim == 2 else ShapeConfig(shape=(16, 32, 32), radius_mm=8.0)
        synth_dataset(dataset_id, name, raw, num_train=NUM_TRAIN, num_test=1, shapes=shapes)
    return folder.name, configuration


def run_command(command: Sequence[str], env: dict, timeout: float = TIMEOUT_S) -> str:
    printable = shlex.join(command)
    try:
        result = subprocess.run(list(command), env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise TrainStepError(f"`{printable}` did not finish in {timeout:.0f} s") from exc
    if result.returncode != 0:
        raise TrainStepError(f"`{printable}` failed with exit status {result.returncode}:\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout


def printed_command(output: str, label: str) -> str:
    """The command ``kt-nnunet plan`` printed after ``label:``."""
    for line in output.splitlines():
        if line.startswith(f"{label}:"):
            return line[len(label) + 1:].strip()
    raise TrainStepError(f"`kt-nnunet plan` printed no {label!r} command:\n{output}")


def predict_argv(printed: str, images: Path, out: Path) -> list[str]:
    """The printed predict command with its IMAGES and OUT placeholders (whole words only) filled in."""
    fill = {"IMAGES": str(images), "OUT": str(out)}
    return [fill.get(word, word) for word in shlex.split(printed)]


def train_step(architecture: str, workdir, predict: bool = True, dim: Optional[int] = None) -> TrainStepResult:
    """Plan the tiny dataset for ``architecture`` (``--tiny``), train one short fold with the printed
    ``nnUNetv2_train`` command and, with ``predict``, predict the test case with the printed ``nnUNetv2_predict``.

    ``workdir`` holds nnU-Net's folders; reusing it for several architectures preprocesses the data only once.
    ``dim`` picks the 2D or 3D dataset (default: 2D when the architecture supports it).
    """
    from kt_nnunet.testing.checks import resolve

    spec = resolve(architecture)
    dim = dim or (2 if 2 in spec.dims else 3)
    workdir = Path(workdir).absolute()
    env = nnunet_environment(workdir)
    dataset, configuration = tiny_raw_dataset(dim, Path(env["nnUNet_raw"]))
    plan = ["kt-nnunet", "plan", dataset, "--arch", spec.name, "-c", configuration, "--tiny", "-np", "1", *BUDGET]
    output = run_command(plan, env)
    commands = [shlex.join(plan)]

    train = printed_command(output, "train")
    run_command(shlex.split(train), dict(env, nnUNet_n_proc_DA="0"))
    commands.append(train)
    words = shlex.split(train)
    trainer, plans_name = words[words.index("-tr") + 1], words[words.index("-p") + 1]
    model = Path(env["nnUNet_results"]) / dataset / f"{trainer}__{plans_name}__{configuration}"
    if not (model / "fold_0" / "checkpoint_final.pth").is_file():
        raise TrainStepError(f"`{train}` finished but wrote no {model / 'fold_0' / 'checkpoint_final.pth'}")

    logs = "".join(p.read_text() for p in (model / "fold_0").glob("training_log_*.txt"))
    if "Epoch 0" not in logs or "Epoch 1" in logs:  # BUDGET's one epoch, read from the plans by the trainer
        raise TrainStepError(f"`{train}` did not train the planned budget of one epoch (see its training_log)")

    predictions = None
    if predict:
        predictions = workdir / f"predictions_{spec.name}"
        raw = Path(env["nnUNet_raw"]) / dataset
        argv = predict_argv(printed_command(output, "predict"), raw / "imagesTs", predictions)
        # The checkpoint names nnUNetTrainer, so stock prediction must not need kt-nnunet's trainers.
        run_command(argv, {k: v for k, v in env.items() if k != "nnUNet_extTrainer"})
        command = shlex.join(argv)
        commands.append(command)
        expected = sorted(p.name for p in (raw / "labelsTs").iterdir())
        written = sorted(p.name for p in predictions.glob("*.nii.gz"))
        if written != expected:
            raise TrainStepError(f"`{command}` wrote {written}, expected one segmentation per test case: {expected}")
        labels = set(json.loads((raw / "dataset.json").read_text())["labels"].values())
        for case in expected:
            _check_same_grid(predictions / case, raw / "labelsTs" / case, labels, command)
    return TrainStepResult(Path(env["nnUNet_preprocessed"]) / dataset / f"{plans_name}.json", model, predictions,
                           tuple(commands))


def _check_same_grid(prediction: Path, reference: Path, labels: set, command: str) -> None:
    """A prediction on its image's grid (shape and affine), holding only the dataset's labels."""
    import nibabel
    import numpy as np

    ours, theirs = nibabel.load(str(prediction)), nibabel.load(str(reference))
    if ours.shape != theirs.shape or not np.allclose(ours.affine, theirs.affine, atol=1e-5):
        raise TrainStepError(f"`{command}` wrote {prediction} with shape {ours.shape} and affine {ours.affine.tolist()}"
                             f", but its image's grid is {theirs.shape}, {theirs.affine.tolist()}")
    values = set(np.unique(np.asarray(ours.dataobj)).tolist())
    if not values <= labels:
        raise TrainStepError(f"`{command}` wrote labels {sorted(values)} into {prediction}; the dataset has "
                             f"{sorted(labels)}")
