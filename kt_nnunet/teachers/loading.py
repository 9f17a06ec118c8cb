"""Loading model-folder teachers safely (``weights_only=True``, nnU-Net's allow-list), changed checkpoints refused.
A teacher of any kind is opened through its kind (``kinds.open_teacher``)."""
from __future__ import annotations

from kt_nnunet.nnunet.model_folder import TrainedModel, load_trained_model
from kt_nnunet.teachers.errors import TeacherKindError, TeacherMismatchError
from kt_nnunet.teachers.spec import MODEL_FOLDER_KIND, TeacherSpec


def load_teacher(spec: TeacherSpec) -> TrainedModel:
    """A model-folder teacher's model; with recorded ``checkpoint_sha256``, a checkpoint changed since then is
    refused. Stages that run the teacher's network inside training (online transfer) need this kind. ``spec`` is
    resolved (``kinds.resolve_kind``): its kind is known and its path absolute."""
    if spec.kind is None:  # a caller's mistake, not the user's: the kind decides what "is not a model folder" means
        raise ValueError(f"teacher {spec}: resolve its kind first (kt_nnunet.teachers.kinds.resolve_kind)")
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
