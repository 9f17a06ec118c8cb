"""Soft-target (knowledge distillation) loss for online transfer.

``loss = (1 - alpha) * DiceCE(student, teacher labels) + alpha * T^2 * KL(p_teacher^T || p_student^T)``

with ``p^T = softmax(logits / T)`` (Hinton et al. 2015: the ``T^2`` factor keeps the gradient scale of the
soft term independent of ``T``). The KL is summed over classes and averaged over the voxels that are not
marked with the ignore label. The module wraps nnU-Net's own Dice+CE loss and is itself wrapped by
nnU-Net's ``DeepSupervisionWrapper``, so every deep-supervision scale gets both terms.

Targets are packed so that nnU-Net's unchanged ``train_step`` can pass them: a ``(B, 1 + C, ...)`` float
tensor holding the hard labels in channel 0 and the teacher's tempered probabilities after it. A plain
``(B, 1, ...)`` label target (as in validation) gets the Dice+CE term alone.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn


def soft_target_kl(student_logits: torch.Tensor, teacher_probabilities: torch.Tensor, temperature: float,
                   mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``T^2 * mean_voxels sum_c p_t (log p_t - log softmax(s / T))``; ``mask`` (B, 1, ...) selects voxels."""
    log_student = torch.log_softmax(student_logits.float() / temperature, 1)
    p = teacher_probabilities.float()
    per_voxel = (torch.xlogy(p, p) - p * log_student).sum(1, keepdim=True)
    if mask is not None:
        per_voxel = per_voxel[mask]
    if per_voxel.numel() == 0:
        return student_logits.sum() * 0.0
    return per_voxel.mean() * temperature ** 2


def pack_targets(labels: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
    return torch.cat([labels.to(probabilities.dtype), probabilities], 1)


class SoftTargetLoss(nn.Module):
    def __init__(self, hard_loss: nn.Module, temperature: float, alpha: float, ignore_label: Optional[int] = None):
        super().__init__()
        self.hard_loss = hard_loss
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.ignore_label = ignore_label

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.shape[1] == 1:
            return self.hard_loss(output, target)
        labels, probabilities = target[:, :1], target[:, 1:]
        mask = labels != self.ignore_label if self.ignore_label is not None else None
        hard = self.hard_loss(output, labels) if self.alpha < 1 else 0.0
        soft = soft_target_kl(output, probabilities, self.temperature, mask) if self.alpha > 0 else 0.0
        return (1 - self.alpha) * hard + self.alpha * soft
