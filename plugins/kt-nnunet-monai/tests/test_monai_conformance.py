"""Every MONAI architecture meets nnU-Net's network contract: kt-nnunet's conformance kit, as a plugin package uses it.

The kit's plans (``kt_nnunet.testing.GEOMETRIES``) include patches of 16 and 8 voxels along an axis. UNETR,
SwinUNETR, BasicUNetPlusPlus and FlexibleUNet have a fixed topology that cannot take some of them (their divisor is
16 or 32), so those classes give the kit ``plans`` of the same dimensionality, as small as their constraint allows;
the kit checks that exactly the replaced plans are refused, as ``kt-nnunet plan`` refuses them.

Only DynUNet runs the kit's real ``kt-nnunet plan`` + ``nnUNetv2_train`` + ``nnUNetv2_predict`` step (30-70 s on 2
cores, with the machine's load); the others share its code path there (plans -> dotted path -> nnU-Net's builder),
which the in-process ``test_plans_kwargs_build_the_same_network_as_nnunet`` checks for each of them.
"""
from __future__ import annotations

import pytest

from kt_nnunet.architectures.spec import PlanGeometry
from kt_nnunet.testing import ArchitectureConformance


class TestDynUNet(ArchitectureConformance):
    architecture = "monai_dynunet"  # the plugin's one real nnUNetv2_train + nnUNetv2_predict round trip


class TestAttentionUnet(ArchitectureConformance):
    architecture = "monai_attentionunet"
    train = False


class TestUNETR(ArchitectureConformance):
    architecture = "monai_unetr"
    train = False
    plans = {"3d_anisotropic": PlanGeometry.create((16, 32, 32), [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]])}


class TestSwinUNETR(ArchitectureConformance):
    architecture = "monai_swinunetr"
    train = False
    plans = {
        "2d": PlanGeometry.default((64, 64), 5),
        "3d": PlanGeometry.default((32, 32, 64), 4),
        "3d_anisotropic": PlanGeometry.create((32, 64, 32), [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]]),
    }


class TestBasicUNetPlusPlus(ArchitectureConformance):
    architecture = "monai_basicunetplusplus"
    train = False
    plans = {
        "3d": PlanGeometry.default((32, 32, 32), 4),
        "3d_anisotropic": PlanGeometry.create((16, 32, 32), [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]]),
    }


class TestFlexibleUNet(ArchitectureConformance):
    architecture = "monai_flexibleunet"
    train = False
    plans = {
        "3d": PlanGeometry.default((32, 32, 32), 4),
        "3d_anisotropic": PlanGeometry.create((32, 32, 64), [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]]),
    }


def test_flexibleunet_cannot_be_asked_for_pretrained_weights():
    from kt_nnunet.architectures.spec import ArchitectureOptionError
    from kt_nnunet.registry import get_architecture

    with pytest.raises(ArchitectureOptionError, match="has no option 'pretrained'"):
        get_architecture("monai_flexibleunet").check_options({"pretrained": True})


def test_a_refused_patch_names_the_constraint():
    """What `kt-nnunet plan` says for a patch SwinUNETR cannot take, and the kit's own check when a test class
    forgets to replace such a plan."""
    from kt_nnunet.registry import get_architecture
    from kt_nnunet.testing.checks import check_refused_plans

    spec = get_architecture("monai_swinunetr")
    geometry = PlanGeometry.default((48, 48), 4)
    with pytest.raises(ValueError, match=r"not divisible by \[32, 32\], which architecture 'monai_swinunetr' needs"):
        spec.check_patch_size(geometry, spec.arch_kwargs(geometry, tiny=True))
    with pytest.raises(AssertionError, match=r"kit plan '2d' is refused .* give a plan it can take"):
        check_refused_plans("monai_swinunetr", {"3d", "3d_anisotropic"})


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
