"""Teachers that run a network: a model folder's fold networks, or an exported ONNX / TorchScript network.

Both predict through the same nnU-Net code (:class:`~kt_nnunet.nnunet.inference.TeacherInference`: the
plans' preprocessing, the Gaussian sliding window with mirroring, fold logits averaged, the export back
to the image grid), so an exported network labels like the model folder it came from.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from kt_nnunet.nnunet.inference import TeacherInference
from kt_nnunet.nnunet.model_folder import TrainedModel
from kt_nnunet.nnunet.raw_dataset import labels_without_ignore
from kt_nnunet.teachers.base import Teacher, TeacherOptions
from kt_nnunet.teachers.errors import TeacherKindError
from kt_nnunet.teachers.loading import load_teacher
from kt_nnunet.teachers.spec import TeacherSpec


class _NetworkTeacher(Teacher):
    def __init__(self, spec: TeacherSpec, options: TeacherOptions, model: TrainedModel,
                 networks: Optional[list] = None):
        super().__init__(spec)
        self.model = model
        self.inference = TeacherInference(model, options.device, options.tta, options.tile_step_size, networks)

    @property
    def labels(self) -> dict:
        return labels_without_ignore(self.model.labels)

    @property
    def channel_names(self) -> dict:
        return self.model.dataset_json["channel_names"]

    @property
    def num_input_channels(self) -> int:
        return self.model.num_input_channels

    @property
    def reader_name(self) -> str:
        return self.model.plans["image_reader_writer"]

    @property
    def reader_writer(self):
        return self.inference.reader_writer

    @property
    def forward_seconds(self) -> float:
        return self.inference.forward_seconds

    def probabilities(self, case: str, image: np.ndarray, properties: dict) -> np.ndarray:
        return self.inference.probabilities(image, properties)

    def provenance(self) -> dict:
        cm = self.model.configuration_manager
        return {"kind": self.kind, **self.model.provenance(), **self.fingerprint(),
                "labels": self.model.dataset_json["labels"], "channel_names": self.channel_names,
                "normalization_schemes": list(cm.normalization_schemes), "spacing": list(cm.spacing),
                "patch_size": list(cm.patch_size), "image_reader_writer": self.reader_name}


class ModelFolderTeacher(_NetworkTeacher):
    """A trained nnU-Net model folder (``weights_only=True``, nnU-Net's allow-list)."""

    kind = "nnunet"

    def __init__(self, spec: TeacherSpec, options: TeacherOptions):
        super().__init__(spec, options, load_teacher(spec))

    def fingerprint(self) -> dict:
        m = self.model
        return {"kind": self.kind, "model_folder": str(m.folder.absolute()), "configuration": m.configuration,
                "folds": list(m.folds), "checkpoint": m.checkpoint_name, "checkpoint_sha256": m.checkpoint_sha256}


class ExportedNetworkTeacher(_NetworkTeacher):
    """An ONNX or TorchScript network file with its sidecar (``kt-nnunet export``'s, or hand-written)."""

    def __init__(self, spec: TeacherSpec, options: TeacherOptions):
        from kt_nnunet.exported.model import load_exported_model

        self.kind = spec.kind
        exported = load_exported_model(spec.sidecar or spec.path, spec.folds, torch.get_num_threads(),
                                       options.device)
        if exported.backend != spec.kind:
            raise TeacherKindError(f"teacher {spec}: {exported.sidecar} describes a {exported.backend} network; "
                                   f"give it as {exported.backend}:{spec.path}")
        self.exported = exported
        super().__init__(spec, options, exported.model, exported.networks)

    def fingerprint(self) -> dict:
        return {"kind": self.kind, "sidecar": self.file_record(self.exported.sidecar),
                "networks": {str(fold): self.file_record(Path(file)) for fold, file in self.exported.files.items()},
                "configuration": self.model.configuration}

    def provenance(self) -> dict:
        import json

        from kt_nnunet.exported.sidecar import NETWORK_SIDECAR_KIND

        record = super().provenance()
        record.pop("checkpoint", None), record.pop("checkpoint_sha256", None)
        written = json.loads(self.exported.sidecar.read_text())
        if written.get("kind") == NETWORK_SIDECAR_KIND:  # hand-written and short: kept whole, as the network's record
            record["sidecar"]["content"] = written
        return record
