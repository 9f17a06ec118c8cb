"""Online teachers: settings from the plans, safe loading, the preprocessing check, batched fusion.

Online teachers label batches that were preprocessed with the *student's* plans, so a teacher is only
usable online when its own preprocessing would have produced the same input: same spacing, axis
order, normalization schemes and (for schemes that use dataset statistics, e.g. CT) the same
intensity statistics. Otherwise it is refused with a pointer to offline mode (``kt-nnunet label``
preprocesses with each teacher's own plans).

Fusion follows ``kt_nnunet.labelling.fusion`` (mean, weighted, majority, staple; ``min_confidence`` marks
low-confidence voxels with the ignore label): mean and weighted run batched on the device, majority
and STAPLE run that module's accumulators per case.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from kt_nnunet.errors import KtNnunetError
from kt_nnunet.labelling.fusion import FUSION_METHODS, make_fusion
from kt_nnunet.nnunet.raw_dataset import labels_without_ignore
from kt_nnunet.nnunet.model_folder import DEFAULT_CHECKPOINT, TrainedModel, load_trained_model
from kt_nnunet.nnunet.paths import describe_folder, under_results

ONLINE_KEY = "kt_online"
# Normalization schemes that use dataset-level statistics (the others normalise each image on its own).
SCHEMES_WITH_DATASET_STATISTICS = ("CTNormalization",)
OFFLINE_HINT = ("Online teachers see batches preprocessed with the student's plans. Use offline mode instead: "
                "`kt-nnunet transfer` without --online labels the images with each teacher's own preprocessing "
                "(`kt-nnunet label`) and trains on the result.")


class TeacherSettingsError(KtNnunetError):
    """The plans key ``kt_online`` is missing or malformed."""


class TeacherMismatchError(KtNnunetError):
    """Teachers cannot label this student's batches (preprocessing, labels or channels differ)."""


