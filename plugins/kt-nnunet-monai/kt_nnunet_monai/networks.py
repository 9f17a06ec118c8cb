"""MONAI networks under nnU-Net's network contract.

Each class holds the MONAI network as ``self.net`` (so its ``state_dict`` is MONAI's with a ``net.`` prefix) and
adds only what nnU-Net needs: the constructor ``cls(input_channels, num_classes, deep_supervision, **arch_kwargs)``
(arch_kwargs come from plans.json, so they are JSON values; the plan's own ``strides``, ``kernel_sizes`` and
``patch_size`` arrive there too and are ignored by networks that have a fixed topology), a
``decoder.deep_supervision`` flag that nnU-Net's trainer flips at run time, and a forward pass that reads it.

They hold rather than subclass the MONAI classes because ``import monai`` imports all of MONAI (about 3-4 s):
kt-nnunet registers plugins in every process that looks up an architecture, so this module imports only torch,
and MONAI is imported when a MONAI network is built.
"""
from __future__ import annotations

import contextlib
import math
from typing import Optional, Sequence

import torch
import torch.nn as nn


class DeepSupervisionFlag(nn.Module):
    """``network.decoder``: nnU-Net's trainer sets ``network.decoder.deep_supervision``, and this module holds only
    that flag (no parameters, so the state_dict is the MONAI network's alone)."""

    def __init__(self, enabled: bool):
        super().__init__()
        self.deep_supervision = bool(enabled)


def _dim(patch_size) -> int:
    if patch_size is None:
        raise ValueError("needs patch_size (nnU-Net's patch size, written into arch_kwargs by kt-nnunet plan)")
    if len(patch_size) not in (2, 3):
        raise ValueError(f"patch_size {list(patch_size)} must have 2 or 3 entries")
    return len(patch_size)


def _check_multiple(name: str, patch_size: Sequence[int], divisor: int, why: str) -> None:
    bad = [p for p in patch_size if p % divisor]
    if bad:
        raise ValueError(f"{name} needs every patch axis divisible by {divisor} ({why}); patch size "
                         f"{list(patch_size)} is not")


