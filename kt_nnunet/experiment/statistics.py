"""Effects with uncertainty for paired per-case scores over repeated trainings.

Scores come as ``(repeats, cases)`` arrays: row ``k`` holds each test case's Dice for the model trained
with seed ``seed + k``; a second model's array is paired with it cell by cell (same repeat, same case).
NaN marks a case without a score; a pair counts only where both models have one.

* :func:`bootstrap_effect`: the effect (difference of means, or ratio of means) with a percentile
  confidence interval from a two-level bootstrap: repeats are resampled with replacement, then test cases
  with replacement (the same cases for both models), so the interval covers both training randomness and
  the choice of test cases.
* :func:`paired_wilcoxon`: SciPy's one-sided Wilcoxon signed-rank test that the paired effect exceeds a
  threshold (differences ``a - b - threshold``, or ``a - threshold * b`` for a ratio).
* :func:`verdict`: ``holds`` / ``does not hold`` / ``inconclusive`` from the interval and the test.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

DIFFERENCE, RATIO = "difference", "ratio"
HOLDS, DOES_NOT_HOLD, INCONCLUSIVE = "holds", "does not hold", "inconclusive"
VERDICTS = (HOLDS, DOES_NOT_HOLD, INCONCLUSIVE)


@dataclass(frozen=True)
class Effect:
    statistic: str            # DIFFERENCE or RATIO
    effect: Optional[float]   # mean(a) - mean(b), or mean(a) / mean(b), over the valid pairs
    ci_low: Optional[float]
    ci_high: Optional[float]
    n_repeats: int
    n_pairs: int


def _paired(a, b) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.ndim == 1:
        a = a[None]
    if b.ndim == 1:
        b = b[None]
    if a.shape != b.shape:
        raise ValueError(f"paired scores need equal shapes (repeats, cases), got {a.shape} and {b.shape}")
    valid = np.isfinite(a) & np.isfinite(b)
    return np.where(valid, a, 0.0), np.where(valid, b, 0.0), valid


def _statistic(a_sum, b_sum, count, statistic: str):
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_a, mean_b = a_sum / count, b_sum / count
        return mean_a - mean_b if statistic == DIFFERENCE else mean_a / mean_b


def bootstrap_effect(a, b, statistic: str = DIFFERENCE, *, resamples: int = 2000, confidence: float = 0.95,
                     seed: int = 0) -> Effect:
    """The paired effect of ``a`` over ``b`` (``(repeats, cases)`` arrays) with its bootstrap interval.

    The bootstrap is seeded, so the same scores always give the same interval.
    """
    if statistic not in (DIFFERENCE, RATIO):
        raise ValueError(f"statistic must be {DIFFERENCE!r} or {RATIO!r}, got {statistic!r}")
    a, b, valid = _paired(a, b)
    repeats, cases = a.shape
    count = valid.sum()
    if count == 0:
        return Effect(statistic, None, None, None, repeats, 0)
    point = float(_statistic(a.sum(), b.sum(), count, statistic))
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, repeats, size=(resamples, repeats))
    columns = rng.integers(0, cases, size=(resamples, cases))
    pick = (rows[:, :, None], columns[:, None, :])
    samples = _statistic(a[pick].sum((1, 2)), b[pick].sum((1, 2)), valid[pick].sum((1, 2)), statistic)
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return Effect(statistic, point, None, None, repeats, int(count))
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(samples, [tail, 100.0 - tail])
    return Effect(statistic, point, float(low), float(high), repeats, int(count))


def paired_wilcoxon(a, b, statistic: str = DIFFERENCE, threshold: float = 0.0) -> Optional[float]:
    """One-sided p-value that the paired effect exceeds ``threshold`` (None without any non-zero difference)."""
    from scipy.stats import wilcoxon

    a, b, valid = _paired(a, b)
    differences = (a - b - threshold) if statistic == DIFFERENCE else (a - threshold * b)
    differences = differences[valid]
    if differences.size == 0 or not np.any(differences != 0):
        return None
    return float(wilcoxon(differences, alternative="greater").pvalue)


def verdict(effect: Effect, p_value: Optional[float], threshold: float, alpha: float = 0.05) -> str:
    """``holds`` when the whole interval lies above ``threshold`` and the test rejects at ``alpha``;
    ``does not hold`` when the whole interval lies below it; ``inconclusive`` otherwise."""
    if effect.ci_low is None or effect.ci_high is None:
        return INCONCLUSIVE
    if effect.ci_low > threshold and p_value is not None and p_value < alpha:
        return HOLDS
    if effect.ci_high < threshold:
        return DOES_NOT_HOLD
    return INCONCLUSIVE
