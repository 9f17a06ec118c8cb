"""HD95 on hand-computed cases, the empty-mask conventions, and training curves from nnU-Net's text log."""
from __future__ import annotations

import math

import numpy as np
import pytest

from kt_nnunet.evaluation.curves import curves_from_log, training_curves
from kt_nnunet.evaluation.metrics import hd95, mean_sd, surface


def points(shape, *coordinates):
    mask = np.zeros(shape, bool)
    for c in coordinates:
        mask[c] = True
    return mask


def test_single_points_distance_with_and_without_spacing():
    a, b = points((10, 10), (2, 2)), points((10, 10), (2, 5))
    assert hd95(a, b) == (3.0, "ok")
    assert hd95(a, b, spacing=(2.0, 0.5)) == (1.5, "ok")        # along axis 1: 3 voxels x 0.5 mm
    c = points((10, 10), (6, 2))
    assert hd95(a, c, spacing=(2.0, 0.5)) == (8.0, "ok")        # along axis 0: 4 voxels x 2 mm
    assert hd95(a, a) == (0.0, "ok")


def test_pooled_percentile_is_medpys_definition():
    # prediction surface -> reference: [0, 4]; reference surface -> prediction: [0]. Pooled [0, 0, 4]:
    # the 95th percentile (linear interpolation) is 0 + 0.9 * 4 = 3.6 (max of directed 95ths would give 3.8).
    prediction = points((9, 12), (5, 5), (5, 9))
    reference = points((9, 12), (5, 5))
    value, status = hd95(prediction, reference)
    assert status == "ok" and value == pytest.approx(3.6)


def test_surfaces_of_filled_squares_and_a_shift():
    reference = np.zeros((12, 12), bool)
    reference[3:8, 3:8] = True
    assert surface(reference).sum() == 16                         # the 5x5 square's ring
    shifted = np.roll(reference, 2, axis=1)
    # each ring voxel is 2 columns from the other ring or nearer; the left/right edges are exactly 2 away
    value, status = hd95(shifted, reference, spacing=(1.0, 1.5))
    assert status == "ok" and value == pytest.approx(3.0)        # 2 voxels x 1.5 mm
    everything = np.ones((6, 6), bool)                           # border voxels count as surface
    assert surface(everything).sum() == 20 and hd95(everything, everything) == (0.0, "ok")


def test_singleton_axes_are_dropped_with_their_spacing():
    a, b = points((1, 10, 10), (0, 2, 2)), points((1, 10, 10), (0, 2, 5))
    assert hd95(a, b, spacing=(999.0, 1.0, 1.0)) == (3.0, "ok")  # a 2D slice stored as a one-slice volume
    three_d = points((5, 6, 6), (1, 1, 1)), points((5, 6, 6), (3, 1, 1))
    assert hd95(*three_d, spacing=(2.0, 1.0, 1.0)) == (4.0, "ok")


def test_empty_masks_follow_the_documented_convention():
    empty, one = np.zeros((1, 64, 64), bool), points((1, 64, 64), (0, 3, 3))
    value, status = hd95(empty, empty, spacing=(999.0, 1.0, 1.0))
    assert math.isnan(value) and status == "both_empty"
    assert hd95(empty, one, spacing=(999.0, 1.0, 1.0)) == (pytest.approx(math.hypot(64, 64)), "prediction_empty")
    assert hd95(one, empty, spacing=(5.0, 2.0, 0.5)) == (pytest.approx(math.hypot(128, 32)), "reference_empty")
    assert hd95(one, empty, penalty=373.0) == (373.0, "reference_empty")
    with pytest.raises(ValueError, match="shape"):
        hd95(one, empty[0])


def test_mean_sd_skips_missing_values():
    assert mean_sd([1.0, None, 3.0, float("nan")]) == (2.0, pytest.approx(math.sqrt(2)), 2)
    assert mean_sd([0.5]) == (0.5, None, 1)
    assert mean_sd([None]) == (None, None, 0)


LOG = """
2026-11-25 06:05:16.750442: Epoch 0
2026-11-25 06:05:16.750577: Current learning rate: 0.01
2026-11-25 06:05:25.154420: train_loss 1.3688
2026-11-25 06:05:25.154672: val_loss 1.2204
2026-11-25 06:05:25.154797: Pseudo dice [np.float32(0.4), np.float32(0.2)]
2026-11-25 06:05:25.154921: Epoch time: 8.4 s
2026-11-25 06:05:26.000000: Epoch 1
2026-11-25 06:05:30.154420: train_loss -0.25
2026-11-25 06:05:30.154672: val_loss -0.5
2026-11-25 06:05:30.154797: Pseudo dice [0.8, 0.6]
"""


def test_training_curves_from_the_text_log(tmp_path):
    fold = tmp_path / "model" / "fold_0"
    fold.mkdir(parents=True)
    (fold / "training_log_2026_11_25_06_05_16.txt").write_text(LOG)
    curves = training_curves(tmp_path / "model", 0)
    assert curves["train_losses"] == [1.3688, -0.25] and curves["val_losses"] == [1.2204, -0.5]
    assert curves["mean_fg_dice"] == pytest.approx([0.3, 0.7])
    assert curves["ema_fg_dice"] == pytest.approx([0.3, 0.9 * 0.3 + 0.1 * 0.7])  # nnU-Net's EMA rule
    assert curves["epochs"] == 2
    assert curves_from_log(fold / "training_log_2026_11_25_06_05_16.txt") == curves
    assert training_curves(tmp_path / "nothing", 0) is None
