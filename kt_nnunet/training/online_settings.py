"""The plans key ``kt_online``: which teachers an online student learns from, and how.

Written by ``kt-nnunet transfer --online`` into the student's plans configuration, so stock
``nnUNetv2_train -tr nnUNetTrainerKTOnline`` finds its teachers. Fusion is ``kt_nnunet.teachers.fusion``
(mean, weighted, majority, staple; ``min_confidence`` marks low-confidence voxels with the ignore label).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from kt_nnunet.teachers.errors import TeacherSettingsError
from kt_nnunet.teachers.methods import FUSION_METHODS
from kt_nnunet.teachers.spec import TeacherSpec

ONLINE_KEY = "kt_online"


@dataclass(frozen=True)
class OnlineSettings:
    """The ``kt_online`` plans configuration key (how the trainer learns its teachers)."""

    teachers: tuple
    fusion: str = "mean"
    weights: Optional[tuple] = None
    min_confidence: Optional[float] = None
    temperature: float = 2.0
    alpha: float = 0.5

    FIELDS = ("teachers", "fusion", "weights", "min_confidence", "temperature", "alpha")

    @classmethod
    def from_configuration(cls, configuration: dict, name: str = "") -> "OnlineSettings":
        raw = configuration.get(ONLINE_KEY)
        if not raw:
            raise TeacherSettingsError(
                f"plans configuration {name!r} has no {ONLINE_KEY!r} key, so the online trainer has no teachers; "
                "create the plans with `kt-nnunet transfer --online --teacher MODEL ...`")
        unknown = set(raw) - set(cls.FIELDS)
        if unknown:
            raise TeacherSettingsError(f"plans key {ONLINE_KEY}: unknown fields {sorted(unknown)}; "
                                       f"allowed: {list(cls.FIELDS)}")
        teachers = tuple(TeacherSpec.from_json(entry) for entry in raw.get("teachers") or [])
        settings = cls(teachers, raw.get("fusion", "mean"),
                       tuple(raw["weights"]) if raw.get("weights") is not None else None, raw.get("min_confidence"),
                       float(raw.get("temperature", 2.0)), float(raw.get("alpha", 0.5)))
        settings.validate()
        return settings

    def validate(self) -> None:
        if not self.teachers:
            raise TeacherSettingsError(f"plans key {ONLINE_KEY}: 'teachers' is empty; give at least one model folder")
        if self.fusion not in FUSION_METHODS:
            raise TeacherSettingsError(f"plans key {ONLINE_KEY}: unknown fusion {self.fusion!r}; choose one of "
                                       f"{', '.join(FUSION_METHODS)}")
        if (self.fusion == "weighted") != (self.weights is not None):
            raise TeacherSettingsError("fusion 'weighted' needs one weight per teacher, and weights need fusion "
                                       "'weighted'")
        if self.weights is not None and (len(self.weights) != len(self.teachers) or min(self.weights) < 0
                                         or sum(self.weights) <= 0):
            raise TeacherSettingsError(f"need {len(self.teachers)} non-negative weights with a positive sum, got "
                                       f"{list(self.weights)}")
        if self.temperature <= 0 or not 0.0 <= self.alpha <= 1.0:
            raise TeacherSettingsError(f"temperature must be > 0 and alpha in [0, 1] (got T={self.temperature}, "
                                       f"alpha={self.alpha})")
        if self.min_confidence is not None and not 0.0 < self.min_confidence <= 1.0:
            raise TeacherSettingsError(f"min_confidence must be in (0, 1], got {self.min_confidence}")

    def normalized_weights(self) -> list:
        weights = self.weights if self.weights is not None else [1.0] * len(self.teachers)
        return [float(w) / float(sum(weights)) for w in weights]

    def to_json(self) -> dict:
        return {"teachers": [t.to_json() for t in self.teachers], "fusion": self.fusion,
                "weights": list(self.weights) if self.weights is not None else None,
                "min_confidence": self.min_confidence, "temperature": self.temperature, "alpha": self.alpha}
