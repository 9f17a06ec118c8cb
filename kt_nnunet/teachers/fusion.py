"""Fusing several teachers' softmax outputs into one label map, one teacher at a time.

Every strategy is an accumulator: ``add(probabilities)`` once per teacher, then ``result()``. Probability
maps are folded into running sums as they arrive, so peak memory does not grow with the number of
teachers (only a uint8 label map per teacher is kept, for agreement and for STAPLE).

* ``mean``: mean of probabilities (the default; what ``nnUNetv2_ensemble`` computes).
* ``weighted``: weighted mean of probabilities, weights normalised to sum to 1.
* ``majority``: per-voxel vote of the teachers' argmax labels; ties go to the higher mean probability.
* ``staple``: multi-class STAPLE (Warfield, Zou, Wells, IEEE TMI 2004): EM estimation of each teacher's
  confusion matrix and the true-label posterior, initialised from the mean probabilities (as the prior
  and the first posterior), iterated to convergence.
* ``reliability``: a weighted mean whose weights are estimated on each image from the teachers alone
  (no labels): a teacher's reliability is the Dice of its label map against the leave-one-out consensus
  (the weighted mean of the *other* teachers' probabilities); weights are reliability², normalised, and
  the estimate is refined ``RELIABILITY_ROUNDS`` times from equal weights. A teacher that disagrees with
  the others on an image counts less on that image. It keeps every teacher's probabilities of the current
  image (float16), so its memory grows with the number of teachers, unlike the other methods.

``confidence`` is the fused probability (or vote share, or STAPLE posterior) of the chosen label; with
``min_confidence`` the voxels below it become nnU-Net's ``ignore`` label.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from kt_nnunet.teachers.methods import FUSION_METHODS  # noqa: F401  (re-exported)

RELIABILITY_ROUNDS = 3
RELIABILITY_POWER = 2.0


@dataclass
class FusedLabels:
    labels: torch.Tensor            # (*spatial) int64 label map, ignore label applied
    confidence: torch.Tensor        # (*spatial) float32 in [0, 1]
    probabilities: Optional[torch.Tensor]  # (C, *spatial) float32 fused soft labels (None for majority)
    teacher_agreement: float        # mean pairwise Dice (foreground classes) between teacher argmax maps
    ignored_fraction: float
    teacher_weights: Optional[list] = None   # the weights used per teacher (reliability fusion)


def dice_between(a: torch.Tensor, b: torch.Tensor, num_classes: int) -> float:
    """Mean Dice over foreground classes present in either map (1.0 when both are empty)."""
    scores = []
    for c in range(1, num_classes):
        in_a, in_b = a == c, b == c
        total = int(in_a.sum()) + int(in_b.sum())
        if total:
            scores.append(2.0 * int((in_a & in_b).sum()) / total)
    return sum(scores) / len(scores) if scores else 1.0


def mean_pairwise_dice(label_maps: Sequence[torch.Tensor], num_classes: int) -> float:
    pairs = [(i, j) for i in range(len(label_maps)) for j in range(i + 1, len(label_maps))]
    if not pairs:
        return 1.0
    return sum(dice_between(label_maps[i], label_maps[j], num_classes) for i, j in pairs) / len(pairs)


class Fusion:
    """Base accumulator; subclasses fold each teacher's probabilities in ``_fold``."""

    def __init__(self, num_teachers: int, weights: Optional[Sequence[float]] = None,
                 min_confidence: Optional[float] = None, ignore_label: Optional[int] = None):
        if weights is not None:
            if len(weights) != num_teachers or any(w < 0 for w in weights) or sum(weights) <= 0:
                raise ValueError(f"need {num_teachers} non-negative weights with a positive sum, got {list(weights)}")
            total = float(sum(weights))
            self.weights = [float(w) / total for w in weights]
        else:
            self.weights = [1.0 / num_teachers] * num_teachers
        if min_confidence is not None and ignore_label is None:
            raise ValueError("min_confidence needs the dataset's ignore label")
        # Equal weights: sum, then divide once at the end, exactly as nnUNetv2_ensemble averages (so mean
        # fusion reproduces its labels bit for bit); explicit weights: running weighted sum.
        self.equal_weights = weights is None
        self.num_teachers = num_teachers
        self.min_confidence = min_confidence
        self.ignore_label = ignore_label
        self.mean_probabilities: Optional[torch.Tensor] = None
        self.teacher_labels: list[torch.Tensor] = []

    def add(self, probabilities: torch.Tensor) -> None:
        """Fold in the next teacher's softmax output ``(C, *spatial)``."""
        index = len(self.teacher_labels)
        if index >= self.num_teachers:
            raise ValueError(f"more than the {self.num_teachers} teachers this fusion was set up for")
        probabilities = probabilities.float()
        if self.mean_probabilities is None:
            self.mean_probabilities = torch.zeros_like(probabilities)
        elif probabilities.shape != self.mean_probabilities.shape:
            raise ValueError(f"teacher {index} gave probabilities of shape {tuple(probabilities.shape)}, "
                             f"earlier teachers {tuple(self.mean_probabilities.shape)}")
        if self.equal_weights:
            self.mean_probabilities.add_(probabilities)  # a sum until result() divides it
        else:
            self.mean_probabilities.add_(probabilities, alpha=self.weights[index])
        labels = probabilities.argmax(0)
        self.teacher_labels.append(labels.to(torch.uint8))
        self._fold(probabilities, labels, index)

    def _fold(self, probabilities: torch.Tensor, labels: torch.Tensor, index: int) -> None:
        pass

    def _decide(self) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        probabilities = self.mean_probabilities
        labels = probabilities.argmax(0)  # first maximum on ties, like numpy's argmax in nnUNetv2_ensemble
        confidence = probabilities.gather(0, labels.unsqueeze(0)).squeeze(0)
        return labels, confidence, probabilities

    def result(self) -> FusedLabels:
        if len(self.teacher_labels) != self.num_teachers:
            raise ValueError(f"fusion received {len(self.teacher_labels)} of {self.num_teachers} teachers")
        if self.equal_weights and not getattr(self, "_divided", False):
            self.mean_probabilities.div_(self.num_teachers)
            self._divided = True
        labels, confidence, probabilities = self._decide()
        labels = labels.long()
        ignored = 0.0
        if self.min_confidence is not None:
            low = confidence < self.min_confidence
            labels[low] = self.ignore_label
            ignored = float(low.float().mean())
        agreement = mean_pairwise_dice(self.teacher_labels, self.mean_probabilities.shape[0])
        return FusedLabels(labels, confidence.float(), probabilities, agreement, ignored,
                           getattr(self, "used_weights", None))


