"""Offline soft targets: a student learns the teachers' fused probabilities saved by ``kt-nnunet label``.

Online soft transfer needs the teachers in the training loop, which only works for teachers that share the
student's preprocessing. Offline, each teacher has already predicted with its own plans, and
``label --save-probabilities`` kept the fused probabilities. This trainer trains on them with the same
loss as online soft transfer (``losses.SoftTargetLoss``):
``(1 - alpha) * DiceCE(student, fused labels) + alpha * T^2 * KL(p_teacher^T || p_student^T)``, at every
deep-supervision scale, where ``p_teacher^T`` is the saved probability tempered (``p^(1/T)``, normalised;
for one teacher exactly ``softmax(logits / T)``).

How the probabilities reach the loss: ``nnunet.soft_targets`` puts them on the preprocessed grid and serves
them as extra image channels, so nnU-Net's loader crops them with the image and its spatial and mirroring
augmentations move them with it; the intensity augmentations are restricted to the real image channels
(``nnunet.soft_targets.restrict_to_image_channels``). ``train_step`` splits the channels again: the network sees the image, the loss
the probabilities. The network, its checkpoints and prediction are nnU-Net's, unchanged.

Settings come from the plans key ``kt_soft`` (``{"probabilities": DIR, "temperature": T, "alpha": A}``),
written by ``kt-nnunet transfer --soft`` (offline).
"""
from __future__ import annotations

import torch
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper

from kt_nnunet.nnunet.soft_targets import SoftTargetDataset, restrict_to_image_channels
from kt_nnunet.training.losses import SoftTargetLoss, pack_targets
from kt_nnunet.training.offline import nnUNetTrainerKTOffline
from kt_nnunet.training.targets import downsample_probabilities

SOFT_KEY = "kt_soft"
def temper(probabilities: torch.Tensor, temperature: float) -> torch.Tensor:
    """``p^(1/T)`` normalised over classes: ``softmax(log p / T)``.

    Voxels padded outside the image carry all-zero probabilities; they stay zero (no soft target there)
    instead of becoming uniform.
    """
    tempered = torch.softmax(torch.log(probabilities.clamp_min(1e-8)) / temperature, 1)
    return tempered * (probabilities.sum(1, keepdim=True) > 0.5)


class nnUNetTrainerKTOfflineSoft(nnUNetTrainerKTOffline):
    """Offline student trained on the fused labels and the teachers' saved probabilities."""

    def read_plans_settings(self) -> None:
        super().read_plans_settings()
        settings = self.configuration_manager.configuration.get(SOFT_KEY) or {}
        if not settings:
            raise ValueError(f"plans configuration {self.configuration_name!r} has no {SOFT_KEY!r} key; create the "
                             "plans with `kt-nnunet transfer --soft` on a dataset labelled with --save-probabilities")
        self.temperature = float(settings.get("temperature", 2.0))
        self.alpha = float(settings.get("alpha", 0.5))

    def initialize(self):
        super().initialize()
        self.dataset_class = SoftTargetDataset

    def get_training_transforms(self, *args, **kwargs):
        return restrict_to_image_channels(nnUNetTrainerKTOffline.get_training_transforms(*args, **kwargs),
                                          self.num_input_channels)

    def _build_loss(self):
        loss = super()._build_loss()
        inner = loss.loss if isinstance(loss, DeepSupervisionWrapper) else loss
        soft = SoftTargetLoss(inner, self.temperature, self.alpha, self.label_manager.ignore_label)
        if isinstance(loss, DeepSupervisionWrapper):
            loss.loss = soft
            return loss
        return soft

    def _split(self, batch: dict, soft: bool) -> dict:
        data = batch["data"]
        image = data[:, :self.num_input_channels]
        if not soft:
            return dict(batch, data=image)
        target = batch["target"]
        scales = target if isinstance(target, list) else [target]
        probabilities = temper(data[:, self.num_input_channels:].float(), self.temperature)
        packed = [pack_targets(labels, p) for labels, p in
                  zip(scales, downsample_probabilities(probabilities, [t.shape[2:] for t in scales]))]
        return dict(batch, data=image, target=packed if isinstance(target, list) else packed[0])

    def train_step(self, batch: dict) -> dict:
        return super().train_step(self._split(batch, soft=True))

    def validation_step(self, batch: dict) -> dict:
        return super().validation_step(self._split(batch, soft=False))

    def perform_actual_validation(self, save_probabilities: bool = False):
        # nnU-Net predicts the full validation cases: the image channels only
        soft_dataset, self.dataset_class = self.dataset_class, infer_dataset_class(self.preprocessed_dataset_folder)
        try:
            return super().perform_actual_validation(save_probabilities)
        finally:
            self.dataset_class = soft_dataset

    def kt_provenance(self) -> dict:
        record = super().kt_provenance()
        record["mode"] = "offline-soft"
        record["soft"] = self.configuration_manager.configuration.get(SOFT_KEY)
        return record
