"""A trainer whose training length comes from the plans, so short CPU runs need no code.

``kt-nnunet plan --epochs E --iterations I`` writes ``kt_budget`` into the plans configuration; this
trainer reads it. Settings travel through the plans (not ``__init__`` arguments) because nnU-Net's
``__init__`` records its own signature and rebuilds trainers from checkpoints.
"""
from __future__ import annotations

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

BUDGET_KEY = "kt_budget"
BUDGET_FIELDS = ("num_epochs", "num_iterations_per_epoch", "num_val_iterations_per_epoch", "initial_lr")
FLOAT_FIELDS = ("initial_lr",)  # the others are counts


class nnUNetTrainerKTBudget(nnUNetTrainer):
    """nnUNetTrainer with ``num_epochs`` / iterations per epoch (and ``initial_lr``) from the plans' ``kt_budget``."""

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
