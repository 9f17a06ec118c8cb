"""Evaluate one trained model folder on a labelled test set: predictions, metrics, size, speed, curves.

:func:`evaluate_model` writes into its output folder:

* ``predictions/{case}{ending}``: the model's segmentation of every test case (nnU-Net's writer, atomic);
* ``summary.json``: nnU-Net's own format (``nnUNetv2_evaluate_folder``): Dice, IoU, TP/FP/FN/TN per case
  and label, their ``nanmean`` per label and the ``foreground_mean``;
* ``evaluation.json``: the model record that goes into results.json (see docs/experiment.md), which adds
  per-class HD95 (``kt_nnunet.experiment.metrics``), the parameter count, CPU seconds per case and the
  training curves.

Prediction runs in this process, one case at a time (no worker pools), with ``threads`` torch threads;
the first case is predicted once untimed (``warmup``) so one-off costs do not count as inference time.
A finished evaluation is reused when the model's checkpoints (sha256), folds, test cases and settings
are unchanged, so a resumed experiment never predicts a model twice.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from kt_nnunet.experiment.curves import training_curves
from kt_nnunet.experiment.metrics import hd95, mean_sd
from kt_nnunet.progress import CASE, announce

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


def _architecture_name(model) -> str:
    """kt-nnunet's architecture name when kt-nnunet planned the model, else the network class name."""
    planned = (model.plans.get("kt_nnunet") or {}).get("architecture")
    return planned or model.architecture.rsplit(".", 1)[-1]


def _label_names(dataset_json: dict, labels: Sequence) -> dict:
    names = {}
    for label in labels:
        for name, value in dataset_json["labels"].items():
            values = tuple(value) if isinstance(value, (list, tuple)) else (value,)
            if values == (label if isinstance(label, tuple) else (label,)):
                names[str(label)] = name
                break
        else:
            names[str(label)] = str(label)
    return names


def _case_record(case, prediction_file: Path, seconds: float, scores) -> dict:
    metrics = {}
    for label, values in scores.metrics.items():
        mask = _mask(label)
        distance, status = hd95(mask(scores.prediction), mask(scores.reference), scores.spacing)
        metrics[str(label)] = {**values, "HD95": distance, "HD95_status": status}
    dice = [m["Dice"] for m in metrics.values()]
    mean, _, _ = mean_sd(dice)
    return {"case": case.case, "image_files": [str(f) for f in case.images], "reference_file": str(case.reference),
            "prediction_file": str(prediction_file), "seconds": seconds, "dice_mean": mean, "metrics": metrics}


def _mask(label):
    import numpy as np

    if isinstance(label, tuple):
        return lambda seg: np.isin(seg, label)
    return lambda seg: seg == label


def _per_class(cases: list, label_names: dict) -> dict:
    out = {}
    for key, name in label_names.items():
        rows = [c["metrics"][key] for c in cases]
        dice, dice_sd, n = mean_sd(r["Dice"] for r in rows)
        iou, iou_sd, _ = mean_sd(r["IoU"] for r in rows)
        distance, distance_sd, n_hd = mean_sd(r["HD95"] for r in rows)
        out[key] = {"name": name, "dice_mean": dice, "dice_sd": dice_sd, "iou_mean": iou, "iou_sd": iou_sd,
                    "hd95_mean": distance, "hd95_sd": distance_sd, "n_cases": n, "hd95_n": n_hd,
                    "hd95_n_penalised": sum(r["HD95_status"] in ("prediction_empty", "reference_empty")
                                            for r in rows),
                    "hd95_n_both_empty": sum(r["HD95_status"] == "both_empty" for r in rows)}
    return out


def _load_previous(folder: Path, fingerprint: dict) -> Optional[ModelEvaluation]:
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


