"""Scoring a model's test-set predictions: nnU-Net's per-case metrics plus HD95, and nnU-Net's summary.json.

Each case is scored by nnU-Net's ``compute_metrics`` (``kt_nnunet.nnunet.evaluation.case_metrics``) on the
arrays it read once; HD95 (``kt_nnunet.evaluation.metrics``) is added per label from the same arrays.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from kt_nnunet.evaluation.metrics import hd95, mean_sd
from kt_nnunet.evaluation.prediction import prediction_file


@dataclass
class TestSetScores:
    label_names: dict   # {"1": "grey_matter", ...}: the evaluated foreground labels (or regions)
    cases: list         # per-case records: files, seconds, per-label metrics with HD95, mean Dice
    summary: dict       # nnU-Net's summary.json content
    summary_file: Path


def score_test_set(model, test_set, predictions: Path, seconds: dict, summary_path: Path) -> TestSetScores:
    """Score every case's prediction in ``predictions`` and write nnU-Net's ``summary.json`` to ``summary_path``."""
    from kt_nnunet.nnunet import evaluation as nnunet_eval

    labels = nnunet_eval.evaluated_labels(model)
    reader = nnunet_eval.reader_for(test_set.file_ending, test_set.cases[0].reference)
    ignore_label = model.label_manager.ignore_label
    nnunet_cases, cases = [], []
    for case in test_set.cases:
        predicted = prediction_file(predictions, case, test_set)
        scores = nnunet_eval.case_metrics(case.reference, predicted, reader, labels, ignore_label)
        nnunet_cases.append({"reference_file": str(case.reference), "prediction_file": str(predicted),
                             "metrics": scores.metrics})
        cases.append(_case_record(case, predicted, seconds[case.case], scores))
    summary = nnunet_eval.summarize_cases(nnunet_cases, labels)
    summary_file = nnunet_eval.write_summary_json(summary, summary_path)
    return TestSetScores(label_names(model.dataset_json, labels), cases, summary, summary_file)


def label_names(dataset_json: dict, labels: Sequence) -> dict:
    """``{str(label): its name in dataset.json}`` (the label itself where dataset.json has no name for it)."""
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


def _case_record(case, predicted: Path, seconds: float, scores) -> dict:
    metrics = {}
    for label, values in scores.metrics.items():
        mask = _mask(label)
        distance, status = hd95(mask(scores.prediction), mask(scores.reference), scores.spacing)
        metrics[str(label)] = {**values, "HD95": distance, "HD95_status": status}
    dice = [m["Dice"] for m in metrics.values()]
    mean, _, _ = mean_sd(dice)
    return {"case": case.case, "image_files": [str(f) for f in case.images], "reference_file": str(case.reference),
            "prediction_file": str(predicted), "seconds": seconds, "dice_mean": mean, "metrics": metrics}


def _mask(label):
    import numpy as np

    if isinstance(label, tuple):
        return lambda seg: np.isin(seg, label)
    return lambda seg: seg == label
