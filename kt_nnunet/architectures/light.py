"""Light student U-Net built from depthwise-separable convolutions.

Separable convs as in MobileNets (Howard et al. 2017, arXiv:1704.04861): a depthwise k x k conv followed by
a pointwise 1 x 1 conv, which costs about ``1/C_out + 1/k^d`` of a full conv. Combined with narrow widths
(16 .. 128 channels) on the U-Net skeleton of Ronneberger et al. 2015 (arXiv:1505.04597), the default 2D
network at 256x256 with 7 stages needs well under 1/5 of the forward FLOPs of nnU-Net's default
PlainConvUNet, which makes it a knowledge-distillation student.
"""
from __future__ import annotations

from typing import Sequence

import torch.nn as nn

from kt_nnunet.architectures import blocks
from kt_nnunet.architectures.spec import ArchitectureSpec
from kt_nnunet.architectures.unet_parts import EncoderDecoderUNet, spatial_dim, stage_features


class SeparableConvNormAct(nn.Sequential):
    """depthwise k x k conv (may be strided) -> pointwise 1 x 1 conv -> instance norm -> LeakyReLU."""

    def __init__(self, dim: int, in_ch: int, out_ch: int, kernel: Sequence[int], stride: Sequence[int]):
        conv = blocks.conv_nd(dim)
        super().__init__(
            # No bias on the depthwise conv: the pointwise conv's bias follows immediately.
            conv(in_ch, in_ch, tuple(kernel), stride=tuple(stride), padding=blocks.padding_for(tuple(kernel)),
                 groups=in_ch, bias=False),
            conv(in_ch, out_ch, 1, bias=True),
            blocks.norm_nd(dim, out_ch),
            nn.LeakyReLU(0.01, inplace=True),
        )


def separable_double_conv(dim: int, in_ch: int, out_ch: int, stride, kernel) -> nn.Module:
    """The U-Net double conv with both units made depthwise-separable."""
    return nn.Sequential(SeparableConvNormAct(dim, in_ch, out_ch, kernel, stride),
                         SeparableConvNormAct(dim, out_ch, out_ch, kernel, [1] * dim))


class LightUNet(EncoderDecoderUNet):
    """Narrow U-Net of separable double convs; stage ``i`` has ``min(max_features, base * 2**i)`` channels."""

    def __init__(self, input_channels: int, num_classes: int, strides, deep_supervision: bool = False,
                 patch_size=None, kernel_sizes=None, base_features: int = 16, max_features: int = 128,
                 downsample: str = "maxpool", **kwargs):
        features = stage_features(len(strides), base_features, max_features, spatial_dim(strides))
        super().__init__(input_channels, num_classes, strides, deep_supervision, kernel_sizes, features,
                         block=separable_double_conv, downsample=downsample)


SPEC = ArchitectureSpec(
    name="light_unet",
    network_class=LightUNet,
    dims=(2, 3),
    deep_supervision=True,
    description="light student U-Net: depthwise-separable convs, widths 16-128 (<1/5 of nnU-Net's FLOPs in 2D)",
    default_kwargs={"base_features": 16, "max_features": 128, "downsample": "maxpool"},
    tiny_kwargs={"base_features": 4, "max_features": 16},
)