@dataclass(frozen=True)
class TeacherSpec:
    model_folder: str
    folds: Optional[tuple] = None            # None: every fold with a checkpoint
    checkpoint: str = DEFAULT_CHECKPOINT
    checkpoint_sha256: Optional[dict] = None  # recorded at planning time; a changed file is refused

    def to_json(self) -> dict:
        return {"model_folder": self.model_folder, "folds": list(self.folds) if self.folds is not None else None,
                "checkpoint": self.checkpoint, "checkpoint_sha256": self.checkpoint_sha256}


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
        teachers = []
        for entry in raw.get("teachers") or []:
            entry = {"model_folder": entry} if isinstance(entry, str) else dict(entry)
            folds = entry.get("folds")
            teachers.append(TeacherSpec(str(entry["model_folder"]), tuple(folds) if folds is not None else None,
                                        entry.get("checkpoint") or DEFAULT_CHECKPOINT, entry.get("checkpoint_sha256")))
        settings = cls(tuple(teachers), raw.get("fusion", "mean"),
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


def parse_teacher(text, checkpoint: str = DEFAULT_CHECKPOINT) -> TeacherSpec:
    """``DIR``, ``DIR:0,1`` or ``DIR:all``; ``DIR`` may be relative to ``$nnUNet_results``. Stored absolute."""
    if isinstance(text, TeacherSpec):
        return text
    text, folds = str(text), None
    head, sep, tail = text.rpartition(":")
    if sep and not Path(text).exists() and (tail == "all" or all(p.isdigit() for p in tail.split(","))):
        text, folds = head, None if tail == "all" else tuple(int(p) for p in tail.split(","))
    path = under_results(text)
    if path.is_file():
        raise TeacherSettingsError(f"teacher {text} is a file, not a model folder; give the folder holding plans.json, "
                                   "dataset.json and fold_N/ (nnUNet_results/DatasetX/TRAINER__PLANS__CFG)")
    if not path.is_dir():
        raise TeacherSettingsError(f"teacher model folder {text} does not exist (also not under "
                                   f"{describe_folder('nnUNet_results')}); give the folder holding plans.json and fold_N/")
    return TeacherSpec(str(path.absolute()), folds, checkpoint)


def load_teacher(spec: TeacherSpec) -> TrainedModel:
    model = load_trained_model(spec.model_folder, spec.folds, spec.checkpoint)  # weights_only + allow-list
    if spec.checkpoint_sha256:
        changed = [f for f, digest in spec.checkpoint_sha256.items() if model.checkpoint_sha256.get(f) != digest]
        if changed:
            raise TeacherMismatchError(f"teacher {spec.model_folder}: checkpoint of fold(s) {changed} changed since "
                                       "the plans were written; re-run `kt-nnunet transfer ... --force` to use it")
    return model


# --- compatibility ---------------------------------------------------------------------------------


def label_differences(student_dataset_json: dict, teacher: TrainedModel) -> list:
    problems = []
    ours, theirs = labels_without_ignore(student_dataset_json["labels"]), labels_without_ignore(teacher.labels)
    if ours != theirs:
        problems.append(f"labels differ: student dataset {ours}, teacher {theirs}")
    if teacher.label_manager.has_regions:
        problems.append("the teacher was trained on regions; online transfer needs label maps")
    n_ours, n_theirs = len(student_dataset_json["channel_names"]), len(teacher.dataset_json["channel_names"])
    if n_ours != n_theirs:
        problems.append(f"input channels differ: student dataset {n_ours}, teacher {n_theirs}")
    return problems


def preprocessing_differences(student_plans: dict, student_configuration: dict, teacher: TrainedModel) -> list:
    """Differences that would make the student's batches look different from what the teacher learnt on."""
    theirs = teacher.configuration_manager.configuration
    problems = []
    if len(student_configuration["spacing"]) != len(theirs["spacing"]) or not np.allclose(
            student_configuration["spacing"], theirs["spacing"], rtol=1e-3):
        problems.append(f"spacing {student_configuration['spacing']} (student) vs {theirs['spacing']} (teacher)")
    if student_plans.get("transpose_forward") != teacher.plans.get("transpose_forward"):
        problems.append(f"axis order {student_plans.get('transpose_forward')} (student) vs "
                        f"{teacher.plans.get('transpose_forward')} (teacher)")
    schemes = student_configuration["normalization_schemes"]
    if schemes != theirs["normalization_schemes"]:
        problems.append(f"normalization {schemes} (student) vs {theirs['normalization_schemes']} (teacher)")
    elif student_configuration.get("use_mask_for_norm") != theirs.get("use_mask_for_norm"):
        problems.append("normalization masks (use_mask_for_norm) differ")
    else:
        ours_stats = student_plans.get("foreground_intensity_properties_per_channel", {})
        their_stats = teacher.plans.get("foreground_intensity_properties_per_channel", {})
        for channel, scheme in enumerate(schemes):
            if scheme not in SCHEMES_WITH_DATASET_STATISTICS:
                continue
            a, b = ours_stats.get(str(channel), {}), their_stats.get(str(channel), {})
            keys = ("mean", "std", "percentile_00_5", "percentile_99_5")
            if any(not np.isclose(a.get(k, np.nan), b.get(k, np.nan), rtol=1e-3) for k in keys):
                problems.append(f"{scheme} intensity statistics of channel {channel} differ "
                                f"(student {[a.get(k) for k in keys]}, teacher {[b.get(k) for k in keys]})")
    return problems


def check_teachers(student_plans: dict, student_configuration: dict, student_dataset_json: dict,
                   teachers: Sequence[TrainedModel]) -> None:
    """One error listing every reason the teachers cannot label this student's batches online."""
    label_problems, prep_problems = [], []
    for teacher in teachers:
        label_problems += [f"teacher {teacher.folder}: {p}" for p in label_differences(student_dataset_json, teacher)]
        prep_problems += [f"teacher {teacher.folder}: {p}"
                          for p in preprocessing_differences(student_plans, student_configuration, teacher)]
    if label_problems:
        raise TeacherMismatchError(
            f"the student's dataset {student_plans.get('dataset_name')} is inconsistent with its teachers: "
            + "; ".join(label_problems) + ". Train the student on a dataset with the teachers' labels and channels "
            "(e.g. one made by `kt-nnunet label`).")
    if prep_problems:
        raise TeacherMismatchError("teacher preprocessing differs from the student's plans: "
                                   + "; ".join(prep_problems) + ". " + OFFLINE_HINT)


# --- labelling a batch -----------------------------------------------------------------------------

def fuse_probabilities(probabilities: Sequence[torch.Tensor], method: str = "mean",
                       weights: Optional[Sequence[float]] = None, min_confidence: Optional[float] = None,
                       ignore_label: Optional[int] = None) -> torch.Tensor:
    """Fuse per-teacher softmax outputs ``(B, C, *spatial)`` into labels ``(B, 1, *spatial)`` (int64).

    Same semantics as ``kt_nnunet.labelling.fusion.make_fusion`` applied to each case.
    """
    if method in ("mean", "weighted"):
        if weights is None:  # a sum divided once, as the labelling fusion and nnUNetv2_ensemble do
            fused = sum(p.float() for p in probabilities) / len(probabilities)
        else:
            total = float(sum(weights))
            fused = sum(p.float() * (float(w) / total) for p, w in zip(probabilities, weights))
        labels = fused.argmax(1, keepdim=True)
        confidence = fused.gather(1, labels)
        if min_confidence is not None:
            labels[confidence < min_confidence] = ignore_label
        return labels
    results = []
    for case in range(probabilities[0].shape[0]):
        fusion = make_fusion(method, len(probabilities), None, min_confidence, ignore_label)
        for p in probabilities:
            fusion.add(p[case].float().cpu())
        results.append(fusion.result().labels)
    return torch.stack(results)[:, None].to(probabilities[0].device)


def downsample_labels(labels: torch.Tensor, shapes: Sequence[Sequence[int]], dtype: torch.dtype) -> list:
    """Deep-supervision label targets, exactly as nnU-Net's ``DownsampleSegForDSTransform`` makes them."""
    out, as_float = [], None
    for shape in shapes:
        if tuple(shape) == tuple(labels.shape[2:]):
            out.append(labels.to(dtype))
        else:
            as_float = labels.float() if as_float is None else as_float
            out.append(F.interpolate(as_float, size=tuple(shape), mode="nearest-exact").to(dtype))
    return out


def downsample_probabilities(probabilities: torch.Tensor, shapes: Sequence[Sequence[int]]) -> list:
    """Soft targets per scale: area averaging keeps them probability distributions."""
    return [probabilities if tuple(s) == tuple(probabilities.shape[2:])
            else F.interpolate(probabilities, size=tuple(s), mode="area") for s in shapes]


@dataclass
class TeacherOutput:
    labels: torch.Tensor                     # (B, 1, *spatial) fused hard labels (ignore label applied)
    soft: Optional[torch.Tensor] = None      # (B, C, *spatial) fused softmax(logits / T)


class TeacherEnsemble:
    """Frozen teacher networks (every fold of every teacher), loaded once; ``label(batch)`` per step."""

    def __init__(self, models: Sequence[TrainedModel], settings: OnlineSettings, ignore_label: Optional[int],
                 device: torch.device):
        if settings.min_confidence is not None and ignore_label is None:
            raise TeacherSettingsError("min_confidence marks uncertain voxels with the ignore label, but the "
                                       "student's dataset.json has no 'ignore' label; add one (max label + 1)")
        self.models = list(models)
        self.settings = settings
        self.ignore_label = ignore_label
        self.device = device
        self.networks = [model.load_fold_networks(device) for model in self.models]  # eval(), no grad

    @torch.no_grad()
    def logits(self, data: torch.Tensor) -> list:
        """One logit map per teacher: the mean over its folds (as nnU-Net's predictor averages folds)."""
        with torch.autocast(self.device.type) if self.device.type == "cuda" else contextlib.nullcontext():
            return [sum(net(data).float() for net in folds) / len(folds) for folds in self.networks]

    @torch.no_grad()
    def label(self, data: torch.Tensor, soft: bool = False) -> TeacherOutput:
        logits = self.logits(data)
        s = self.settings
        weights = list(s.weights) if s.weights is not None else None
        labels = fuse_probabilities([torch.softmax(z, 1) for z in logits], s.fusion, weights, s.min_confidence,
                                    self.ignore_label)
        if not soft:
            return TeacherOutput(labels)
        tempered = fuse_probabilities_soft([torch.softmax(z / s.temperature, 1) for z in logits],
                                           s.normalized_weights() if s.fusion == "weighted" else None)
        return TeacherOutput(labels, tempered)


def fuse_probabilities_soft(probabilities: Sequence[torch.Tensor], weights: Optional[Sequence[float]] = None):
    """Soft targets: (weighted) mean of the teachers' tempered probabilities (equal weights unless 'weighted')."""
    weights = weights if weights is not None else [1.0 / len(probabilities)] * len(probabilities)
    return sum(p * float(w) for p, w in zip(probabilities, weights))
