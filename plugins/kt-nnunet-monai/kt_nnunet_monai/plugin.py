"""The plugin module named by the ``kt_nnunet`` entry point: one ArchitectureSpec per MONAI network.

Networks that follow the plan's strides (DynUNet, Attention U-Net) keep kt-nnunet's default divisibility, the
product of the strides. The others have a fixed topology and declare the divisor it needs, so ``kt-nnunet plan``
refuses a patch size they cannot take before anything is written, with a message naming the divisor.
"""
from __future__ import annotations

from kt_nnunet.architectures.spec import ArchitectureSpec, PlanGeometry
from kt_nnunet.plugins import hookimpl


def _fixed(divisor: int):
    def divisibility(geometry: PlanGeometry, arch_kwargs: dict) -> tuple[int, ...]:
        return (divisor,) * geometry.dim
    return divisibility


def swinunetr_divisibility(geometry: PlanGeometry, arch_kwargs: dict) -> tuple[int, ...]:
    from kt_nnunet_monai.networks import swinunetr_divisor

    return (swinunetr_divisor(arch_kwargs.get("embed_patch_size", 2)),) * geometry.dim


def specs() -> list[ArchitectureSpec]:
    from kt_nnunet_monai import networks as n

    return [
        ArchitectureSpec(
            name="monai_dynunet",
            network_class=n.MonaiDynUNet,
            dims=(2, 3),
            deep_supervision=True,
            description="MONAI DynUNet: nnU-Net's U-Net re-implemented in MONAI, on the plan's strides and kernels",
            default_kwargs={"base_features": 32, "res_block": False},
            tiny_kwargs={"base_features": 4},
        ),
        ArchitectureSpec(
            name="monai_unetr",
            network_class=n.MonaiUNETR,
            dims=(2, 3),
            deep_supervision=False,
            description="MONAI UNETR (Hatamizadeh 2022): 12-layer ViT on 16-voxel patches, conv decoder; "
                        "img_size = patch size",
            default_kwargs={"feature_size": 16, "hidden_size": 768, "mlp_dim": 3072, "num_heads": 12,
                            "dropout_rate": 0.0},
            tiny_kwargs={"feature_size": 4, "hidden_size": 48, "mlp_dim": 96, "num_heads": 2},
            divisibility=_fixed(n.MonaiUNETR.VIT_PATCH),
        ),
        ArchitectureSpec(
            name="monai_swinunetr",
            network_class=n.MonaiSwinUNETR,
            dims=(2, 3),
            deep_supervision=False,
            description="MONAI SwinUNETR (Hatamizadeh 2022): Swin transformer encoder, conv decoder",
            default_kwargs={"feature_size": 24, "embed_patch_size": 2, "window_size": 7,
                            "depths": [2, 2, 2, 2], "num_heads": [3, 6, 12, 24], "use_v2": False},
            tiny_kwargs={"feature_size": 12, "window_size": 4, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 2]},
            divisibility=swinunetr_divisibility,
        ),
        ArchitectureSpec(
            name="monai_basicunetplusplus",
            network_class=n.MonaiBasicUNetPlusPlus,
            dims=(2, 3),
            deep_supervision=False,
            description="MONAI BasicUNetPlusPlus (UNet++, Zhou 2018): 4 max-pool levels, nested dense skips",
            default_kwargs={"features": [32, 32, 64, 128, 256, 32]},
            tiny_kwargs={"features": [4, 4, 8, 8, 16, 4]},
            divisibility=_fixed(n.MonaiBasicUNetPlusPlus.POOLING),
        ),
        ArchitectureSpec(
            name="monai_attentionunet",
            network_class=n.MonaiAttentionUnet,
            dims=(2, 3),
            deep_supervision=False,
            description="MONAI Attention U-Net (Oktay 2018): attention-gated skips, on the plan's strides",
            default_kwargs={"base_features": 32, "kernel_size": 3},
            tiny_kwargs={"base_features": 4},
        ),
        ArchitectureSpec(
            name="monai_flexibleunet",
            network_class=n.MonaiFlexibleUNet,
            dims=(2, 3),
            deep_supervision=False,
            description="MONAI FlexibleUNet: ResNet/EfficientNet encoder (random init, never downloaded), "
                        "U-Net decoder",
            default_kwargs={"backbone": "resnet18", "decoder_channels": [256, 128, 64, 32, 16]},
            tiny_kwargs={"backbone": "resnet10", "decoder_channels": [16, 8, 8, 4, 4]},
            divisibility=_fixed(n.MonaiFlexibleUNet.DOWNSAMPLING),
        ),
    ]


@hookimpl
def register_architectures(register):
    for spec in specs():
        register(spec)
