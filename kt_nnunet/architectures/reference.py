"""The reference 2D configuration used to compare architectures in listings and benchmarks."""
from __future__ import annotations

import torch

from kt_nnunet.architectures.spec import ArchitectureSpec, PlanGeometry

# nnU-Net's default 2d plan for a 256x256 dataset: 7 stages, 3x3 kernels, stride 2 after stage 0.
REFERENCE_2D = PlanGeometry.default((256, 256), 7)
REFERENCE_3D = PlanGeometry.default((64, 64, 64), 5)
REFERENCE_INPUT_CHANNELS = 1
REFERENCE_NUM_CLASSES = 3


def parameter_count(spec: ArchitectureSpec, geometry: PlanGeometry = REFERENCE_2D) -> int:
    """Parameters of ``spec`` at its default size; built on the meta device, so nothing is allocated."""
    with torch.device("meta"):
        network = spec.build(REFERENCE_INPUT_CHANNELS, REFERENCE_NUM_CLASSES, geometry)
    return sum(p.numel() for p in network.parameters())


def broken_reason(spec: ArchitectureSpec):
    """Why ``spec`` cannot be used, checked against nnU-Net's contract at the reference plan; None when it can."""
    from kt_nnunet.errors import KtNnunetError, one_line
    from kt_nnunet.plugins.manager import plugin_label
    from kt_nnunet.registry import check_contract

    geometry = REFERENCE_2D if 2 in spec.dims else REFERENCE_3D
    try:
        check_contract(spec, geometry, REFERENCE_INPUT_CHANNELS, REFERENCE_NUM_CLASSES)
    except KtNnunetError as exc:
        return str(exc)
    except Exception as exc:  # a plugin's own divisibility or plan_kwargs function may raise anything
        return f"architecture {spec.name!r} from {plugin_label(spec.plugin)}: {one_line(exc)}"
    return None


def describe(spec: ArchitectureSpec) -> dict:
    """The JSON record ``kt-nnunet architectures --json`` prints for one architecture."""
    return {
        "name": spec.name,
        "dims": list(spec.dims),
        "deep_supervision": spec.deep_supervision,
        "plugin": spec.plugin,
        "class": spec.class_path,
        "description": spec.description,
        "reference_2d": {"patch_size": list(REFERENCE_2D.patch_size), "n_stages": REFERENCE_2D.n_stages,
                         "input_channels": REFERENCE_INPUT_CHANNELS, "num_classes": REFERENCE_NUM_CLASSES},
        "params_2d": parameter_count(spec) if 2 in spec.dims else None,
        "divisibility_2d": list(spec.divisibility(REFERENCE_2D, spec.arch_kwargs(REFERENCE_2D)))
        if 2 in spec.dims else None,
    }
