"""Train one nnU-Net fold from Python with a given trainer class, as ``nnUNetv2_train`` does.

Differences from the stock entry point, each deliberate:
* the trainer class is passed directly, so no name lookup imports nnU-Net's whole trainer tree;
* an existing finished fold is never overwritten unless ``force=True`` (nnU-Net would retrain over it);
* ``num_workers`` sets ``nnUNet_n_proc_DA`` for this run only (0 is fastest on a few CPU cores);
* pretrained weights are read with ``weights_only=True`` (nnU-Net's ``load_pretrained_weights`` unpickles
  the whole file, which can execute code), otherwise with nnU-Net's semantics.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Optional, Sequence

import torch

from kt_nnunet.atomic_files import atomic_write_text
from kt_nnunet.devices import compute_threads
from kt_nnunet.errors import KtNnunetError
from kt_nnunet.nnunet.paths import preprocessed_folder, raw_folder
from kt_nnunet.nnunet.planning import dataset_name

NNUNET_NUM_FOLDS = 5


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


class _TorchReturning:
    """torch, except that ``load`` returns one checkpoint already read (see ``checkpoint_given``)."""

    def __init__(self, checkpoint: dict):
        self._checkpoint = checkpoint

    def load(self, *args, **kwargs):
        return self._checkpoint

    def __getattr__(self, name):
        return getattr(torch, name)


@contextlib.contextmanager
def checkpoint_given(checkpoint: dict):
    """Inside, ``nnUNetTrainer.load_checkpoint(any_path)`` loads ``checkpoint`` instead of unpickling the file.

    nnU-Net 2.8.1's ``load_checkpoint`` reads files with ``torch.load(weights_only=False)``, which runs whatever
    a planted file holds, and cannot take the dict it advertises (``checkpoint`` is bound only in its ``str``
    branch). So a trainer reads the file safely itself and hands nnU-Net's own method the result, through the
    ``torch`` name of nnU-Net's trainer module only, for the length of the call.
    """
    import nnunetv2.training.nnUNetTrainer.nnUNetTrainer as trainer_module

    trainer_module.torch = _TorchReturning(checkpoint)
    try:
        yield
    finally:
        trainer_module.torch = torch


def check_fold_options(force: bool, continue_training: bool, error: type = TrainingError) -> None:
    """``force`` and ``continue_training`` together are refused before any work (one silently won before)."""
    if force and continue_training:
        raise error("--force and --continue contradict each other (--force retrains the fold from scratch, "
                    "--continue resumes it from its checkpoint); pass one of them")


def augmentation_is_reproducible() -> bool:
    """True when nnU-Net will augment in the training process (``nnUNet_n_proc_DA=0``), in a fixed order."""
    from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA

    return get_allowed_n_proc_DA() == 0


def ensure_splits(name: str) -> None:
    """Give nnU-Net a ``splits_final.json`` before its trainer writes one (two trainings of a dataset started at
    once would each write it, and one could read the other's half-written file).

    A raw dataset's own ``splits_final.json`` is copied as nnU-Net's planner would. With fewer than five
    labelled cases (a fine-tuning set of N cases) nnU-Net's KFold fails, so every fold then trains on all
    cases and validates on them too: the protocol evaluates on a separate test set, not on this split.
    Otherwise it is nnU-Net's own seeded 5-fold split.
    """
    from kt_nnunet.nnunet.planning import dataset_lock

    with dataset_lock(name):  # two trainings of one dataset may start at once
        _ensure_splits(name)


def _ensure_splits(name: str) -> None:
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

    target = preprocessed_folder() / name / "splits_final.json"
    if target.is_file():
        return
    raw = raw_folder() / name
    if (raw / "splits_final.json").is_file():
        shutil.copyfile(raw / "splits_final.json", target)
        return
    cases = sorted(get_filenames_of_train_images_and_targets(str(raw), json.loads((raw / "dataset.json").read_text())))
    if len(cases) < NNUNET_NUM_FOLDS:
        splits = [{"train": cases, "val": cases}] * NNUNET_NUM_FOLDS
    else:  # the split nnU-Net's do_split would write, written here under the lock and atomically
        from nnunetv2.utilities.crossval_split import generate_crossval_split

        splits = generate_crossval_split(cases, seed=12345, n_splits=NNUNET_NUM_FOLDS)
    atomic_write_text(target, json.dumps(splits, indent=1))


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


NNUNET_PRETRAINED_SKIP = (".seg_layers.",)  # what nnU-Net's load_pretrained_weights leaves untouched


def load_pretrained_weights_safely(network, path: str | Path, skip: Sequence[str] = NNUNET_PRETRAINED_SKIP) -> int:
    """nnU-Net's ``load_pretrained_weights`` semantics with a ``weights_only=True`` load; returns tensors loaded.

    Every parameter of ``network`` whose key contains none of ``skip`` must exist in the checkpoint with the
    same shape (one error lists the mismatches); keys matching ``skip`` keep their fresh initialisation.
    """
    from torch._dynamo import OptimizedModule
    from torch.nn.parallel import DistributedDataParallel

    from kt_nnunet.nnunet.model_folder import load_checkpoint_safely

    pretrained = load_checkpoint_safely(Path(path))["network_weights"]
    module = network.module if isinstance(network, DistributedDataParallel) else network
    module = module._orig_mod if isinstance(module, OptimizedModule) else module
    own = module.state_dict()
    wanted = [k for k in own if not any(s in k for s in skip)]
    bad = [f"{k} (missing)" if k not in pretrained else f"{k} {tuple(pretrained[k].shape)} vs {tuple(own[k].shape)}"
           for k in wanted if k not in pretrained or pretrained[k].shape != own[k].shape]
    if bad:
        raise TrainingError(f"pretrained weights {path} do not fit this network ({len(bad)} tensors: "
                            f"{'; '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}); the plans' architecture must "
                            "be the one the weights were trained with")
    own.update({k: pretrained[k] for k in wanted})
    module.load_state_dict(own)
    return len(wanted)


def train_fold(trainer_class, dataset: str | int, configuration: str, fold: int, plans_name: str,
               device: str = "cpu", continue_training: bool = False, pretrained_weights: Optional[str] = None,
               force: bool = False, validate: bool = True, num_workers: Optional[int] = 0,
               pretrained_skip: Sequence[str] = NNUNET_PRETRAINED_SKIP) -> Path:
    """Train (or resume) one fold; returns the model folder (``nnUNet_results/DatasetX/TR__PLANS__CFG``).

    ``pretrained_weights`` (a checkpoint file) initialises the network as ``nnUNetv2_train -pretrained_weights``
    does, but loaded safely; ``pretrained_skip=()`` also keeps the segmentation heads.
    """
    from nnunetv2.run.run_training import maybe_load_checkpoint

    if continue_training and pretrained_weights is not None:
        raise TrainingError("--continue resumes from the fold's own checkpoint; pretrained weights only start a "
                            "new training")

    from nnunetv2.utilities.file_path_utilities import get_output_folder

    name = dataset_name(dataset)
    # Before the trainer exists: building it prints nnU-Net's banner, which a refusal should not come after.
    fold_folder = Path(get_output_folder(name, trainer_class.__name__, plans_name, configuration, fold))
    if (fold_folder / "checkpoint_final.pth").is_file() and not (force or continue_training):
        raise TrainingError(f"{fold_folder} already holds a finished training; pass --force to retrain it from "
                            "scratch (its checkpoints are replaced) or --continue to resume it")
    ensure_splits(name)
    trainer = build_trainer(trainer_class, dataset, configuration, fold, plans_name, device, continue_training)
    if force and not continue_training and fold_folder.is_dir():
        shutil.rmtree(fold_folder)
        fold_folder.mkdir(parents=True)
    if device == "cpu":
        torch.set_num_threads(compute_threads())
    with augmentation_workers(num_workers):
        maybe_load_checkpoint(trainer, continue_training, False, None)
        if pretrained_weights is not None:
            if not trainer.was_initialized:
                trainer.initialize()
            load_pretrained_weights_safely(trainer.network, pretrained_weights, pretrained_skip)
        trainer.run_training()
        if validate:
            trainer.perform_actual_validation(False)
    return fold_folder.parent
