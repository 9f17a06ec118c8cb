"""The paper's claims as verdicts with uncertainty, from results.json model records (docs/experiment.md).

Each comparison that ``results.compare_models`` finds becomes one or two claim rows:

| comparison | claim | effect | holds when the 95 % interval lies above |
| --- | --- | --- | --- |
| student vs its teacher | a single-teacher student matches its teacher | Dice difference | -0.02 (the margin) |
| student vs its teacher, student smaller | the light student keeps >= 0.97 of its teacher's Dice | Dice ratio | 0.97 |
| multi-teacher student vs the best teacher | a multi-teacher student beats the best teacher | Dice difference | 0 |
| transfer + fine-tune vs fine-tune only | transfer + fine-tune beats fine-tune only | Dice difference | 0 |

Scores are each test case's mean foreground Dice, paired by repeat and case (``kt_nnunet.experiment.statistics``).
A model that is not retrained per repeat (a ``model_folder`` teacher) is paired with every repeat.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from kt_nnunet.experiment.statistics import DIFFERENCE, RATIO, bootstrap_effect, paired_wilcoxon, verdict

MATCH_MARGIN = 0.02
KEEP_RATIO = 0.97
CLAIMS = {
    "student_matches_teacher": ("a single-teacher student matches its teacher", DIFFERENCE, -MATCH_MARGIN),
    "light_student_keeps_dice": (f"the light student keeps >= {KEEP_RATIO} of its teacher's Dice", RATIO,
                                 KEEP_RATIO),
    "multi_teacher_beats_best_teacher": ("a multi-teacher student beats the best teacher", DIFFERENCE, 0.0),
    "kt_finetune_beats_finetune_only": ("transfer + fine-tune beats fine-tune only", DIFFERENCE, 0.0),
}
CLAIMS_OF_COMPARISON = {"student_vs_teacher": ("student_matches_teacher", "light_student_keeps_dice"),
                        "multi_teacher_vs_best_teacher": ("multi_teacher_beats_best_teacher",),
                        "kt_finetune_vs_finetune_only": ("kt_finetune_beats_finetune_only",)}


def repeat_case_dice(model: dict) -> list[dict]:
    """Per repeat, ``{case: Dice}``; a record without ``repeats`` is one repeat (its ``cases``)."""
    repeats = model.get("repeats")
    if repeats:
        return [r.get("case_dice") or {} for r in repeats]
    return [{c["case"]: c.get("dice_mean") for c in model.get("cases") or []}]


def paired_scores(model: dict, against: dict) -> tuple[np.ndarray, np.ndarray]:
    """``(repeats, cases)`` arrays of the two models' per-case Dice, paired by repeat and case (NaN: missing)."""
    ours, theirs = repeat_case_dice(model), repeat_case_dice(against)
    if len(theirs) == 1 and len(ours) > 1:
        theirs = theirs * len(ours)
    elif len(ours) == 1 and len(theirs) > 1:
        ours = ours * len(theirs)
    count = min(len(ours), len(theirs))
    cases = sorted(set().union(*(set(d) for d in ours[:count])))

    def matrix(rows):
        return np.array([[np.nan if r.get(c) is None else float(r[c]) for c in cases] for r in rows[:count]])

    return matrix(ours), matrix(theirs)


def claim_row(kind: str, model: dict, against: dict, seed: int = 0) -> dict:
    title, statistic, threshold = CLAIMS[kind]
    a, b = paired_scores(model, against)
    effect = bootstrap_effect(a, b, statistic, seed=seed)
    p_value = paired_wilcoxon(a, b, statistic, threshold)
    return {"claim": title, "kind": kind, "model": model["name"], "against": against["name"],
            "statistic": statistic, "threshold": threshold, "effect": effect.effect, "ci_low": effect.ci_low,
            "ci_high": effect.ci_high, "p_value": p_value, "n_repeats": effect.n_repeats, "n_pairs": effect.n_pairs,
            "verdict": verdict(effect, p_value, threshold)}


def evaluate_claims(models: Sequence[dict], comparisons: Sequence[dict]) -> list[dict]:
    """One row per claim that the comparisons allow, in the comparisons' order."""
    by_name = {m["name"]: m for m in models}
    rows = []
    for comparison in comparisons:
        model, against = by_name[comparison["model"]], by_name[comparison["reference"]]
        for kind in CLAIMS_OF_COMPARISON.get(comparison["kind"], ()):
            if kind == "light_student_keeps_dice" and not (model.get("params") or 0) < (against.get("params") or 0):
                continue
            rows.append(claim_row(kind, model, against))
    return rows
