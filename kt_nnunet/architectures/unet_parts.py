"""Encoder/decoder skeleton shared by the U-Net family (unet, attention_unet, light_unet, unetpp).

The skeleton follows nnU-Net's plan geometry: one encoder stage per entry of ``strides`` (stage ``i``
first downsamples by ``strides[i]``, per axis, then applies its conv block), and one decoder stage per
skip connection, which upsamples with a transposed conv whose kernel equals the stride, optionally gates
the skip, concatenates and applies a conv block. What differs between the variants (the conv block, the
downsampling op, the skip gate) is passed in as factories, so 2D and 3D and every variant share one path.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn

from kt_nnunet.architectures import blocks

# (dim, in_ch, out_ch, stride, kernel) -> module. ``stride`` is non-trivial only for strided-conv downsampling.
BlockFactory = Callable[[int, int, int, Sequence[int], Sequence[int]], nn.Module]
# (dim, skip_ch, gating_ch, stride) -> module called as gate(skip, gating) and returning the gated skip.
GateFactory = Callable[[int, int, int, Sequence[int]], nn.Module]

DOWNSAMPLE_MODES = ("maxpool", "conv")
DEFAULT_MAX_FEATURES = {2: 512, 3: 320}  # nnU-Net's caps; 3D is lower because activations are much larger


def spatial_dim(strides: Sequence[Sequence[int]]) -> int:
    dim = len(strides[0])
    if dim not in (2, 3) or any(len(s) != dim for s in strides):
        raise ValueError(f"strides must all be 2D or all 3D, got {strides}")
    return dim


def stage_features(n_stages: int, base_features: int, max_features: Optional[int], dim: int) -> list[int]:
    """Widths ``base * 2**i`` capped at ``max_features`` (nnU-Net's 512 in 2D / 320 in 3D when None)."""
    cap = DEFAULT_MAX_FEATURES[dim] if max_features is None else int(max_features)
    return [min(cap, int(base_features) * 2 ** i) for i in range(n_stages)]


def stage_kernels(kernel_sizes, n_stages: int, dim: int) -> list[list[int]]:
    if kernel_sizes is None:
        return [[3] * dim for _ in range(n_stages)]
    if len(kernel_sizes) != n_stages:
        raise ValueError(f"kernel_sizes has {len(kernel_sizes)} entries but strides has {n_stages}")
    return [[int(k) for k in kernel] for kernel in kernel_sizes]


def is_unit(stride: Sequence[int]) -> bool:
    return all(s == 1 for s in stride)


def max_pool(dim: int, stride: Sequence[int]) -> nn.Module:
    if is_unit(stride):
        return nn.Identity()
    pool = {2: nn.MaxPool2d, 3: nn.MaxPool3d}[dim]
    return pool(kernel_size=tuple(stride), stride=tuple(stride))


def double_conv(dim: int, in_ch: int, out_ch: int, stride, kernel) -> nn.Module:
    """The classic U-Net block: two conv-norm-LeakyReLU units, the first possibly strided."""
    return blocks.DoubleConv(dim, in_ch, out_ch, stride=tuple(stride), kernel=tuple(kernel))


class Encoder(nn.Module):
    """Stages of (downsample by ``strides[i]``, block); returns every stage's output, fine to coarse."""

    def __init__(self, dim: int, input_channels: int, features: Sequence[int], strides, kernels,
                 block: BlockFactory, downsample: str = "maxpool"):
        super().__init__()
        if downsample not in DOWNSAMPLE_MODES:
            raise ValueError(f"downsample must be one of {DOWNSAMPLE_MODES}, got {downsample!r}")
        self.stages = nn.ModuleList()
        in_ch = input_channels
        for out_ch, stride, kernel in zip(features, strides, kernels):
            if downsample == "maxpool":
                stage = nn.Sequential(max_pool(dim, stride), block(dim, in_ch, out_ch, [1] * dim, kernel))
            else:
                stage = block(dim, in_ch, out_ch, stride, kernel)
            self.stages.append(stage)
            in_ch = out_ch

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips = []
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        return skips


class Decoder(nn.Module):
    """U-Net decoder: transposed-conv up, optional skip gate, concatenate, block; one head per stage.

    ``deep_supervision`` is read at every forward pass, because nnU-Net flips it after construction.
    """

    def __init__(self, dim: int, features: Sequence[int], strides, kernels, num_classes: int,
                 block: BlockFactory, deep_supervision: bool, gate: Optional[GateFactory] = None):
        super().__init__()
        self.deep_supervision = deep_supervision
        self.upsamples, self.gates, self.stages = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        # Decoder stage for skip i (coarse to fine, i = n-2 .. 0) upsamples from stage i+1's resolution.
        for i in range(len(features) - 2, -1, -1):
            up_stride = tuple(strides[i + 1])
            self.upsamples.append(blocks.transposed_conv_nd(dim)(features[i + 1], features[i], up_stride,
                                                                 stride=up_stride, bias=True))
            # The attention gate is driven by the coarser decoder feature, before it is upsampled.
            self.gates.append(gate(dim, features[i], features[i + 1], up_stride) if gate else nn.Identity())
            self.stages.append(block(dim, 2 * features[i], features[i], [1] * dim, kernels[i]))
        self.heads = blocks.DeepSupervisionHeads(dim, list(features[-2::-1]), num_classes)

    def forward(self, skips: Sequence[torch.Tensor]):
        x = skips[-1]
        outputs = []
        for up, gate, stage, skip in zip(self.upsamples, self.gates, self.stages, reversed(skips[:-1])):
            gated = skip if isinstance(gate, nn.Identity) else gate(skip, x)
            x = stage(torch.cat([up(x), gated], dim=1))
            outputs.append(x)
        return self.heads.select(outputs, self.deep_supervision)


class EncoderDecoderUNet(nn.Module):
    """A U-Net assembled from a block factory, a downsampling mode and an optional skip gate.

    Subclasses only choose the parts; they keep nnU-Net's constructor contract in their own ``__init__``.
    """

    def __init__(self, input_channels: int, num_classes: int, strides, deep_supervision: bool,
                 kernel_sizes, features: Sequence[int], block: BlockFactory, downsample: str = "maxpool",
                 gate: Optional[GateFactory] = None):
        super().__init__()
        dim = spatial_dim(strides)
        if len(strides) < 2:
            raise ValueError("a U-Net needs at least two stages (len(strides) >= 2)")
        kernels = stage_kernels(kernel_sizes, len(strides), dim)
        self.encoder = Encoder(dim, input_channels, features, strides, kernels, block, downsample)
        self.decoder = Decoder(dim, features, strides, kernels, num_classes, block, deep_supervision, gate)
        self.apply(blocks.he_init)

    def forward(self, x: torch.Tensor):
        return self.decoder(self.encoder(x))
