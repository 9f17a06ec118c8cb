"""A trainer whose training length and random seed come from the plans, so short, reproducible CPU runs need no code.

``kt-nnunet plan --epochs E --iterations I --seed S`` writes ``kt_budget`` and ``kt_seed`` into the plans
configuration; this trainer reads them. Settings travel through the plans (not ``__init__`` arguments)
because nnU-Net's ``__init__`` records its own signature and rebuilds trainers from checkpoints.

nnU-Net seeds nothing. With ``kt_seed`` set, Python's, NumPy's and torch's generators are seeded right
before the network is built (its initialisation) and again right before the data loaders are made (patch
sampling and augmentation), so a run is repeatable on one machine; see docs/reproducibility.md for what
that covers (single-threaded augmentation, CPU, same thread count) and what it does not.

Every kt-nnunet trainer derives from this one, which also hardens nnU-Net's checkpoint handling:

* ``load_checkpoint`` reads files with ``weights_only=True`` (nnU-Net unpickles them, so a planted
  ``checkpoint_latest.pth`` would run code on ``--continue``); a torn file falls back to
  ``checkpoint_best.pth``, or the run restarts, with a one-line warning;
* ``save_checkpoint`` writes a temporary file, fsyncs it and renames it into place, so a kill mid-save
  leaves the previous checkpoint; it names ``nnUNetTrainer`` (real class under ``kt_trainer_name``) when
  the network is nnU-Net's build from the plans, so stock ``nnUNetv2_predict`` needs no ``nnUNet_extTrainer``;
* after an epoch in which a stop was requested (SLURM's warning signal, ``kt_nnunet.interruption``) it saves
  ``checkpoint_latest.pth`` and raises ``StopRequested``, so a resumed run loses no finished epoch;
* ``initialize`` refuses plans whose network (or ``_kw_requires_import``) names code outside the known
  network classes, before nnU-Net imports and calls it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from kt_nnunet import progress
from kt_nnunet.atomic_files import atomic_file
from kt_nnunet.interruption import StopRequested, stop_requested
from kt_nnunet.nnunet.model_folder import (ModelFolderError, UnsafeCheckpointError, check_plans_architecture,
                                           load_checkpoint_safely)
from kt_nnunet.nnunet.training_api import augmentation_is_reproducible, checkpoint_given
from kt_nnunet.training.plans import BUDGET_KEY, SEED_KEY
from kt_nnunet.training.seeding import seed_everything

BUDGET_FIELDS = ("num_epochs", "num_iterations_per_epoch", "num_val_iterations_per_epoch", "initial_lr")
FLOAT_FIELDS = ("initial_lr",)  # the others are counts
# nnU-Net redraws progress.png after every epoch; on a CPU that is ~0.7 s of a 2-3 s demo epoch.
PROGRESS_PLOT_EVERY = 10
# The augmentation stream gets its own seed, so changing the network (and so how many random numbers its
# initialisation draws) does not change which patches are sampled.
AUGMENTATION_SEED_OFFSET = 1_000_003
STOCK_TRAINER_NAME = "nnUNetTrainer"
# What nnU-Net's maybe_load_checkpoint tries on --continue, in order; a torn file falls back to the next.
RESUME_ORDER = ("checkpoint_final.pth", "checkpoint_latest.pth", "checkpoint_best.pth")


def stock_trainer_name(trainer_class: type) -> str:
    """The name a checkpoint of ``trainer_class`` can carry so that stock nnU-Net rebuilds its network."""
    if trainer_class.build_network_architecture is nnUNetTrainer.build_network_architecture:
        return STOCK_TRAINER_NAME
    return trainer_class.__name__  # a custom network builder: prediction needs the real class


class nnUNetTrainerKTBudget(nnUNetTrainer):
    """nnUNetTrainer with ``num_epochs`` / iterations per epoch (and ``initial_lr``) from the plans' ``kt_budget``,
    seeded by the plans' ``kt_seed``."""

    kt_seed = None  # -> read_plans_settings

    # No __init__ here: nnU-Net records its constructor's arguments by reading the signature of type(self).__init__,
    # so settings are read from the plans when the trainer is initialised (before nnU-Net builds the network,
    # optimizer and loss from them).
    def read_plans_settings(self) -> None:
        """Read ``kt_budget`` and ``kt_seed``; subclasses read their own plans keys here too."""
        configuration = self.configuration_manager.configuration
        budget = configuration.get(BUDGET_KEY, {})
        unknown = set(budget) - set(BUDGET_FIELDS)
        if unknown:
            raise ValueError(f"plans configuration {self.configuration_name!r}: unknown {BUDGET_KEY} keys "
                             f"{sorted(unknown)}; allowed: {list(BUDGET_FIELDS)}")
        for field in BUDGET_FIELDS:
            if field in budget:
                setattr(self, field, (float if field in FLOAT_FIELDS else int)(budget[field]))
        seed = configuration.get(SEED_KEY)
        self.kt_seed = None if seed is None else int(seed)

    def initialize(self):
        if not self.was_initialized:
            self.read_plans_settings()
            plans_file = Path(self.preprocessed_dataset_folder_base or ".") / f"{self.plans_manager.plans_name}.json"
            check_plans_architecture(self.plans_manager.plans, self.configuration_name, plans_file)
            if self.kt_seed is not None:
                seed_everything(self.kt_seed, self.device)
        super().initialize()

    def load_checkpoint(self, filename_or_checkpoint: Union[dict, str]) -> None:
        """nnU-Net's ``load_checkpoint``, on a file read with ``weights_only=True`` (a torn one falling back to the
        next checkpoint nnU-Net would resume from) or on a dict."""
        if isinstance(filename_or_checkpoint, dict):
            checkpoint = filename_or_checkpoint
        else:
            if not self.was_initialized:
                self.initialize()
            checkpoint = self._read_resumable_checkpoint(Path(filename_or_checkpoint))
            if checkpoint is None:
                return
        with checkpoint_given(checkpoint):
            super().load_checkpoint("(read with weights_only=True above)")  # nnU-Net reads only a str's checkpoint

    def _read_resumable_checkpoint(self, path: Path):
        """``path`` read safely; if it is torn, the next checkpoint nnU-Net would resume from, or None (restart)."""
        if not path.is_file() or path.name not in RESUME_ORDER:
            return load_checkpoint_safely(path)
        later = [path.with_name(n) for n in RESUME_ORDER[RESUME_ORDER.index(path.name) + 1:]]
        for candidate in [path] + [p for p in later if p.is_file()]:
            try:
                checkpoint = load_checkpoint_safely(candidate)
            except UnsafeCheckpointError:
                raise  # planted code is refused, never skipped
            except ModelFolderError:
                continue
            if candidate != path:
                self.print_to_log_file(f"kt-nnunet: WARNING: {path} is unreadable (a run killed while saving?); "
                                       f"resuming from {candidate.name} instead")
            return checkpoint
        self.print_to_log_file(f"kt-nnunet: WARNING: {path} is unreadable and no other checkpoint to resume "
                               "from is readable; training this fold from scratch")
        return None

    def save_checkpoint(self, filename: str) -> None:
        """nnU-Net's checkpoint, written atomically, naming ``nnUNetTrainer`` where that rebuilds the network."""
        if self.local_rank != 0 or self.disable_checkpointing:
            return super().save_checkpoint(filename)
        for stale in Path(filename).parent.glob(f".{Path(filename).name}.*.tmp"):  # left by a killed save
            stale.unlink(missing_ok=True)
        with atomic_file(filename) as tmp:
            super().save_checkpoint(str(tmp))
            name = stock_trainer_name(type(self))
            if name != type(self).__name__:
                # nnU-Net builds the dict inline in its method; the file is our own, tensors only.
                checkpoint = load_checkpoint_safely(tmp)
                checkpoint["kt_trainer_name"] = checkpoint["trainer_name"]
                checkpoint["trainer_name"] = name
                torch.save(checkpoint, tmp)

    def on_epoch_end(self):
        """nnU-Net's epoch end, announced as a progress event; progress.png is drawn every
        ``PROGRESS_PLOT_EVERY`` epochs and after the last."""
        epoch = self.current_epoch
        if epoch == self.num_epochs - 1 or (epoch + 1) % PROGRESS_PLOT_EVERY == 0:
            super().on_epoch_end()
        else:
            self.logger.plot_progress_png = lambda *args, **kwargs: None  # an instance attribute shadows the method
            try:
                super().on_epoch_end()
            finally:
                del self.logger.plot_progress_png
        if self.local_rank == 0:
            progress.announce(progress.EPOCH, epoch=epoch + 1, epochs=self.num_epochs,
                              train_loss=float(self.logger.get_value("train_losses", step=-1)),
                              pseudo_dice=float(self.logger.get_value("mean_fg_dice", step=-1)))
        reason = stop_requested()
        if reason and self.current_epoch < self.num_epochs:
            self._stop_resumably(reason)

    def _stop_resumably(self, reason: str) -> None:
        """Save ``checkpoint_latest.pth`` so that ``--continue`` starts at the next epoch, then stop (see
        ``kt_nnunet.interruption``)."""
        # nnU-Net's save_checkpoint records current_epoch + 1 as the epoch to resume at, and its on_epoch_end
        # has already counted the finished epoch.
        self.current_epoch -= 1
        try:
            self.save_checkpoint(str(Path(self.output_folder) / "checkpoint_latest.pth"))
        finally:
            self.current_epoch += 1
        message = (f"stopped after epoch {self.current_epoch} of {self.num_epochs} ({reason}); "
                   f"checkpoint_latest.pth resumes at epoch {self.current_epoch + 1}")
        self.print_to_log_file(f"kt-nnunet: {message}")
        raise StopRequested(f"{self.output_folder}: {message}")

    def get_dataloaders(self):
        if self.kt_seed is not None:
            seed_everything(self.kt_seed + AUGMENTATION_SEED_OFFSET, self.device)
            if not augmentation_is_reproducible():
                self.print_to_log_file("kt-nnunet: WARNING: seeded run with augmentation worker processes "
                                       "(nnUNet_n_proc_DA > 0): nnU-Net's NonDetMultiThreadedAugmenter returns "
                                       "batches in arrival order, so this run is not repeatable; set "
                                       "nnUNet_n_proc_DA=0 (kt-nnunet's default) for a repeatable run")
        return super().get_dataloaders()
