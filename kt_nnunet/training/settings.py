"""The settings a training takes, one small frozen type each: how long it trains (``Budget``) and how a student
learns from its teachers (``TransferSettings``). The experiment config, the command line and the API all build
these, so a setting has one name, one check and one default. Importing this module loads neither torch nor
nnU-Net.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from kt_nnunet.errors import KtNnunetError

TRANSFER_MODES = ("offline", "online")


class TrainingSettingsError(KtNnunetError):
    """A training setting is out of range."""


@dataclass(frozen=True)
class Budget:
    """Training length, stored in the plans as ``kt_budget`` for ``nnUNetTrainerKTBudget``; None keeps nnU-Net's
    own value (1000 epochs of 250 iterations, 50 validation iterations, its learning rate)."""

    epochs: Optional[int] = None
    iterations_per_epoch: Optional[int] = None
    val_iterations_per_epoch: Optional[int] = None
    initial_lr: Optional[float] = None

    # The command line's option for each field, for messages.
    OPTIONS = {"epochs": "--epochs", "iterations_per_epoch": "--iterations",
               "val_iterations_per_epoch": "--val-iterations", "initial_lr": "--lr"}

    def check(self, error: type = TrainingSettingsError) -> "Budget":
        """Refuse counts below 1 and a learning rate that is not positive before anything is planned: 0 epochs
        would be written into the plans as is, and transfer divides by the epochs."""
        for name in ("epochs", "iterations_per_epoch", "val_iterations_per_epoch"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise error(f"{self.OPTIONS[name]} must be a whole number of at least 1, got {value!r}")
        lr = self.initial_lr
        if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0):
            raise error(f"{self.OPTIONS['initial_lr']} must be a positive number, got {lr!r}")
        return self

    def as_plans_budget(self) -> dict:
        """The ``kt_budget`` plans entry: only what is set, under the trainer's attribute names."""
        entries = {"num_epochs": self.epochs, "num_iterations_per_epoch": self.iterations_per_epoch,
                   "num_val_iterations_per_epoch": self.val_iterations_per_epoch, "initial_lr": self.initial_lr}
        return {key: value for key, value in entries.items() if value is not None}


@dataclass(frozen=True)
class TransferSettings:
    """How a student learns from its teachers: ``offline`` from a teacher-labelled dataset (the paper's method) or
    ``online`` from teachers labelling every augmented batch; ``soft`` also learns the teachers' probabilities
    (KL divergence at ``temperature``, weighted ``alpha`` against the hard-label loss)."""

    mode: str = "offline"
    soft: bool = False
    temperature: float = 2.0
    alpha: float = 0.5

    @property
    def online(self) -> bool:
        return self.mode == "online"

    def check(self, error: type = TrainingSettingsError) -> "TransferSettings":
        if self.mode not in TRANSFER_MODES:
            raise error(f"transfer mode {self.mode!r} is not one of {', '.join(TRANSFER_MODES)}")
        if not self.temperature > 0 or not 0.0 <= self.alpha <= 1.0:
            raise error(f"temperature must be > 0 and alpha in [0, 1] (got T={self.temperature}, alpha={self.alpha})")
        return self