def _check_bottleneck(network: nn.Module, name: str, x: torch.Tensor, divisor: int) -> None:
    """Instance norm in training mode fails on a 1-voxel map, with a PyTorch error from deep inside forward().

    Checked in forward(), not the constructor: the network may be built for a patch it is never trained on, and
    ``kt-nnunet plan`` runs forward() in training mode at the plan's own patch before writing the plans.
    """
    if network.training and math.prod(s // divisor for s in x.shape[2:]) < 2:
        raise ValueError(f"{name} reduces patch size {list(x.shape[2:])} to a single voxel at its deepest level "
                         f"(1/{divisor}), where its instance norm cannot train; make one patch axis at least "
                         f"{2 * divisor}")


def _freeze_unused(modules) -> None:
    """Parameters MONAI creates but never uses in this configuration.

    They are kept (so the state_dict stays MONAI's and MONAI's own weights load strictly) but frozen, so that no
    optimizer step or weight decay touches them and "every parameter gets a gradient" holds for the rest.
    """
    for module in modules:
        for parameter in module.parameters():
            parameter.requires_grad_(False)


class MonaiNetwork(nn.Module):
    """The MONAI network ``net`` and the ``decoder.deep_supervision`` flag; forward() for those without deep
    supervision, which return ``[logits]`` while nnU-Net's flag is on."""

    def __init__(self, net: nn.Module, deep_supervision: bool):
        super().__init__()
        self.net = net
        self.decoder = DeepSupervisionFlag(deep_supervision)

    def forward(self, x: torch.Tensor):
        logits = self.net(x)
        return [logits] if self.decoder.deep_supervision else logits


def stage_filters(n_stages: int, base_features: int, max_features: Optional[int], dim: int) -> list[int]:
    """nnU-Net's widths: ``base * 2**i``, capped at 320 in 3D and 512 in 2D unless ``max_features`` says."""
    cap = max_features or (320 if dim == 3 else 512)
    return [min(cap, base_features * 2 ** i) for i in range(n_stages)]


class MonaiDynUNet(MonaiNetwork):
    """MONAI's DynUNet (the nnU-Net re-implementation) on the plan's strides and kernel sizes.

    Deep supervision: DynUNet's own heads (one per decoder stage above the bottleneck's, ``deep_supr_num =
    len(strides) - 2``) give exactly nnU-Net's ``len(strides) - 1`` scales with the final output. They are read at
    their own resolution from DynUNet's ``heads``; DynUNet's own deep-supervision output instead interpolates them
    all to full resolution and stacks them into one tensor, which nnU-Net's loss cannot take. The heads are built
    whatever ``deep_supervision`` says, so the state_dict does not depend on it; DynUNet runs them in every forward
    pass (1x1 convs, a small cost at inference).
    """

    def __init__(self, input_channels: int, num_classes: int, deep_supervision: bool = False, strides=None,
                 kernel_sizes=None, base_features: int = 32, max_features: Optional[int] = None,
                 res_block: bool = False, **kwargs):
        if strides is None or len(strides) < 3:
            raise ValueError(f"DynUNet needs at least 3 stages (len(strides) >= 3), got strides {strides}")
        dim = len(strides[0])
        kernel_sizes = kernel_sizes or [[3] * dim for _ in strides]
        if len(kernel_sizes) != len(strides):
            raise ValueError(f"kernel_sizes {kernel_sizes} and strides {strides} must have one entry per stage")
        from monai.networks.nets import DynUNet

        net = DynUNet(
            spatial_dims=dim, in_channels=input_channels, out_channels=num_classes,
            kernel_size=[list(k) for k in kernel_sizes], strides=[list(s) for s in strides],
            # nnU-Net's decoder upsamples with a transposed conv whose kernel equals the stride it undoes.
            upsample_kernel_size=[list(s) for s in strides[1:]],
            filters=stage_filters(len(strides), base_features, max_features, dim),
            deep_supervision=True, deep_supr_num=len(strides) - 2, res_block=res_block)
        super().__init__(net, deep_supervision)

    def forward(self, x: torch.Tensor):
        logits = self.net.output_block(self.net.skip_layers(x))
        if not self.decoder.deep_supervision:
            return logits
        # skip_layers filled net.heads (shallowest first) during this forward pass.
        return [logits, *self.net.heads]


class MonaiUNETR(MonaiNetwork):
    """MONAI's UNETR: a ViT on 16-voxel patches of the image, with a convolutional decoder.

    ``img_size`` is the plan's patch size (the ViT's position embedding has one entry per 16-voxel patch), so the
    network only takes that input size, which nnU-Net's patch-based training and sliding-window inference keep.
    """

    VIT_PATCH = 16  # fixed by MONAI's UNETR

    def __init__(self, input_channels: int, num_classes: int, deep_supervision: bool = False, patch_size=None,
                 feature_size: int = 16, hidden_size: int = 768, mlp_dim: int = 3072, num_heads: int = 12,
                 norm_name: str = "instance", res_block: bool = True, dropout_rate: float = 0.0,
                 qkv_bias: bool = False, **kwargs):
        dim = _dim(patch_size)
        _check_multiple("UNETR", patch_size, self.VIT_PATCH, "its ViT patch is 16 voxels")
        from monai.networks.nets import UNETR

        net = UNETR(in_channels=input_channels, out_channels=num_classes, img_size=[int(p) for p in patch_size],
                         feature_size=feature_size, hidden_size=hidden_size, mlp_dim=mlp_dim, num_heads=num_heads,
                         norm_name=norm_name, res_block=res_block, dropout_rate=dropout_rate, spatial_dims=dim,
                         qkv_bias=qkv_bias)
        # MONAI's transformer blocks always create a cross-attention norm; UNETR has no cross-attention.
        _freeze_unused(block.norm_cross_attn for block in net.vit.blocks if not block.with_cross_attention)
        super().__init__(net, deep_supervision)


class MonaiSwinUNETR(MonaiNetwork):
    """MONAI's SwinUNETR: a Swin transformer encoder (patch embedding, four stages of shifted-window attention and
    patch merging) with a convolutional decoder.

    MONAI 1.6 takes no ``img_size`` (windows adapt to the input); the input must be divisible by
    ``embed_patch_size ** 5`` (MONAI's own check), 32 for the usual 2. ``embed_patch_size`` is MONAI's
    ``patch_size``, renamed because ``patch_size`` in nnU-Net's arch_kwargs is the training patch.
    """

    def __init__(self, input_channels: int, num_classes: int, deep_supervision: bool = False, patch_size=None,
                 embed_patch_size: int = 2, feature_size: int = 24, depths=(2, 2, 2, 2), num_heads=(3, 6, 12, 24),
                 window_size: int = 7, norm_name: str = "instance", drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0, dropout_path_rate: float = 0.0, use_v2: bool = False,
                 use_checkpoint: bool = False, **kwargs):
        dim = _dim(patch_size)
        divisor = swinunetr_divisor(embed_patch_size)
        _check_multiple("SwinUNETR", patch_size, divisor, f"MONAI's rule: embed_patch_size ** 5")
        # MONAI's SwinTransformer reads its drop-path rates with Tensor.item(), which the meta device cannot do;
        # kt-nnunet builds there to count parameters and check plans, so build on the CPU and move the result.
        from monai.networks.nets import SwinUNETR

        on_meta = torch.get_default_device().type == "meta"
        with torch.device("cpu") if on_meta else contextlib.nullcontext():
            net = SwinUNETR(in_channels=input_channels, out_channels=num_classes, patch_size=embed_patch_size,
                             depths=tuple(depths), num_heads=tuple(num_heads), window_size=window_size,
                             feature_size=feature_size, norm_name=norm_name, drop_rate=drop_rate,
                             attn_drop_rate=attn_drop_rate, dropout_path_rate=dropout_path_rate, spatial_dims=dim,
                             use_v2=use_v2, use_checkpoint=use_checkpoint)
        super().__init__(net.to("meta") if on_meta else net, deep_supervision)
        self.divisor, self.instance_norm = divisor, norm_name == "instance"

    def forward(self, x: torch.Tensor):
        if self.instance_norm:
            _check_bottleneck(self, "SwinUNETR", x, self.divisor)
        return super().forward(x)


def swinunetr_divisor(embed_patch_size: int) -> int:
    return int(embed_patch_size) ** 5


class MonaiBasicUNetPlusPlus(MonaiNetwork):
    """MONAI's BasicUNetPlusPlus (UNet++, Zhou 2018): four 2x max-pooling levels and nested dense skips.

    Its own deep supervision returns four maps all at full resolution (the top row of nested decoders), not
    nnU-Net's one map per scale, so it is off here and the architecture declares no deep supervision.
    """

    POOLING = 16  # four fixed 2x max-pools

    def __init__(self, input_channels: int, num_classes: int, deep_supervision: bool = False, patch_size=None,
                 features=(32, 32, 64, 128, 256, 32), dropout: float = 0.0, upsample: str = "deconv", **kwargs):
        dim = _dim(patch_size)
        _check_multiple("BasicUNetPlusPlus", patch_size, self.POOLING, "it max-pools by 2 four times")
        from monai.networks.nets import BasicUNetPlusPlus

        net = BasicUNetPlusPlus(spatial_dims=dim, in_channels=input_channels, out_channels=num_classes,
                                features=tuple(features), deep_supervision=False, dropout=dropout, upsample=upsample)
        # The heads of the three shallower nested decoders serve only MONAI's own deep supervision.
        _freeze_unused((net.final_conv_0_1, net.final_conv_0_2, net.final_conv_0_3))
        super().__init__(net, deep_supervision)

    def forward(self, x: torch.Tensor):
        _check_bottleneck(self, "BasicUNetPlusPlus", x, self.POOLING)
        (logits,) = self.net(x)  # a one-element list with MONAI's deep supervision off
        return [logits] if self.decoder.deep_supervision else logits


class MonaiAttentionUnet(MonaiNetwork):
    """MONAI's Attention U-Net (Oktay 2018) on the plan's strides: one level per nnU-Net stage, attention gates on
    the skips, ``base_features * 2**i`` channels (capped as nnU-Net caps them).

    Its kernel size is one for all levels, so the plan's per-stage kernel sizes are not used.
    """

    def __init__(self, input_channels: int, num_classes: int, deep_supervision: bool = False, strides=None,
                 base_features: int = 32, max_features: Optional[int] = None, kernel_size: int = 3,
                 dropout: float = 0.0, **kwargs):
        if strides is None or len(strides) < 2:
            raise ValueError(f"Attention U-Net needs at least 2 stages (len(strides) >= 2), got strides {strides}")
        dim = len(strides[0])
        if any(s != 1 for s in strides[0]):
            # Its input convolution has stride 1; a downsampling first stage would have nowhere to go.
            raise ValueError(f"Attention U-Net needs the first stage's stride to be 1, got strides {strides}")
        from monai.networks.nets import AttentionUnet

        net = AttentionUnet(spatial_dims=dim, in_channels=input_channels, out_channels=num_classes,
                            channels=stage_filters(len(strides), base_features, max_features, dim),
                            strides=[tuple(int(v) for v in s) for s in strides[1:]], kernel_size=kernel_size,
                            up_kernel_size=kernel_size, dropout=dropout)
        super().__init__(net, deep_supervision)


class MonaiFlexibleUNet(MonaiNetwork):
    """MONAI's FlexibleUNet: a ResNet or EfficientNet encoder (five 2x downsamplings) and a U-Net decoder.

    ``pretrained`` is always False: kt-nnunet never downloads weights; MONAI initialises the backbone randomly.
    """

    DOWNSAMPLING = 32  # the backbones' five stride-2 stages

    def __init__(self, input_channels: int, num_classes: int, deep_supervision: bool = False, patch_size=None,
                 backbone: str = "resnet18", decoder_channels=(256, 128, 64, 32, 16), dropout: float = 0.0,
                 upsample: str = "nontrainable", **kwargs):
        dim = _dim(patch_size)
        _check_multiple("FlexibleUNet", patch_size, self.DOWNSAMPLING, "its backbone downsamples by 2 five times")
        from monai.networks.nets import FlexibleUNet

        net = FlexibleUNet(in_channels=input_channels, out_channels=num_classes, backbone=backbone, pretrained=False,
                           decoder_channels=tuple(decoder_channels), spatial_dims=dim, dropout=dropout,
                           upsample=upsample)
        super().__init__(net, deep_supervision)
