"""A model's evaluation record, ``evaluation.json``: what goes into results.json ``models``, and its reuse.

A finished evaluation is reused when its ``fingerprint`` (the model's checkpoints by sha256, folds, test
cases and settings) is unchanged and its predictions are still there, so a resumed experiment never
predicts a model twice.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

EVALUATION_FILE = "evaluation.json"
EVALUATION_FORMAT = 1
ROLES = ("teacher", "student", "multi_teacher_student", "kt_finetune", "finetune_only")


@dataclass
class ModelEvaluation:
    """One model's test-set results; :meth:`to_dict` is its entry in results.json ``models``."""

    name: str
    role: str
    architecture: str
    network_class: str
    model_folder: str
    folds: list
    checkpoint: str
    params: int
    seconds_per_case: float
    seconds_per_case_median: float
    dice_mean: Optional[float]
    dice_sd: Optional[float]
    iou_mean: Optional[float]
    hd95_mean: Optional[float]
    hd95_sd: Optional[float]
    labels: dict                      # {"1": "grey_matter", ...}: the evaluated foreground labels
    per_class: dict                   # {"1": {dice_mean, dice_sd, iou_mean, iou_sd, hd95_mean, hd95_sd, ...}}
    cases: list                       # per-case records
    inference: dict                   # {device, threads, mirroring, warmup, tile_step_size}
    evaluation_folder: str
    summary_file: str
    teachers: list = field(default_factory=list)
    training: Optional[dict] = None   # training curves
    extra: dict = field(default_factory=dict)
    fingerprint: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelEvaluation":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def evaluation_fingerprint(model, test_set, checkpoint_name: str, mirroring: bool) -> dict:
    """What decides an evaluation's outcome: the model's checkpoints, folds and settings, and the test cases."""
    return {"format": EVALUATION_FORMAT, "checkpoint_sha256": model.checkpoint_sha256,
            "folds": list(model.folds), "checkpoint": checkpoint_name, "mirroring": mirroring,
            "test_folder": str(test_set.folder), "split": test_set.split, "cases": test_set.case_ids}


def load_previous(folder: Path, fingerprint: dict) -> Optional[ModelEvaluation]:
    """The evaluation in ``folder`` if it has ``fingerprint`` and all its predictions; else None."""
    path = folder / EVALUATION_FILE
    if not path.is_file():
        return None
    try:
        previous = ModelEvaluation.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError):
        return None
    if previous.fingerprint != fingerprint:
        return None
    if not all(Path(c["prediction_file"]).is_file() for c in previous.cases):
        return None
    return previous


def write_evaluation(evaluation: ModelEvaluation, folder: Path) -> ModelEvaluation:
    """Store ``evaluation`` as strict JSON in ``folder``; returns it as read back (NaN as None)."""
    from kt_nnunet.atomic_files import atomic_write_text

    cleaned = clean_json(evaluation.to_dict())
    atomic_write_text(folder / EVALUATION_FILE, json.dumps(cleaned, indent=1))
    return ModelEvaluation.from_dict(cleaned)


def clean_json(value):
    """NaN/inf to None and numpy scalars to Python numbers, so the JSON is strict."""
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def relabel_previous(previous: ModelEvaluation, folder: Path, *, name: str, role: str, teachers, extra: Optional[dict]
                     ) -> ModelEvaluation:
    """A reused evaluation under this call's name, role, teachers and extra (they do not change the scores),
    stored again."""
    from kt_nnunet.atomic_files import atomic_write_text

    previous.name, previous.role, previous.teachers = name, role, list(teachers)
    previous.extra = dict(extra or previous.extra)
    atomic_write_text(folder / EVALUATION_FILE, json.dumps(previous.to_dict(), indent=1))
    return previous
