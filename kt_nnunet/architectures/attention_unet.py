"""Attention U-Net: a U-Net whose skip connections pass through additive attention gates.

Oktay et al., "Attention U-Net: Learning Where to Look for the Pancreas", MIDL 2018, arXiv:1804.03999.
Each gate computes, for skip features x (fine) and the gating signal g (the coarser decoder feature):
    q = psi(ReLU(W_x x + W_g g)),  alpha = sigmoid(q) resampled to x's grid,  output = alpha * x.
As in the paper, W_x is a strided conv with kernel = stride = the stage stride, so x is brought to g's
(coarser) grid and the gate works there (cheap); alpha is upsampled back with (bi/tri)linear interpolation.
Everything else is the U-Net of :mod:`kt_nnunet.architectures.unet` (shared skeleton in ``unet_parts``).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn

from kt_nnunet.architectures import blocks
from kt_nnunet.architectures.spec import ArchitectureSpec
from kt_nnunet.architectures.unet_parts import EncoderDecoderUNet, double_conv, spatial_dim, stage_features


class AttentionGate(nn.Module):
    """Additive attention gate (Oktay et al. 2018, Fig. 2) producing one coefficient per skip voxel."""

    def __init__(self, dim: int, skip_channels: int, gating_channels: int, stride: Sequence[int]):
        super().__init__()
        conv = blocks.conv_nd(dim)
        inter = max(1, skip_channels // 2)  # the paper's F_int; halving keeps the gate cheap
        stride = tuple(stride)
        # No bias on W_x: W_g's bias already adds the single shared offset b_g of the paper.
        self.skip_proj = conv(skip_channels, inter, stride, stride=stride, bias=False)  # W_x
        self.gating_proj = conv(gating_channels, inter, 1, bias=True)  # W_g
        self.psi = conv(inter, 1, 1, bias=True)

    def forward(self, skip: torch.Tensor, gating: torch.Tensor) -> torch.Tensor:
        projected = self.skip_proj(skip)
        gating = blocks.upsample_like(self.gating_proj(gating), projected)  # no-op when strides line up
        alpha = torch.sigmoid(self.psi(torch.relu(projected + gating)))
        return skip * blocks.upsample_like(alpha, skip)


class AttentionUNet(EncoderDecoderUNet):
    """U-Net (max-pool encoder, up-conv decoder) with an attention gate on every skip connection."""

    def __init__(self, input_channels: int, num_classes: int, strides, deep_supervision: bool = False,
                 patch_size=None, kernel_sizes=None, base_features: int = 32,
                 max_features: Optional[int] = None, downsample: str = "maxpool", **kwargs):
        features = stage_features(len(strides), base_features, max_features, spatial_dim(strides))
        super().__init__(input_channels, num_classes, strides, deep_supervision, kernel_sizes, features,
                         block=double_conv, downsample=downsample, gate=AttentionGate)


SPEC = ArchitectureSpec(
    name="attention_unet",
    network_class=AttentionUNet,
    dims=(2, 3),
    deep_supervision=True,
    description="Attention U-Net (Oktay 2018): U-Net with additive attention gates on the skips",
    default_kwargs={"base_features": 32, "downsample": "maxpool"},
    tiny_kwargs={"base_features": 4},
)