class MeanFusion(Fusion):
    """Mean (or, with weights, weighted mean) of the teachers' probabilities."""


class MajorityVoteFusion(Fusion):
    def _fold(self, probabilities, labels, index):
        if index == 0:
            self.votes = torch.zeros(probabilities.shape, dtype=torch.float32)
        self.votes.scatter_add_(0, labels.unsqueeze(0), torch.ones_like(labels, dtype=torch.float32).unsqueeze(0))

    def _decide(self):
        # Ties broken by the mean probability: a vote is worth 1, probabilities add less than 1 in total.
        score = self.votes + self.mean_probabilities * 0.5
        labels = score.argmax(0)
        confidence = self.votes.gather(0, labels.unsqueeze(0)).squeeze(0) / self.num_teachers
        return labels, confidence, None


class StapleFusion(Fusion):
    """Multi-class STAPLE on the teachers' argmax maps (Warfield et al. 2004)."""

    def __init__(self, *args, max_iterations: int = 50, tolerance: float = 1e-5, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_iterations = max_iterations
        self.tolerance = tolerance

    def _decide(self):
        with _single_thread():
            return self._expectation_maximisation()

    def _expectation_maximisation(self):
        num_classes = self.mean_probabilities.shape[0]
        flat_labels = [t.reshape(-1).long() for t in self.teacher_labels]
        posterior = self.mean_probabilities.reshape(num_classes, -1).clone()   # W: (C, N)
        log_prior = posterior.mean(1).clamp_min(1e-8).log().unsqueeze(1)        # class frequencies
        eps = 1e-8
        for _ in range(self.max_iterations):
            log_likelihood = log_prior.expand_as(posterior).clone()
            for labels in flat_labels:
                # M-step: confusion theta[t, s] = P(teacher says s | truth t) = sum of W(t, v) over its s-voxels
                theta = torch.zeros(num_classes, num_classes).index_add_(1, labels, posterior) + eps
                theta = theta / theta.sum(1, keepdim=True)
                log_likelihood += theta.log().index_select(1, labels)                  # (C_t, N)
            # E-step: posterior over the true label
            new_posterior = torch.softmax(log_likelihood, dim=0)
            change = (new_posterior - posterior).abs().max()
            posterior = new_posterior
            if change < self.tolerance:
                break
        posterior = posterior.reshape(self.mean_probabilities.shape)
        confidence, labels = posterior.max(0)
        return labels, confidence, posterior


def reliability_weights(probabilities: Sequence[torch.Tensor], labels: Sequence[torch.Tensor],
                        rounds: int = RELIABILITY_ROUNDS, power: float = RELIABILITY_POWER) -> list[float]:
    """Per-teacher weights from agreement with the leave-one-out consensus (see the module docstring)."""
    count = len(probabilities)
    if count < 3:  # with two teachers each one's consensus is the other: agreement is symmetric
        return [1.0 / count] * count
    num_classes = probabilities[0].shape[0]
    weights = [1.0 / count] * count
    for _ in range(rounds):
        total = sum(p.float() * w for p, w in zip(probabilities, weights))
        reliabilities = []
        for index, (own, own_labels) in enumerate(zip(probabilities, labels)):
            others = total - own.float() * weights[index]
            reliabilities.append(max(dice_between(own_labels.long(), others.argmax(0), num_classes), 1e-3))
        scores = [r ** power for r in reliabilities]
        weights = [s / sum(scores) for s in scores]
    return weights


class ReliabilityFusion(Fusion):
    """Weighted mean with weights from each teacher's agreement with the others on this image."""

    def _fold(self, probabilities, labels, index):
        if index == 0:
            self.teacher_probabilities = []
        self.teacher_probabilities.append(probabilities.half())

    def _decide(self):
        self.used_weights = reliability_weights(self.teacher_probabilities, self.teacher_labels)
        probabilities = sum(p.float() * w for p, w in zip(self.teacher_probabilities, self.used_weights))
        self.teacher_probabilities = []
        labels = probabilities.argmax(0)
        confidence = probabilities.gather(0, labels.unsqueeze(0)).squeeze(0)
        return labels, confidence, probabilities


@contextlib.contextmanager
def _single_thread():
    """STAPLE's EM is hundreds of small elementwise ops: on a busy CPU every multi-threaded op waits for a
    descheduled worker (measured on 2 shared cores: 6 s per 64x64 image with 2 threads, 0.09 s with 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def make_fusion(method: str, num_teachers: int, weights: Optional[Sequence[float]] = None,
                min_confidence: Optional[float] = None, ignore_label: Optional[int] = None) -> Fusion:
    """The accumulator for ``method`` (one of ``FUSION_METHODS``)."""
    if method not in FUSION_METHODS:
        raise ValueError(f"unknown fusion {method!r}; choose one of {', '.join(FUSION_METHODS)}")
    if method == "weighted" and weights is None:
        raise ValueError("fusion 'weighted' needs --weights, one per teacher")
    if method != "weighted" and weights is not None:
        raise ValueError(f"--weights only applies to fusion 'weighted', not {method!r}")
    cls = {"mean": MeanFusion, "weighted": MeanFusion, "majority": MajorityVoteFusion, "staple": StapleFusion,
           "reliability": ReliabilityFusion}[method]
    return cls(num_teachers, weights=weights, min_confidence=min_confidence, ignore_label=ignore_label)


# --- batched forms (online training) ---------------------------------------------------------------

def fuse_probabilities(probabilities: Sequence[torch.Tensor], method: str = "mean",
                       weights: Optional[Sequence[float]] = None, min_confidence: Optional[float] = None,
                       ignore_label: Optional[int] = None) -> torch.Tensor:
    """The batched form of the accumulators above, for online training: per-teacher softmax outputs
    ``(B, C, *spatial)`` fused into labels ``(B, 1, *spatial)`` (int64), as :func:`make_fusion` would fuse
    each case (mean and weighted run batched on the device, the others per case through the accumulators)."""
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


def fuse_probabilities_soft(probabilities: Sequence[torch.Tensor], weights: Optional[Sequence[float]] = None):
    """Soft targets: (weighted) mean of the teachers' tempered probabilities (equal weights unless 'weighted')."""
    weights = weights if weights is not None else [1.0 / len(probabilities)] * len(probabilities)
    return sum(p * float(w) for p, w in zip(probabilities, weights))
