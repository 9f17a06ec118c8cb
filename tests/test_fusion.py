"""Fusion strategies against hand-computed cases (probabilities are dyadic, so float32 holds them exactly)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kt_nnunet.teachers.fusion import StapleFusion, make_fusion, mean_pairwise_dice


def probs(*voxels):
    """Teacher probabilities ``(C, V)`` from one ``[p_class0, p_class1, ...]`` list per voxel."""
    return torch.tensor(voxels, dtype=torch.float32).t().contiguous()


def fuse(method, teachers, **kwargs):
    fusion = make_fusion(method, len(teachers), **kwargs)
    for p in teachers:
        fusion.add(p)
    return fusion.result()


TWO_TEACHERS = [probs([.5, .25, .25], [.125, .125, .75]),
                probs([.25, .5, .25], [.5, .25, .25])]

# Three teachers, three voxels; argmax maps T1 = [0, 1, 2], T2 = [0, 0, 1], T3 = [1, 2, 1].
THREE_TEACHERS = [probs([.5, .25, .25], [.25, .5, .25], [.25, .25, .5]),
                  probs([.5, .25, .25], [.5, .25, .25], [.25, .5, .25]),
                  probs([.25, .5, .25], [.125, .375, .5], [.25, .5, .25])]


def test_mean_fusion_by_hand():
    # voxel 0: mean [.375, .375, .25] -> a tie between 0 and 1, resolved to the first (as numpy's argmax)
    # voxel 1: mean [.3125, .1875, .5] -> class 2
    fused = fuse("mean", TWO_TEACHERS)
    assert fused.labels.tolist() == [0, 2]
    assert fused.confidence.tolist() == [.375, .5]
    assert fused.probabilities[:, 1].tolist() == [.3125, .1875, .5]
    assert fused.ignored_fraction == 0.0


def test_weighted_fusion_by_hand():
    # weights 3:1 -> .75 / .25; voxel 0: [.4375, .3125, .25]; voxel 1: [.21875, .15625, .625]
    fused = fuse("weighted", TWO_TEACHERS, weights=[3, 1])
    assert fused.labels.tolist() == [0, 2]
    assert fused.confidence.tolist() == [.4375, .625]
    assert fused.probabilities[:, 0].tolist() == [.4375, .3125, .25]


def test_majority_vote_by_hand():
    # votes: voxel 0 -> 0 (2 of 3); voxel 1 -> one vote each, the tie goes to the highest mean probability:
    # class 1 (1.125/3 against .875/3 and 1/3); voxel 2 -> 1 (2 of 3). Confidence is the vote share.
    fused = fuse("majority", THREE_TEACHERS)
    assert fused.labels.tolist() == [0, 1, 1]
    np.testing.assert_allclose(fused.confidence.numpy(), [2 / 3, 1 / 3, 2 / 3], rtol=1e-6)
    assert fused.probabilities is None


def test_teacher_agreement_is_mean_pairwise_dice_by_hand():
    # T1 = [0,1,2], T2 = [0,0,1], T3 = [1,2,1]: pairs (1,2) and (1,3) share no foreground voxel -> 0;
    # (2,3): class 1 Dice 2*1/(1+2) = 2/3, class 2 Dice 0 -> 1/3. Mean over the pairs: 1/9.
    fused = fuse("mean", THREE_TEACHERS)
    assert fused.teacher_agreement == pytest.approx(1 / 9)
    assert mean_pairwise_dice([torch.tensor([0, 1])], 3) == 1.0  # one teacher: agreement is trivially 1
    assert mean_pairwise_dice([torch.tensor([0, 0]), torch.tensor([0, 0])], 3) == 1.0  # both empty


def staple_case():
    # Hard teachers over two classes and four voxels: A = [1,1,0,0], B = [1,0,0,0], C = [1,1,1,0].
    one_hot = lambda labels: probs(*[[1 - v, v] for v in labels])  # noqa: E731
    return [one_hot([1, 1, 0, 0]), one_hot([1, 0, 0, 0]), one_hot([1, 1, 1, 0])]


def test_staple_one_em_step_by_hand():
    """First EM step from the mean-probability initialisation W0(class 1) = [1, 2/3, 1/3, 0]:

    prior = (.5, .5). Confusion theta[said, truth] = sum_v [teacher says `said` at v] W0(truth, v),
    normalised per truth: A: truth 1 -> (1/6, 5/6), truth 0 -> (5/6, 1/6); B: truth 1 -> (1/2, 1/2),
    truth 0 -> (1, 0); C: truth 1 -> (0, 1), truth 0 -> (1/2, 1/2). Posterior of class 1:
    v0: 5/24 against 0 -> 1; v1: 5/24 against 1/24 -> 5/6; v2: 1/24 against 5/24 -> 1/6; v3: 0.
    """
    fusion = StapleFusion(3, max_iterations=1)
    for p in staple_case():
        fusion.add(p)
    fused = fusion.result()
    np.testing.assert_allclose(fused.probabilities[1].numpy(), [1, 5 / 6, 1 / 6, 0], atol=1e-6)
    assert fused.labels.tolist() == [1, 1, 0, 0]
    np.testing.assert_allclose(fused.confidence.numpy(), [1, 5 / 6, 5 / 6, 1], atol=1e-6)


def test_staple_converged_keeps_the_consensus_and_sharpens_it():
    fused = fuse("staple", staple_case())
    assert fused.labels.tolist() == [1, 1, 0, 0]
    assert fused.confidence[1] >= 5 / 6 - 1e-6 and fused.confidence[2] >= 5 / 6 - 1e-6
    # unanimous teachers: STAPLE returns their labels with full confidence
    same = fuse("staple", [staple_case()[0]] * 3)
    assert same.labels.tolist() == [1, 1, 0, 0]
    np.testing.assert_allclose(same.confidence.numpy(), 1.0, atol=1e-5)


@pytest.mark.parametrize("method", ["mean", "majority", "staple"])
def test_min_confidence_gives_the_ignore_label(method):
    teachers = TWO_TEACHERS if method == "mean" else THREE_TEACHERS
    fused = fuse(method, teachers, min_confidence=0.4, ignore_label=3)
    if method == "mean":  # confidences .375 and .5
        assert fused.labels.tolist() == [3, 2]
        assert fused.ignored_fraction == 0.5
    elif method == "majority":  # vote shares 2/3, 1/3, 2/3
        assert fused.labels.tolist() == [0, 3, 1]
        assert fused.ignored_fraction == pytest.approx(1 / 3)
    else:  # STAPLE is certain on these three voxels (nothing below 0.4 to ignore): 40 voxels that disagree more
        generator = torch.Generator().manual_seed(0)
        teachers = [torch.softmax(2 * torch.randn(3, 40, generator=generator), 0) for _ in range(3)]
        plain = fuse(method, teachers)
        threshold = float(plain.confidence.min() + plain.confidence.max()) / 2
        below = plain.confidence < threshold
        assert 0 < int(below.sum()) < 40, plain.confidence  # some voxels are ignored, not all
        fused = fuse(method, teachers, min_confidence=threshold, ignore_label=3)
        assert fused.labels.tolist() == torch.where(below, 3, plain.labels).tolist()
        assert fused.ignored_fraction == pytest.approx(float(below.float().mean()))


def test_mean_fusion_reproduces_nnunet_ensemble_arithmetic():
    """nnUNetv2_ensemble: float32 sum in teacher order, divided once, numpy argmax. Bit for bit the same."""
    rng = np.random.default_rng(0)
    teachers = []
    for _ in range(3):
        logits = rng.normal(size=(4, 16, 16)).astype(np.float32)
        p = np.exp(logits) / np.exp(logits).sum(0, keepdims=True)
        teachers.append(p.astype(np.float32))
    average = teachers[0].copy()
    for p in teachers[1:]:
        average += p
    average /= len(teachers)
    fused = fuse("mean", [torch.from_numpy(p) for p in teachers])
    assert np.array_equal(fused.probabilities.numpy(), average)
    assert np.array_equal(fused.labels.numpy(), average.argmax(0))


def test_streaming_keeps_one_probability_map():
    fusion = make_fusion("mean", 3)
    for p in THREE_TEACHERS:
        fusion.add(p)
        assert fusion.mean_probabilities.shape == p.shape  # one accumulator, whatever the number of teachers
    assert all(t.dtype == torch.uint8 for t in fusion.teacher_labels)


def test_fusion_argument_errors():
    with pytest.raises(ValueError, match="unknown fusion"):
        make_fusion("vote", 2)
    with pytest.raises(ValueError, match="needs --weights"):
        make_fusion("weighted", 2)
    with pytest.raises(ValueError, match="only applies"):
        make_fusion("mean", 2, weights=[1, 1])
    with pytest.raises(ValueError, match="non-negative weights"):
        make_fusion("weighted", 2, weights=[1, -1])
    with pytest.raises(ValueError, match="ignore label"):
        make_fusion("mean", 2, min_confidence=0.5)
    fusion = make_fusion("mean", 1)
    with pytest.raises(ValueError, match="0 of 1"):
        fusion.result()
    fusion.add(TWO_TEACHERS[0])
    with pytest.raises(ValueError, match="more than the 1"):
        fusion.add(TWO_TEACHERS[1])
    two = make_fusion("mean", 2)
    two.add(TWO_TEACHERS[0])
    with pytest.raises(ValueError, match="shape"):
        two.add(torch.zeros(3, 5))


def test_reliability_weights_by_hand():
    """Two teachers agree on a 4-voxel foreground, the third marks the other four voxels (two classes)."""
    from kt_nnunet.teachers.fusion import dice_between, reliability_weights

    one_hot = lambda labels: probs(*[[1 - v, v] for v in labels])  # noqa: E731
    good = [1, 1, 1, 1, 0, 0, 0, 0]
    bad = [0, 0, 0, 0, 1, 1, 1, 1]
    teachers = [one_hot(good), one_hot(good), one_hot(bad)]
    labels = [t.argmax(0) for t in teachers]
    weights = reliability_weights(teachers, labels, rounds=1)
    # round 1, equal weights: good teacher's consensus = mean(good, bad) = .5/.5 everywhere -> argmax 0
    # (no foreground): Dice(good, empty) = 0 -> floor 1e-3; bad teacher's consensus = good: Dice 0.
    # All floored -> equal weights. A second round cannot move them either:
    assert weights == pytest.approx([1 / 3] * 3)
    # A soft tie-breaker: the good teachers are confident (.9), the bad one less (.6).
    soft = lambda labels, c: probs(*[[1 - c, c] if v else [c, 1 - c] for v in labels])  # noqa: E731
    teachers = [soft(good, .9), soft(good, .9), soft(bad, .6)]
    labels = [t.argmax(0) for t in teachers]
    first = reliability_weights(teachers, labels, rounds=1)
    # good i: others = (.9-teacher + .6-teacher)/3 -> class 1 prob (.9 + .4)/3 > (.1 + .6)/3 on good voxels: the
    # consensus is `good` -> Dice 1; bad: consensus of the two good ones is `good` -> Dice 0 -> 1e-3.
    assert dice_between(labels[0], labels[1], 2) == 1.0
    scores = [1.0, 1.0, 1e-3 ** 2]
    assert first == pytest.approx([s / sum(scores) for s in scores])
    fused = fuse("reliability", teachers)
    assert fused.labels.tolist() == good and fused.teacher_weights == pytest.approx(
        reliability_weights(teachers, labels))
    expected = sum(p * w for p, w in zip(teachers, fused.teacher_weights))
    np.testing.assert_allclose(fused.probabilities.numpy(), expected.numpy(), atol=1e-3)  # float16 storage
    # two teachers: no leave-one-out consensus to speak of, plain mean
    assert reliability_weights(teachers[:2], labels[:2]) == [0.5, 0.5]
