"""kt-nnunet: network-agnostic knowledge transfer for medical image segmentation on nnU-Net v2.

The public API (docs/api.md)::

    import kt_nnunet as kt
    teacher = kt.train(source, "unet", epochs=10, seed=0)            # -> TrainedModelResult
    labels = kt.label(teacher, transferal, "Dataset603_Labels")        # -> LabellingResult
    student = kt.transfer(teacher, labels, "light_unet", seed=0)       # -> TrainedModelResult
    tuned = kt.finetune(student, target, epochs=5)                     # -> TrainedModelResult
    scores = kt.evaluate(tuned, target)                                # -> ModelEvaluation (dice_mean, ...)
    results_json = kt.run_experiment("examples/demo.yaml")

For plugin authors: ``hookimpl``, ``ArchitectureSpec``, ``TeacherKind``, ``Teacher``; for everyone:
``KtNnunetError`` (every user error), ``get_architecture``, ``list_architectures``, ``__version__``.

Importing this package is cheap: torch, nnU-Net and plugins load only when an API that needs them is used.
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kt-nnunet")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

from kt_nnunet.errors import KtNnunetError  # noqa: E402  (no dependencies)
from kt_nnunet.lazy_exports import lazy_exports  # noqa: E402  (no dependencies)
from kt_nnunet.registry import get_architecture, list_architectures  # noqa: E402  (lazy inside)

# Loaded on first access (module __getattr__), because they need torch and nnU-Net.
_LAZY = {"hookimpl": "kt_nnunet.plugins", "ArchitectureSpec": "kt_nnunet.architectures.spec",
         "TeacherKind": "kt_nnunet.teachers.kinds", "Teacher": "kt_nnunet.teachers.base",
         "train": "kt_nnunet.api", "label": "kt_nnunet.api", "transfer": "kt_nnunet.api",
         "finetune": "kt_nnunet.api", "evaluate": "kt_nnunet.api", "run_experiment": "kt_nnunet.experiment.runner",
         "TrainedModelResult": "kt_nnunet.api", "ApiArgumentError": "kt_nnunet.api",
         "LabellingResult": "kt_nnunet.labelling.api", "ModelEvaluation": "kt_nnunet.evaluation.record"}

__all__ = ["__version__", "ArchitectureSpec", "KtNnunetError", "Teacher", "TeacherKind", "get_architecture", "hookimpl",
           "list_architectures", "train", "label", "transfer", "finetune", "evaluate", "run_experiment",
           "TrainedModelResult", "ApiArgumentError", "LabellingResult", "ModelEvaluation"]


__getattr__ = lazy_exports(__name__, _LAZY)


def __dir__():
    return sorted(set(globals()) | set(__all__))
