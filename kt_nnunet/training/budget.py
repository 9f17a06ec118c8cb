"""A trainer whose training length and random seed come from the plans, so short, reproducible CPU runs need no code.

``kt-nnunet plan --epochs E --iterations I --seed S`` writes ``kt_budget`` and ``kt_seed`` into the plans
configuration; this trainer reads them. Settings travel through the plans (not ``__init__`` arguments)
because nnU-Net's ``__init__`` records its own signature and rebuilds trainers from checkpoints.

nnU-Net seeds nothing. With ``kt_seed`` set, Python's, NumPy's and torch's generators are seeded right
before the network is built (its initialisation) and again right before the data loaders are made (patch
sampling and augmentation), so a run is repeatable on one machine; see docs/reproducibility.md for what
that covers (single-threaded augmentation, CPU, same thread count) and what it does not.
"""
from __future__ import annotations

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from kt_nnunet import progress
from kt_nnunet.nnunet.planning import BUDGET_KEY, SEED_KEY
from kt_nnunet.training.seeding import augmentation_is_reproducible, seed_everything

BUDGET_FIELDS = ("num_epochs", "num_iterations_per_epoch", "num_val_iterations_per_epoch", "initial_lr")
FLOAT_FIELDS = ("initial_lr",)  # the others are counts
# nnU-Net redraws progress.png after every epoch; on a CPU that is ~0.7 s of a 2-3 s demo epoch.
PROGRESS_PLOT_EVERY = 10
# The augmentation stream gets its own seed, so changing the network (and so how many random numbers its
# initialisation draws) does not change which patches are sampled.
AUGMENTATION_SEED_OFFSET = 1_000_003


class nnUNetTrainerKTBudget(nnUNetTrainer):
    """nnUNetTrainer with ``num_epochs`` / iterations per epoch (and ``initial_lr``) from the plans' ``kt_budget``,
    seeded by the plans' ``kt_seed``."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        budget = self.configuration_manager.configuration.get(BUDGET_KEY, {})
        unknown = set(budget) - set(BUDGET_FIELDS)
        if unknown:
            raise ValueError(f"plans configuration {configuration!r}: unknown {BUDGET_KEY} keys {sorted(unknown)}; "
                             f"allowed: {list(BUDGET_FIELDS)}")
        for field in BUDGET_FIELDS:
            if field in budget:
                setattr(self, field, (float if field in FLOAT_FIELDS else int)(budget[field]))
        seed = self.configuration_manager.configuration.get(SEED_KEY)
        self.kt_seed = None if seed is None else int(seed)

    def initialize(self):
        if self.kt_seed is not None and not self.was_initialized:
            seed_everything(self.kt_seed, self.device)
        super().initialize()

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

    def get_dataloaders(self):
        if self.kt_seed is not None:
            seed_everything(self.kt_seed + AUGMENTATION_SEED_OFFSET, self.device)
            if not augmentation_is_reproducible():
                self.print_to_log_file("kt-nnunet: WARNING: seeded run with augmentation worker processes "
                                       "(nnUNet_n_proc_DA > 0): nnU-Net's NonDetMultiThreadedAugmenter returns "
                                       "batches in arrival order, so this run is not repeatable; set "
                                       "nnUNet_n_proc_DA=0 (kt-nnunet's default) for a repeatable run")
        return super().get_dataloaders()
