"""Train one nnU-Net fold from Python with a given trainer class, as ``nnUNetv2_train`` does.

Differences from the stock entry point, each deliberate:
* the trainer class is passed directly, so no name lookup imports nnU-Net's whole trainer tree;
* an existing finished fold is never overwritten unless ``force=True`` (nnU-Net would retrain over it);
* ``num_workers`` sets ``nnUNet_n_proc_DA`` for this run only (0 is fastest on a few CPU cores).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Optional

import torch

from kt_nnunet.errors import KtNnunetError
from kt_nnunet.nnunet.paths import preprocessed_folder
from kt_nnunet.nnunet.planning import dataset_name


class TrainingError(KtNnunetError):
    """A training run cannot start as asked (existing results, missing plans, ...)."""


@contextlib.contextmanager
def augmentation_workers(num_workers: Optional[int]):
    if num_workers is None:
        yield
        return
    saved = os.environ.get("nnUNet_n_proc_DA")
    os.environ["nnUNet_n_proc_DA"] = str(num_workers)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("nnUNet_n_proc_DA", None)
        else:
            os.environ["nnUNet_n_proc_DA"] = saved


def build_trainer(trainer_class, dataset: str | int, configuration: str, fold: int, plans_name: str,
                  device: str = "cpu", continue_training: bool = False):
    """Instantiate ``trainer_class`` exactly as ``get_trainer_from_args`` does, minus the name lookup."""
    name = dataset_name(dataset)
    folder = preprocessed_folder() / name
    plans_file = folder / f"{plans_name}.json"
    if not plans_file.is_file():
        raise TrainingError(f"plans file {plans_file} does not exist; run `kt-nnunet plan {name} --arch ...` first")
    plans = json.loads(plans_file.read_text())
    plans["continue_training"] = continue_training  # nnUNetTrainer.__init__ pops this key
    dataset_json = json.loads((folder / "dataset.json").read_text())
    return trainer_class(plans=plans, configuration=configuration, fold=fold, dataset_json=dataset_json,
                         device=torch.device(device))


def train_fold(trainer_class, dataset: str | int, configuration: str, fold: int, plans_name: str,
               device: str = "cpu", continue_training: bool = False, pretrained_weights: Optional[str] = None,
               force: bool = False, validate: bool = True, num_workers: Optional[int] = 0) -> Path:
    """Train (or resume) one fold; returns the model folder (``nnUNet_results/DatasetX/TR__PLANS__CFG``)."""
    from nnunetv2.run.run_training import maybe_load_checkpoint

    trainer = build_trainer(trainer_class, dataset, configuration, fold, plans_name, device, continue_training)
    fold_folder = Path(trainer.output_folder)
    finished = (fold_folder / "checkpoint_final.pth").is_file()
    if finished and not (force or continue_training):
        raise TrainingError(f"{fold_folder} already holds a finished training; pass --force to retrain it from "
                            "scratch (its checkpoints are replaced) or --continue to resume it")
    if force and not continue_training and fold_folder.is_dir():
        shutil.rmtree(fold_folder)
        fold_folder.mkdir(parents=True)
    if device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    with augmentation_workers(num_workers):
        maybe_load_checkpoint(trainer, continue_training, False, pretrained_weights)
        trainer.run_training()
        if validate:
            trainer.perform_actual_validation(False)
    return fold_folder.parent
