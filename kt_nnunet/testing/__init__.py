"""The conformance kit for plugin authors' CI: nnU-Net's network contract checked on any registered architecture,
and what labelling needs checked on any registered teacher kind.

As a pytest class (``tests/test_conformance.py`` of a plugin package)::

    from kt_nnunet.testing import ArchitectureConformance

    class TestMyNet(ArchitectureConformance):
        architecture = "my_net"

or as plain functions: ``check_architecture("my_net")`` runs every in-process check (build from plans in 2D
and 3D, output shapes with deep supervision on and off, backward, state dicts, nnU-Net's own builder, the plan-time
contract check), ``train_step("my_net", workdir)`` the tiny real ``kt-nnunet plan`` + ``nnUNetv2_train`` +
``nnUNetv2_predict`` run.

A teacher kind is checked the same way, against a sample teacher of that kind::

    from kt_nnunet.testing import TeacherKindConformance

    class TestMyToolKind(TeacherKindConformance):
        kind = "my_tool"
        sample = "data/sample.mytool"

or ``check_teacher_kind("my_tool", sample, workdir)``. Importing this package loads neither torch nor pytest; each
name loads its module.
"""
from __future__ import annotations

from kt_nnunet.lazy_exports import lazy_exports

_EXPORTS = {
    "ArchitectureConformance": "kt_nnunet.testing.conformance",
    "TeacherKindConformance": "kt_nnunet.testing.conformance",
    "check_teacher_kind": "kt_nnunet.testing.kind_checks",
    "TeacherKindConformanceError": "kt_nnunet.testing.kind_checks",
    "GEOMETRIES": "kt_nnunet.testing.checks",
    "check_architecture": "kt_nnunet.testing.checks",
    "check_plan_contract": "kt_nnunet.testing.checks",
    "check_forward_backward": "kt_nnunet.testing.checks",
    "check_state_dict": "kt_nnunet.testing.checks",
    "check_nnunet_builds_the_same": "kt_nnunet.testing.checks",
    "check_default_size": "kt_nnunet.testing.checks",
    "train_step": "kt_nnunet.testing.training",
    "TrainStepError": "kt_nnunet.testing.training",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports('kt_nnunet.testing', _EXPORTS)
