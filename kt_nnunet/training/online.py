"""Online transfer: frozen teachers label every augmented batch inside the training step.

* ``nnUNetTrainerKTOnline``: the batch's targets are replaced by the teachers' fused hard labels, at every
  deep-supervision scale (downsampled exactly as nnU-Net downsamples ground truth), in ``train_step`` and in
  ``validation_step`` (so the pseudo Dice nnU-Net logs is the agreement with the teachers).
* ``nnUNetTrainerKTOnlineSoft``: additionally distils the teachers' tempered probabilities:
  ``(1 - alpha) * DiceCE + alpha * T^2 * KL`` (see ``losses.py``), with the soft targets area-downsampled
  to every deep-supervision scale.

Teachers, fusion, ``temperature`` and ``alpha`` come from the plans configuration key ``kt_online``
(written by ``kt-nnunet transfer --online``), so stock ``nnUNetv2_train -tr nnUNetTrainerKTOnline`` works.
Teachers are loaded once in ``initialize`` (``weights_only=True``), frozen, and checked against the
student's preprocessing, labels and channels first.

What the final validation (``perform_actual_validation``) measures is unchanged: agreement with the
dataset's ``labelsTr``, whatever they are (teacher labels from ``kt-nnunet label``, or ground truth).
"""
from __future__ import annotations

import torch
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper

from kt_nnunet.training.base import nnUNetTrainerKTBase
from kt_nnunet.training.losses import SoftTargetLoss, pack_targets
from kt_nnunet.teachers.compatibility import check_online_teachers
from kt_nnunet.teachers.ensemble import TeacherEnsemble
from kt_nnunet.teachers.loading import load_teacher
from kt_nnunet.training.online_settings import OnlineSettings
from kt_nnunet.training.targets import downsample_labels, downsample_probabilities


class nnUNetTrainerKTOnline(nnUNetTrainerKTBase):
    """Student trained on teacher labels computed on each augmented batch (hard targets)."""

    soft_targets = False

    teachers = None  # -> initialize

    def read_plans_settings(self) -> None:
        super().read_plans_settings()
        self.kt_settings = OnlineSettings.from_configuration(self.configuration_manager.configuration,
                                                             self.configuration_name)

    def initialize(self):
        super().initialize()
        models = [load_teacher(spec) for spec in self.kt_settings.teachers]
        check_online_teachers(self.plans_manager.plans, self.configuration_manager.configuration, self.dataset_json, models)
        self.teachers = TeacherEnsemble(models, self.kt_settings, self.label_manager.ignore_label, self.device)
        self.print_to_log_file(f"kt-nnunet: {len(models)} online teacher(s), fusion {self.kt_settings.fusion}"
                               + (f", soft targets T={self.kt_settings.temperature} alpha={self.kt_settings.alpha}"
                                  if self.soft_targets else ", hard targets"))

    def teacher_targets(self, data: torch.Tensor, target, soft: bool):
        """Targets shaped like nnU-Net's (a list per deep-supervision scale, or one tensor), from the teachers."""
        scales = target if isinstance(target, list) else [target]
        shapes = [t.shape[2:] for t in scales]
        output = self.teachers.label(data, soft=soft)
        labels = downsample_labels(output.labels, shapes, scales[0].dtype)
        if soft:
            labels = [pack_targets(lab, p) for lab, p in zip(labels, downsample_probabilities(output.soft, shapes))]
        return labels if isinstance(target, list) else labels[0]

    def _with_teacher_targets(self, batch: dict, soft: bool) -> dict:
        data = batch["data"].to(self.device, non_blocking=True)
        return dict(batch, data=data, target=self.teacher_targets(data, batch["target"], soft))

    def train_step(self, batch: dict) -> dict:
        return super().train_step(self._with_teacher_targets(batch, self.soft_targets))

    def validation_step(self, batch: dict) -> dict:
        return super().validation_step(self._with_teacher_targets(batch, soft=False))

    def kt_provenance(self) -> dict:
        record = super().kt_provenance()
        record["mode"] = "online-soft" if self.soft_targets else "online"
        record["online"] = self.kt_settings.to_json()
        if self.teachers is not None:
            record["teachers"] = [model.provenance() for model in self.teachers.models]
        return record


class nnUNetTrainerKTOnlineSoft(nnUNetTrainerKTOnline):
    """Online transfer with soft targets: ``(1 - alpha) * DiceCE + alpha * T^2 * KL`` at every scale."""

    soft_targets = True

    def _build_loss(self):
        loss = super()._build_loss()
        inner = loss.loss if isinstance(loss, DeepSupervisionWrapper) else loss
        soft = SoftTargetLoss(inner, self.kt_settings.temperature, self.kt_settings.alpha,
                              self.label_manager.ignore_label)
        if isinstance(loss, DeepSupervisionWrapper):
            loss.loss = soft
            return loss
        return soft
