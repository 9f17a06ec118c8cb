"""A model's scores over the test set, from its per-case records: per class, overall, and its speed."""
from __future__ import annotations

import math
import statistics
from typing import Optional

from kt_nnunet.evaluation.metrics import mean_sd
from kt_nnunet.evaluation.scoring import TestSetScores


def aggregate(scores: TestSetScores, seconds: dict) -> dict:
    """The :class:`~kt_nnunet.evaluation.record.ModelEvaluation` fields that summarise the cases.

    Overall Dice and IoU are nnU-Net's ``foreground_mean``; ``dice_sd`` is the sd over cases of each case's
    mean Dice; HD95 is the mean over classes of the per-class means, with the sd of those means.
    """
    per_class = per_class_scores(scores.cases, scores.label_names)
    _, dice_sd, _ = mean_sd(c["dice_mean"] for c in scores.cases)
    hd_mean, hd_sd, _ = mean_sd(pc["hd95_mean"] for pc in per_class.values())
    times = list(seconds.values())
    foreground = scores.summary["foreground_mean"]
    return {"seconds_per_case": float(sum(times) / len(times)),
            "seconds_per_case_median": float(statistics.median(times)),
            "dice_mean": _number(foreground.get("Dice")), "dice_sd": dice_sd,
            "iou_mean": _number(foreground.get("IoU")), "hd95_mean": hd_mean, "hd95_sd": hd_sd,
            "labels": scores.label_names, "per_class": per_class, "cases": scores.cases}


def per_class_scores(cases: list, label_names: dict) -> dict:
    """Per class: Dice, IoU and HD95 mean and sd over cases, and how many cases HD95 penalised or left out."""
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


def _number(value) -> Optional[float]:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value
