"""Effects, bootstrap intervals, Wilcoxon and verdicts on hand-made numbers (and against SciPy)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from kt_nnunet.experiment.claims import evaluate_claims, paired_scores
from kt_nnunet.experiment.statistics import (DIFFERENCE, DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, RATIO, Effect,
                                             bootstrap_effect, paired_wilcoxon, verdict)


def test_effect_by_hand_and_nan_pairs_dropped():
    a = [[0.8, 0.6, 0.7, math.nan]]
    b = [[0.7, 0.5, 0.7, 0.9]]
    effect = bootstrap_effect(a, b)
    assert effect.effect == pytest.approx((0.8 + 0.6 + 0.7) / 3 - (0.7 + 0.5 + 0.7) / 3)
    assert effect.n_pairs == 3 and effect.n_repeats == 1
    assert effect.ci_low <= effect.effect <= effect.ci_high
    ratio = bootstrap_effect(a, b, RATIO)
    assert ratio.effect == pytest.approx(2.1 / 1.9)


def test_constant_difference_has_a_zero_width_interval_and_the_bootstrap_is_seeded():
    rng = np.random.default_rng(3)
    b = rng.uniform(0.5, 0.8, size=(3, 10))
    a = b + 0.05
    effect = bootstrap_effect(a, b)
    assert effect.ci_low == pytest.approx(0.05) and effect.ci_high == pytest.approx(0.05)
    noisy = b + rng.normal(0.05, 0.02, size=b.shape)
    assert bootstrap_effect(noisy, b) == bootstrap_effect(noisy, b)  # same numbers, same interval


def test_interval_covers_repeat_to_repeat_spread():
    """Each repeat gives a constant difference (+.1, +.0, -.1): cases alone would give a zero-width interval."""
    b = np.full((3, 8), 0.7)
    a = b + np.array([[0.1], [0.0], [-0.1]])
    effect = bootstrap_effect(a, b, resamples=4000)
    assert effect.effect == pytest.approx(0.0, abs=1e-12)
    assert effect.ci_low == pytest.approx(-0.1) and effect.ci_high == pytest.approx(0.1)
    # resampling 3 repeats: the interval's ends are the repeat means' extremes (all three drawn the same)


def test_wilcoxon_by_hand_and_against_scipy():
    # four positive differences: the exact one-sided p is P(W+ = 10) = 1/2^4
    assert paired_wilcoxon([[0.5, 0.6, 0.7, 0.8]], [[0.4, 0.4, 0.4, 0.4]]) == pytest.approx(1 / 16)
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.6, 0.9, (2, 9)), rng.uniform(0.6, 0.9, (2, 9))
    assert paired_wilcoxon(a, b) == pytest.approx(stats.wilcoxon((a - b).ravel(), alternative="greater").pvalue)
    # a threshold shifts the differences; a ratio threshold scales the reference
    assert paired_wilcoxon(a, b, DIFFERENCE, -0.02) == pytest.approx(
        stats.wilcoxon((a - b + 0.02).ravel(), alternative="greater").pvalue)
    assert paired_wilcoxon(a, b, RATIO, 0.97) == pytest.approx(
        stats.wilcoxon((a - 0.97 * b).ravel(), alternative="greater").pvalue)
    assert paired_wilcoxon([[0.5, 0.5]], [[0.5, 0.5]]) is None  # no difference at all: no test


def test_verdict_rules():
    def effect(low, high):
        return Effect(DIFFERENCE, (low + high) / 2, low, high, 3, 30)

    assert verdict(effect(0.01, 0.05), 0.01, 0.0) == HOLDS
    assert verdict(effect(0.01, 0.05), 0.2, 0.0) == INCONCLUSIVE   # interval and test must agree
    assert verdict(effect(-0.05, -0.01), 0.9, 0.0) == DOES_NOT_HOLD
    assert verdict(effect(-0.01, 0.05), 0.04, 0.0) == INCONCLUSIVE
    assert verdict(effect(-0.015, 0.01), 0.01, -0.02) == HOLDS       # "matches" within the margin
    assert verdict(Effect(DIFFERENCE, None, None, None, 1, 0), None, 0.0) == INCONCLUSIVE


def _model(name, role, per_repeat, teachers=(), params=1000):
    repeats = [{"repeat": k, "seed": k, "dice_mean": float(np.mean(list(d.values()))), "case_dice": d}
               for k, d in enumerate(per_repeat)]
    return {"name": name, "role": role, "teachers": list(teachers), "params": params, "repeats": repeats,
            "dice_mean": float(np.mean([r["dice_mean"] for r in repeats]))}


def test_claims_pair_by_repeat_and_case_and_a_fixed_teacher_pairs_with_every_repeat():
    cases = ["c1", "c2", "c3", "c4", "c5", "c6"]
    teacher = _model("t", "teacher", [dict(zip(cases, [0.70, 0.72, 0.74, 0.76, 0.78, 0.80]))], params=5000)
    student = _model("s", "student", [dict(zip(cases, [0.71, 0.73, 0.75, 0.77, 0.79, 0.81])),
                                      dict(zip(cases, [0.69, 0.72, 0.75, 0.76, 0.79, 0.80]))], teachers=["t"])
    a, b = paired_scores(student, teacher)
    assert a.shape == b.shape == (2, 6) and np.array_equal(b[0], b[1])
    comparisons = [{"kind": "student_vs_teacher", "model": "s", "reference": "t"}]
    rows = evaluate_claims([teacher, student], comparisons)
    assert [r["kind"] for r in rows] == ["student_matches_teacher", "light_student_keeps_dice"]
    matches, keeps = rows
    assert matches["effect"] == pytest.approx(float((a - b).mean()))
    assert matches["verdict"] == HOLDS and matches["n_repeats"] == 2 and matches["n_pairs"] == 12
    assert keeps["statistic"] == RATIO and keeps["verdict"] == HOLDS
    # a student that is not smaller than its teacher gets no "light student" row
    student["params"] = 10_000
    assert [r["kind"] for r in evaluate_claims([teacher, student], comparisons)] == ["student_matches_teacher"]