def evaluate_model(model_folder: str | Path, test_set, output_folder: str | Path, *, name: str, role: str,
                   folds: Optional[Sequence[int]] = None, checkpoint_name: str = "checkpoint_final.pth",
                   mirroring: bool = True, threads: Optional[int] = None, warmup: bool = True,
                   teachers: Sequence[str] = (), extra: Optional[dict] = None, force: bool = False,
                   progress: Optional[Callable[[str], None]] = None) -> ModelEvaluation:
    """Predict ``test_set`` (a ``TestSet`` or a raw dataset folder) with the model and score it.

    ``role`` is one of ``ROLES``; ``teachers`` names the teachers a student learnt from (for comparisons);
    ``extra`` is stored as is. With ``force=False`` a matching earlier evaluation in ``output_folder``
    is returned without predicting again.
    """
    from kt_nnunet.atomic_files import atomic_write_text
    from kt_nnunet.nnunet import evaluation as nnunet_eval
    from kt_nnunet.nnunet.model_folder import load_trained_model, make_predictor

    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {ROLES}")
    say = progress or (lambda message: None)
    output_folder = Path(output_folder)
    if not isinstance(test_set, nnunet_eval.TestSet):
        test_set = nnunet_eval.load_test_set(test_set)
    model = load_trained_model(model_folder, folds, checkpoint_name)
    nnunet_eval.check_compatible(model, test_set)
    fingerprint = {"format": EVALUATION_FORMAT, "checkpoint_sha256": model.checkpoint_sha256,
                   "folds": list(model.folds), "checkpoint": checkpoint_name, "mirroring": mirroring,
                   "test_folder": str(test_set.folder), "split": test_set.split, "cases": test_set.case_ids}
    if not force:
        previous = _load_previous(output_folder, fingerprint)
        if previous is not None:
            say(f"{name}: evaluation exists, reused ({output_folder / EVALUATION_FILE})")
            previous.name, previous.role, previous.teachers = name, role, list(teachers)
            previous.extra = dict(extra or previous.extra)
            atomic_write_text(output_folder / EVALUATION_FILE, json.dumps(previous.to_dict(), indent=1))
            return previous

    predictions = output_folder / "predictions"
    predictions.mkdir(parents=True, exist_ok=True)
    predictor = make_predictor(model, use_mirroring=mirroring)
    seconds: dict[str, float] = {}
    with nnunet_eval.torch_threads(threads) as used_threads:
        if warmup:
            nnunet_eval.predict_case(predictor, test_set.cases[0].images)
        announce(CASE, done=0, total=len(test_set.cases))
        for index, case in enumerate(test_set.cases):
            segmentation, properties, took = nnunet_eval.predict_case(predictor, case.images)
            seconds[case.case] = took
            nnunet_eval.write_segmentation(predictor, segmentation, properties,
                                           predictions / f"{case.case}{test_set.file_ending}")
            say(f"{name}: predicted {index + 1}/{len(test_set.cases)} ({took:.2f} s)")
            announce(CASE, done=index + 1, total=len(test_set.cases))

    labels = nnunet_eval.evaluated_labels(model)
    label_names = _label_names(model.dataset_json, labels)
    reader = nnunet_eval.reader_for(test_set.file_ending, test_set.cases[0].reference)
    ignore_label = model.label_manager.ignore_label
    nnunet_cases, cases = [], []
    for case in test_set.cases:
        prediction_file = predictions / f"{case.case}{test_set.file_ending}"
        scores = nnunet_eval.case_metrics(case.reference, prediction_file, reader, labels, ignore_label)
        nnunet_cases.append({"reference_file": str(case.reference), "prediction_file": str(prediction_file),
                             "metrics": scores.metrics})
        cases.append(_case_record(case, prediction_file, seconds[case.case], scores))
    summary = nnunet_eval.summarize_cases(nnunet_cases, labels)
    summary_file = nnunet_eval.write_summary_json(summary, output_folder / "summary.json")

    per_class = _per_class(cases, label_names)
    _, dice_sd, _ = mean_sd(c["dice_mean"] for c in cases)
    hd_mean, hd_sd, _ = mean_sd(pc["hd95_mean"] for pc in per_class.values())
    times = list(seconds.values())
    foreground = summary["foreground_mean"]
    evaluation = ModelEvaluation(
        name=name, role=role, architecture=_architecture_name(model), network_class=model.architecture,
        model_folder=str(Path(model_folder).resolve()), folds=list(model.folds), checkpoint=checkpoint_name,
        params=nnunet_eval.count_parameters(model.build_network()),
        seconds_per_case=float(sum(times) / len(times)), seconds_per_case_median=float(statistics.median(times)),
        dice_mean=_number(foreground.get("Dice")), dice_sd=dice_sd, iou_mean=_number(foreground.get("IoU")),
        hd95_mean=hd_mean, hd95_sd=hd_sd, labels=label_names, per_class=per_class, cases=cases,
        inference={"device": "cpu", "threads": used_threads, "mirroring": mirroring, "warmup": warmup,
                   "sequential": True},
        evaluation_folder=str(output_folder.resolve()), summary_file=str(Path(summary_file).resolve()),
        teachers=list(teachers), training=training_curves(model_folder, model.folds[0]), extra=dict(extra or {}),
        fingerprint=fingerprint)
    atomic_write_text(output_folder / EVALUATION_FILE, json.dumps(clean_json(evaluation.to_dict()), indent=1))
    return ModelEvaluation.from_dict(clean_json(evaluation.to_dict()))


def _number(value) -> Optional[float]:
    import math

    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def clean_json(value):
    """NaN/inf to None and numpy scalars to Python numbers, so the JSON is strict."""
    import math

    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
