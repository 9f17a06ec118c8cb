"""Frozen teacher networks labelling training batches (online transfer), loaded once per training."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from kt_nnunet.nnunet.model_folder import TrainedModel
from kt_nnunet.teachers.errors import TeacherSettingsError
from kt_nnunet.teachers.fusion import fuse_probabilities, fuse_probabilities_soft


@dataclass
class TeacherOutput:
    labels: torch.Tensor                     # (B, 1, *spatial) fused hard labels (ignore label applied)
    soft: Optional[torch.Tensor] = None      # (B, C, *spatial) fused softmax(logits / T)


class TeacherEnsemble:
    """Frozen teacher networks (every fold of every teacher), loaded once; ``label(batch)`` per step.

    ``settings``: how to fuse (``fusion``, ``weights``, ``min_confidence``, ``temperature``,
    ``normalized_weights()``), as the online trainer's ``OnlineSettings`` give them.
    """

    def __init__(self, models: Sequence[TrainedModel], settings, ignore_label: Optional[int],
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
