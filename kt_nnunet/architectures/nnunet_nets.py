"""nnU-Net's own networks (PlainConvUNet, ResidualEncoderUNet), with the arch_kwargs nnU-Net's planners write.

The kwargs mirror ``ExperimentPlanner.get_plans_for_configuration`` (plain) and ``ResEncUNetPlanner``
(residual encoder) in nnunetv2 2.8: same stage widths, kernel sizes, blocks per stage and layer types.
When an nnU-Net plan is given, its values are kept; ``base_features``/``max_features`` are the width knob.
"""
from __future__ import annotations

from dynamic_network_architectures.architectures.unet import PlainConvUNet, ResidualEncoderUNet

from kt_nnunet.architectures.spec import ArchitectureSpec, PlanGeometry

# nnU-Net 2.8 planner constants (ExperimentPlanner / ResEncUNetPlanner).
PLAIN_BLOCKS_ENCODER = (2,) * 14
PLAIN_BLOCKS_DECODER = (2,) * 13
RESENC_BLOCKS_ENCODER = (1, 3, 4, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6)
RESENC_BLOCKS_DECODER = (1,) * 12
BASE_FEATURES = 32
MAX_FEATURES = {2: 512, 3: 320}
WIDTH_KNOBS = ("base_features", "max_features")
_REQUIRES_IMPORT = ("conv_op", "norm_op", "dropout_op", "nonlin")


def _common_kwargs(geometry: PlanGeometry, nnunet_arch_kwargs: dict, options: dict) -> dict:
    dim, n = geometry.dim, geometry.n_stages
    base = options.get("base_features", BASE_FEATURES)
    cap = options.get("max_features", MAX_FEATURES[dim])
    if "base_features" in options or "max_features" in options or "features_per_stage" not in nnunet_arch_kwargs:
        features = [min(cap, base * 2 ** i) for i in range(n)]
    else:
        features = list(nnunet_arch_kwargs["features_per_stage"])
    kernels = geometry.kernel_sizes or nnunet_arch_kwargs.get("kernel_sizes") or [[3] * dim] * n
    conv = "torch.nn.modules.conv.Conv%dd" % dim
    norm = "torch.nn.modules.instancenorm.InstanceNorm%dd" % dim
    return {
        "n_stages": n,
        "features_per_stage": features,
        "conv_op": conv,
        "kernel_sizes": [list(k) for k in kernels],
        "strides": [list(s) for s in geometry.strides],
        "conv_bias": True,
        "norm_op": norm,
        "norm_op_kwargs": {"eps": 1e-5, "affine": True},
        "dropout_op": None,
        "dropout_op_kwargs": None,
        "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True},
    }


def _with_user_options(kwargs: dict, options: dict) -> dict:
    """Constructor kwargs the user set explicitly win; the width knobs were consumed above."""
    kwargs.update({k: v for k, v in options.items() if k not in WIDTH_KNOBS})
    return kwargs


def plain_unet_kwargs(geometry: PlanGeometry, nnunet_arch_kwargs: dict, options: dict) -> dict:
    kwargs = _common_kwargs(geometry, nnunet_arch_kwargs, options)
    n = geometry.n_stages
    kwargs["n_conv_per_stage"] = list(nnunet_arch_kwargs.get("n_conv_per_stage", PLAIN_BLOCKS_ENCODER[:n]))
    kwargs["n_conv_per_stage_decoder"] = list(
        nnunet_arch_kwargs.get("n_conv_per_stage_decoder", PLAIN_BLOCKS_DECODER[:n - 1]))
    return _with_user_options(kwargs, options)


def residual_encoder_unet_kwargs(geometry: PlanGeometry, nnunet_arch_kwargs: dict, options: dict) -> dict:
    kwargs = _common_kwargs(geometry, nnunet_arch_kwargs, options)
    n = geometry.n_stages
    kwargs["n_blocks_per_stage"] = list(nnunet_arch_kwargs.get("n_blocks_per_stage", RESENC_BLOCKS_ENCODER[:n]))
    kwargs["n_conv_per_stage_decoder"] = list(RESENC_BLOCKS_DECODER[:n - 1])
    return _with_user_options(kwargs, options)


SPECS = (
    ArchitectureSpec(
        name="nnunet_plain",
        network_class=PlainConvUNet,
        dims=(2, 3),
        deep_supervision=True,
        description="nnU-Net's default PlainConvUNet, exactly as its planner configures it",
        tiny_kwargs={"base_features": 4, "max_features": 16},
        plan_kwargs=plain_unet_kwargs,
        kw_requires_import=_REQUIRES_IMPORT,
    ),
    ArchitectureSpec(
        name="nnunet_resenc",
        network_class=ResidualEncoderUNet,
        dims=(2, 3),
        deep_supervision=True,
        description="nnU-Net's ResidualEncoderUNet (ResEnc planner: 1-3-4-6-6 residual blocks)",
        tiny_kwargs={"base_features": 4, "max_features": 16},
        plan_kwargs=residual_encoder_unet_kwargs,
        kw_requires_import=_REQUIRES_IMPORT,
    ),
)
