"""Loading teachers: model folders read safely (``weights_only=True``, nnU-Net's allow-list), and a teacher of
any kind opened through its kind."""
from __future__ import annotations

from typing import Sequence

from kt_nnunet.nnunet.model_folder import TrainedModel, load_trained_model
from kt_nnunet.teachers.errors import TeacherKindError, TeacherMismatchError
from kt_nnunet.teachers.spec import MODEL_FOLDER_KIND, TeacherSpec


def load_teacher(spec: TeacherSpec) -> TrainedModel:
    """A model-folder teacher's model; with recorded ``checkpoint_sha256``, a checkpoint changed since then is
    refused. Stages that run the teacher's network inside training (online transfer) need this kind."""
    if spec.kind != MODEL_FOLDER_KIND:
        raise TeacherKindError(f"teacher {spec} is a {spec.kind} teacher, but online transfer runs the teachers' "
                               "networks on the student's training batches, which needs nnU-Net model folders; "
                               "transfer offline instead (without --online: the teachers label the images first)")
    model = load_trained_model(spec.path, spec.folds, spec.checkpoint)
    if spec.checkpoint_sha256:
        changed = [f for f, digest in spec.checkpoint_sha256.items() if model.checkpoint_sha256.get(f) != digest]
        if changed:
            raise TeacherMismatchError(f"teacher {spec.path}: checkpoint of fold(s) {changed} changed since "
                                       "the plans were written; re-run `kt-nnunet transfer ... --force` to use it")
    return model


def open_teacher(spec: TeacherSpec, options):
    """A :class:`~kt_nnunet.teachers.base.Teacher` of ``spec.kind`` (built in or a plugin's)."""
    from kt_nnunet.teachers.base import Teacher
    from kt_nnunet.teachers.kinds import get_kind

    kind = get_kind(spec.kind)
    teacher = kind.open(spec, options)
    if not isinstance(teacher, Teacher):
        raise TeacherKindError(f"teacher kind {kind.name!r} from plugin {kind.plugin!r} returned "
                               f"{type(teacher).__name__}, not a kt_nnunet.teachers.base.Teacher")
    return teacher


def open_teachers(specs: Sequence[TeacherSpec], options) -> list:
    if not specs:
        raise TeacherMismatchError("no teacher given; pass --teacher MODEL_FOLDER (or KIND:PATH) at least once")
    return [open_teacher(spec, options) for spec in specs]
