"""Loading teachers: plans and weights read safely (``weights_only=True``, nnU-Net's allow-list)."""
from __future__ import annotations

from typing import Sequence

from kt_nnunet.nnunet.model_folder import TrainedModel, load_trained_model
from kt_nnunet.teachers.errors import TeacherMismatchError
from kt_nnunet.teachers.spec import TeacherSpec


def load_teacher(spec: TeacherSpec) -> TrainedModel:
    """One teacher; with recorded ``checkpoint_sha256``, a checkpoint changed since then is refused."""
    model = load_trained_model(spec.folder, spec.folds, spec.checkpoint)
    if spec.checkpoint_sha256:
        changed = [f for f, digest in spec.checkpoint_sha256.items() if model.checkpoint_sha256.get(f) != digest]
        if changed:
            raise TeacherMismatchError(f"teacher {spec.folder}: checkpoint of fold(s) {changed} changed since "
                                       "the plans were written; re-run `kt-nnunet transfer ... --force` to use it")
    return model


def load_teachers(specs: Sequence[TeacherSpec]) -> list[TrainedModel]:
    if not specs:
        raise TeacherMismatchError("no teacher given; pass --teacher MODEL_FOLDER at least once")
    return [load_teacher(spec) for spec in specs]
