"""Teacher labelling: teachers of any architecture annotate a transferal image set into a new nnU-Net dataset.

Public API (imports are lazy, so ``import kt_nnunet.labelling`` stays cheap):

- ``label_dataset(teachers, images, out, fusion=FusionSettings(...), ...) -> LabellingResult``: the whole step (the CLI's
  ``kt-nnunet label`` calls only this);
- ``Labeller``: opened, checked teachers; ``label_image(image, properties, case)`` fuses them on one image;
- ``make_fusion`` / ``FUSION_METHODS``: the streaming fusion accumulators;
- ``TeacherSpec``: a teacher's kind and path (model folder, exported network, predictions folder, ...), folds
  and checkpoint.

Modules: ``images`` (the transferal set), ``output`` (resumable atomic writer), ``provenance`` (each case's
record, provenance.json and dataset.json), ``distributed`` (a torchrun launch: one part per rank), ``api``
(the ``Labeller`` and the sharded run). Teachers themselves (spec, loading, checks, label maps, fusion) are
``kt_nnunet.teachers``.
"""
from __future__ import annotations

from kt_nnunet.lazy_exports import lazy_exports

_EXPORTS = {
    "label_dataset": "kt_nnunet.labelling.api", "Labeller": "kt_nnunet.labelling.api",
    "LabellingResult": "kt_nnunet.labelling.api",
    "make_fusion": "kt_nnunet.teachers.fusion", "FUSION_METHODS": "kt_nnunet.teachers.methods",
    "FusedLabels": "kt_nnunet.teachers.fusion",
    "TeacherSpec": "kt_nnunet.teachers.spec",
    "LabellingError": "kt_nnunet.labelling.errors", "TeacherMismatchError": "kt_nnunet.teachers.errors",
    "ChannelMismatchError": "kt_nnunet.labelling.errors", "LabelMapError": "kt_nnunet.teachers.errors",
    "OutputStateError": "kt_nnunet.labelling.errors",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
