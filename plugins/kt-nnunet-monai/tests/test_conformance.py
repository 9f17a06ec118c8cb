"""Every MONAI architecture meets nnU-Net's network contract: kt-nnunet's conformance kit, as a plugin package uses it.

The kit's plans (``kt_nnunet.testing.GEOMETRIES``) include patches of 16 and 8 voxels along an axis. UNETR,
SwinUNETR, BasicUNetPlusPlus and FlexibleUNet have a fixed topology that cannot take some of them (their divisor is
16 or 32), so those classes replace each such plan (same key) with a plan of the same dimensionality, as small as
their constraint allows, and ``test_kit_plans_are_replaced_exactly_where_refused`` checks that exactly the plans
they cannot take are refused, as ``kt-nnunet plan`` refuses them, with a message naming the constraint.

Only DynUNet runs the kit's real ``kt-nnunet plan`` + ``nnUNetv2_train`` + ``nnUNetv2_predict`` step (30-70 s on 2
cores, with the machine's load); the others share its code path there (plans -> dotted path -> nnU-Net's builder), which the in-process
``test_plans_kwargs_build_the_same_network_as_nnunet`` checks for each of them.
"""
from __future__ import annotations

from typing import ClassVar

import pytest

from kt_nnunet.architectures.spec import PlanGeometry
from kt_nnunet.testing import (GEOMETRIES, ArchitectureConformance, check_forward_backward, check_plan_contract,
                               check_state_dict)


class MonaiConformance(ArchitectureConformance):
    """The kit, with ``plans`` replacing kit plans the architecture cannot take (same keys, same meaning)."""

    plans: ClassVar[dict[str, PlanGeometry]] = {}
    train = False

    @classmethod
    def geometry_plans(cls) -> dict[str, PlanGeometry]:
        return {**GEOMETRIES, **cls.plans}

    def test_contract_at_plan_geometry(self, architecture_name, geometry):
        check_plan_contract(architecture_name, self.geometry_plans()[geometry], tiny=True)

    def test_forward_backward_and_deep_supervision(self, architecture_name, geometry):
        check_forward_backward(architecture_name, self.geometry_plans()[geometry])

    def test_state_dict_is_independent_of_deep_supervision(self, architecture_name, geometry):
        check_state_dict(architecture_name, self.geometry_plans()[geometry])

    def test_kit_plans_are_replaced_exactly_where_refused(self, architecture_name):
        """Each replaced kit plan is refused, as ``kt-nnunet plan`` refuses it, with a message naming the
        constraint; every other kit plan is accepted (and then runs the kit's checks above)."""
        from kt_nnunet.registry import check_contract, get_architecture

        spec = get_architecture(architecture_name)
        for key, geometry in GEOMETRIES.items():
            if geometry.dim not in spec.dims:
                continue
            kwargs = spec.arch_kwargs(geometry, tiny=True)
            try:
                spec.check_patch_size(geometry, kwargs)
                check_contract(spec, geometry, 2, 3, arch_kwargs=kwargs)
            except Exception as exc:  # the planner reports either as one line
                assert key in self.plans, f"kit plan {key} refused: {exc}"
                assert "divisible" in str(exc) or "single voxel" in str(exc), exc
            else:
                assert key not in self.plans, f"kit plan {key} {list(geometry.patch_size)} is accepted, so `plans` " \
                                              "must not replace it"


class TestDynUNet(MonaiConformance):
    architecture = "monai_dynunet"
    train = True  # the plugin's one real nnUNetv2_train + nnUNetv2_predict round trip


class TestAttentionUnet(MonaiConformance):
    architecture = "monai_attentionunet"


class TestUNETR(MonaiConformance):
    architecture = "monai_unetr"
    plans = {"3d_anisotropic": PlanGeometry.create((16, 32, 32), [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]])}


class TestSwinUNETR(MonaiConformance):
    architecture = "monai_swinunetr"
    plans = {
        "2d": PlanGeometry.default((64, 64), 5),
        "3d": PlanGeometry.default((32, 32, 64), 4),
        "3d_anisotropic": PlanGeometry.create((32, 64, 32), [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]]),
    }


class TestBasicUNetPlusPlus(MonaiConformance):
    architecture = "monai_basicunetplusplus"
    plans = {
        "3d": PlanGeometry.default((32, 32, 32), 4),
        "3d_anisotropic": PlanGeometry.create((16, 32, 32), [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]]),
    }


class TestFlexibleUNet(MonaiConformance):
    architecture = "monai_flexibleunet"
    plans = {
        "3d": PlanGeometry.default((32, 32, 32), 4),
        "3d_anisotropic": PlanGeometry.create((32, 32, 64), [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]]),
    }


def test_flexibleunet_cannot_be_asked_for_pretrained_weights():
    from kt_nnunet.architectures.spec import ArchitectureOptionError
    from kt_nnunet.registry import get_architecture

    with pytest.raises(ArchitectureOptionError, match="has no option 'pretrained'"):
        get_architecture("monai_flexibleunet").check_options({"pretrained": True})


def test_registering_the_plugin_does_not_import_monai():
    """kt-nnunet registers plugins in every process that looks up an architecture; MONAI's import costs seconds."""
    import subprocess
    import sys

    code = ("import sys; from kt_nnunet.registry import list_architectures; "
            "names = {s.name for s in list_architectures() if s.plugin == 'monai'}; "
            "print(sorted(names), 'monai' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ("['monai_attentionunet', 'monai_basicunetplusplus', 'monai_dynunet', 'monai_flexibleunet', "
                   "'monai_swinunetr', 'monai_unetr'] False")
