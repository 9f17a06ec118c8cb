"""Dimension-agnostic layers shared by the built-in architectures (2D and 3D from one code path)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_nd(dim: int) -> type[nn.Module]:
    return {2: nn.Conv2d, 3: nn.Conv3d}[dim]


def transposed_conv_nd(dim: int) -> type[nn.Module]:
    return {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[dim]


def norm_nd(dim: int, channels: int) -> nn.Module:
    # Instance norm as in nnU-Net: batch sizes of 2 make batch norm statistics meaningless.
    return {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}[dim](channels, eps=1e-5, affine=True)


def padding_for(kernel: int | Sequence[int], dilation: int = 1):
    if isinstance(kernel, int):
        return dilation * (kernel - 1) // 2
    return tuple(dilation * (k - 1) // 2 for k in kernel)


class ConvNormAct(nn.Module):
    """conv -> instance norm -> LeakyReLU, nnU-Net's basic unit."""

    def __init__(self, dim: int, in_ch: int, out_ch: int, kernel=3, stride=1, dilation: int = 1,
                 groups: int = 1, act: bool = True):
        super().__init__()
        self.conv = conv_nd(dim)(in_ch, out_ch, kernel, stride=stride, padding=padding_for(kernel, dilation),
                                 dilation=dilation, groups=groups, bias=True)
        self.norm = norm_nd(dim, out_ch)
        self.act = nn.LeakyReLU(0.01, inplace=True) if act else nn.Identity()

    def forward(self, x):
        return self.act(self.norm(self.conv(x)))


class DoubleConv(nn.Sequential):
    """Two ConvNormAct units; the first may downsample with a stride."""

    def __init__(self, dim: int, in_ch: int, out_ch: int, stride=1, kernel=3):
        super().__init__(ConvNormAct(dim, in_ch, out_ch, kernel, stride=stride),
                         ConvNormAct(dim, out_ch, out_ch, kernel))


def upsample_like(x: torch.Tensor, reference: torch.Tensor, mode: str = "linear") -> torch.Tensor:
    """Resize ``x`` to ``reference``'s spatial shape (bilinear/trilinear for 'linear')."""
    if tuple(x.shape[2:]) == tuple(reference.shape[2:]):
        return x
    if mode == "linear":
        mode = {4: "bilinear", 5: "trilinear"}[x.ndim]
        return F.interpolate(x, size=reference.shape[2:], mode=mode, align_corners=False)
    return F.interpolate(x, size=reference.shape[2:], mode=mode)


def he_init(module: nn.Module) -> None:
    """Kaiming init for LeakyReLU convs, as nnU-Net's InitWeights_He(1e-2)."""
    if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        nn.init.kaiming_normal_(module.weight, a=1e-2)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class DeepSupervisionHeads(nn.Module):
    """1x1 segmentation heads on decoder features, ordered coarse to fine.

    All heads exist whatever the deep-supervision flag, so the state_dict never changes with it.
    ``select`` returns what nnU-Net expects: full resolution first when deep supervision is on,
    only the finest logits when it is off.
    """

    def __init__(self, dim: int, channels_coarse_to_fine: Sequence[int], num_classes: int):
        super().__init__()
        self.heads = nn.ModuleList(conv_nd(dim)(c, num_classes, 1, bias=True) for c in channels_coarse_to_fine)

    def select(self, features_coarse_to_fine: Sequence[torch.Tensor], deep_supervision: bool):
        if not deep_supervision:
            return self.heads[-1](features_coarse_to_fine[-1])
        logits = [head(f) for head, f in zip(self.heads, features_coarse_to_fine)]
        return logits[::-1]
