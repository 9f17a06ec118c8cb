"""DeepLabV3+: a dilated residual encoder, atrous spatial pyramid pooling and a light decoder.

Chen, Zhu, Papandreou, Schroff, Adam, "Encoder-Decoder with Atrous Separable Convolution for Semantic Image
Segmentation", ECCV 2018, arXiv:1802.02611 (ASPP from DeepLabv3, arXiv:1706.05587).

* Encoder: ResNet-style stages of basic residual blocks (instance norm + LeakyReLU, as nnU-Net), one stage
  per entry of the plan's ``strides``. A stage downsamples by its stride only while the total stride on that
  axis stays <= ``output_stride``; beyond that the stride is replaced by dilation (the "atrous" trick), so
  the receptive field keeps growing while the feature map stays at 1/``output_stride`` of the input.
* ASPP: a 1x1 conv, three 3x3 atrous convs and an image-pooling branch, concatenated and projected.
  The paper's rates (6, 12, 18) are meant for a 33-px feature map (513 crop at output stride 16); unless
  ``aspp_rates`` is given they are scaled per axis to the feature map the plan's patch size produces,
  since rates >= the map size only sample padding.
* Decoder: ASPP output upsampled to a low-level encoder feature (the stage at total stride 4, or the
  closest finer one), concatenated with its 1x1 reduction, refined by two 3x3 convs, projected to classes
  and upsampled (bi/trilinear) to the input size.

Deep supervision: none (a single full-resolution output); with nnU-Net's flag on it returns ``[logits]``.
Differences from the paper: no pretrained backbone, basic instead of bottleneck blocks, regular instead of
depthwise-separable convs, instance norm (batch sizes of 2), and the image-pooling branch has no norm
(a 1-voxel map cannot be instance-normalised).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn as nn

from kt_nnunet.architectures import blocks
from kt_nnunet.architectures.spec import ArchitectureSpec, PlanGeometry
from kt_nnunet.architectures.unet_parts import spatial_dim, stage_features, stage_kernels

PAPER_ASPP_RATES = (6, 12, 18)
PAPER_FEATURE_SIZE = 33  # 513 px crop at output stride 16, the setting the paper's rates were tuned for


def per_axis(value, dim: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * dim
    if len(value) != dim:
        raise ValueError(f"expected an int or {dim} values, got {value}")
    return tuple(int(v) for v in value)


def conv_norm_act(dim: int, in_ch: int, out_ch: int, kernel=3, stride=1, dilation=1, act: bool = True):
    """conv -> instance norm -> (LeakyReLU); kernel, stride and dilation may differ per axis."""
    kernel, stride, dilation = per_axis(kernel, dim), per_axis(stride, dim), per_axis(dilation, dim)
    padding = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))
    layers = [blocks.conv_nd(dim)(in_ch, out_ch, kernel, stride=stride, padding=padding, dilation=dilation,
                                  bias=True),
              blocks.norm_nd(dim, out_ch)]
    if act:
        layers.append(nn.LeakyReLU(0.01, inplace=True))
    return nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    """Basic residual block (He et al. 2016): two convs, projection shortcut when the shape changes.

    ``first_dilation`` is for the first conv, the one that would have carried the stride: it still samples
    the finer grid of the previous stage, while the second conv samples the stage's own (dilated) grid.
    """

    def __init__(self, dim: int, in_ch: int, out_ch: int, kernel, stride, first_dilation, dilation):
        super().__init__()
        self.conv1 = conv_norm_act(dim, in_ch, out_ch, kernel, stride, first_dilation)
        self.conv2 = conv_norm_act(dim, out_ch, out_ch, kernel, 1, dilation, act=False)
        changes_shape = in_ch != out_ch or any(s != 1 for s in per_axis(stride, dim))
        self.shortcut = conv_norm_act(dim, in_ch, out_ch, 1, stride, act=False) if changes_shape else nn.Identity()
        self.act = nn.LeakyReLU(0.01, inplace=True)

    def forward(self, x):
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


def atrous_schedule(strides, output_stride) -> list[tuple[list[int], list[int], list[int]]]:
    """Per stage ``(stride used, dilation of its first conv, dilation of the rest)``.

    Per axis, a stride is applied while the total stride stays <= ``output_stride``; past that it is folded
    into the dilation (multiplied by the stride, i.e. doubled for the usual stride 2).
    """
    dim = spatial_dim(strides)
    limit, total, dilation = per_axis(output_stride, dim), [1] * dim, [1] * dim
    schedule = []
    for stage in strides:
        used, first = [], list(dilation)
        for axis, s in enumerate(stage):
            if total[axis] * s <= limit[axis]:
                total[axis] *= s
                used.append(int(s))
            else:
                dilation[axis] *= int(s)
                used.append(1)
        schedule.append((used, first, list(dilation)))
    return schedule


def used_total_stride(strides, output_stride) -> tuple[int, ...]:
    """Total downsampling per axis actually applied by the encoder (the patch must be divisible by it)."""
    used = [stage[0] for stage in atrous_schedule(strides, output_stride)]
    return tuple(math.prod(s[axis] for s in used) for axis in range(len(used[0])))


def stage_totals(strides) -> list[tuple[int, ...]]:
    totals, current = [], [1] * len(strides[0])
    for stage in strides:
        current = [c * s for c, s in zip(current, stage)]
        totals.append(tuple(current))
    return totals


def low_level_stage(used_strides, target: int = 4) -> int:
    """Stage whose total stride is closest to ``target`` (log scale, averaged over axes), among the stages
    finer than the encoder output; stage 0 when there is none (no downsampling at all)."""
    totals = stage_totals(used_strides)
    finer = [i for i, t in enumerate(totals) if math.prod(t) < math.prod(totals[-1])]
    if not finer:
        return 0
    distance = [sum(abs(math.log2(t) - math.log2(target)) for t in totals[i]) / len(totals[i]) for i in finer]
    # Ties go to the coarser stage: it is cheaper and the paper's choice (stride 4) sits between.
    return max((d, i) for d, i in zip(distance, finer) if d == min(distance))[1]


def aspp_dilations(aspp_rates, patch_size, total_stride, dim: int) -> list[tuple[int, ...]]:
    """Per-axis dilation of each atrous ASPP branch.

    Given ``aspp_rates`` (ints, or per-axis lists) are used as they are. Otherwise the paper's rates are
    scaled by (feature map size / 33) per axis, e.g. 256 px at output stride 16 -> 16 px -> rates (3, 6, 9).
    """
    if aspp_rates is not None:
        return [per_axis(r, dim) for r in aspp_rates]
    if patch_size is None:  # no geometry to scale to: the paper's rates
        return [per_axis(r, dim) for r in PAPER_ASPP_RATES]
    feature_size = [max(1, p // t) for p, t in zip(patch_size, total_stride)]
    return [tuple(max(1, round(r * f / PAPER_FEATURE_SIZE)) for f in feature_size) for r in PAPER_ASPP_RATES]


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1 conv, atrous 3x3 convs and image pooling, then a 1x1 projection."""

    def __init__(self, dim: int, in_ch: int, out_ch: int, dilations: Sequence[Sequence[int]]):
        super().__init__()
        self.branches = nn.ModuleList([conv_norm_act(dim, in_ch, out_ch, 1)] +
                                      [conv_norm_act(dim, in_ch, out_ch, 3, 1, d) for d in dilations])
        pool = {2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}[dim]
        self.image_pool = nn.Sequential(pool(1), blocks.conv_nd(dim)(in_ch, out_ch, 1, bias=True),
                                        nn.LeakyReLU(0.01, inplace=True))
        self.project = conv_norm_act(dim, out_ch * (len(dilations) + 2), out_ch, 1)

    def forward(self, x):
        pooled = self.image_pool(x).expand(-1, -1, *x.shape[2:])
        return self.project(torch.cat([branch(x) for branch in self.branches] + [pooled], dim=1))


class DeepLabDecoder(nn.Module):
    """Upsample ASPP output to the low-level feature, concatenate, refine, classify, upsample to the input.

    ``deep_supervision`` only exists for nnU-Net, which flips it; the network reads it to return a list.
    """

    def __init__(self, dim: int, aspp_ch: int, low_ch: int, low_reduced_ch: int, decoder_ch: int,
                 num_classes: int, kernel, deep_supervision: bool):
        super().__init__()
        self.deep_supervision = deep_supervision
        self.reduce_low_level = conv_norm_act(dim, low_ch, low_reduced_ch, 1)
        self.refine = nn.Sequential(conv_norm_act(dim, aspp_ch + low_reduced_ch, decoder_ch, kernel),
                                    conv_norm_act(dim, decoder_ch, decoder_ch, kernel))
        self.classifier = blocks.conv_nd(dim)(decoder_ch, num_classes, 1, bias=True)

    def forward(self, context: torch.Tensor, low_level: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        x = torch.cat([blocks.upsample_like(context, low_level), self.reduce_low_level(low_level)], dim=1)
        return blocks.upsample_like(self.classifier(self.refine(x)), image)


class ResidualEncoder(nn.Module):
    """Stem conv, then one stage of ``blocks_per_stage`` residual blocks per plan stride; returns every
    stage's output. ``schedule`` gives each stage's (stride, first dilation, dilation)."""

    def __init__(self, dim: int, input_channels: int, features: Sequence[int], kernels, schedule,
                 blocks_per_stage: int):
        super().__init__()
        if blocks_per_stage < 1:
            raise ValueError(f"blocks_per_stage must be >= 1, got {blocks_per_stage}")
        self.stem = conv_norm_act(dim, input_channels, features[0], kernels[0])
        self.stages = nn.ModuleList()
        in_ch = features[0]
        for out_ch, kernel, (stride, first_dilation, dilation) in zip(features, kernels, schedule):
            stage = [ResidualBlock(dim, in_ch, out_ch, kernel, stride, first_dilation, dilation)]
            stage += [ResidualBlock(dim, out_ch, out_ch, kernel, 1, dilation, dilation)
                      for _ in range(blocks_per_stage - 1)]
            self.stages.append(nn.Sequential(*stage))
            in_ch = out_ch

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x, outputs = self.stem(x), []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+ on nnU-Net plan geometry; encoder stage ``i`` has ``min(max_features, base * 2**i)`` channels.

    ``aspp_features`` / ``decoder_features`` default to ``8 * base_features`` (the paper's 256 at base 32),
    ``low_level_features`` to ``1.5 * base_features`` (the paper's 48).
    """

    def __init__(self, input_channels: int, num_classes: int, strides, deep_supervision: bool = False,
                 patch_size=None, kernel_sizes=None, base_features: int = 32, max_features: Optional[int] = None,
                 blocks_per_stage: int = 2, output_stride=16, aspp_rates=None, aspp_features: Optional[int] = None,
                 low_level_features: Optional[int] = None, decoder_features: Optional[int] = None, **kwargs):
        super().__init__()
        dim = spatial_dim(strides)
        features = stage_features(len(strides), base_features, max_features, dim)
        kernels = stage_kernels(kernel_sizes, len(strides), dim)
        schedule = atrous_schedule(strides, output_stride)
        total = used_total_stride(strides, output_stride)
        self.low_level_stage = low_level_stage([used for used, _, _ in schedule])
        aspp_ch = aspp_features or 8 * base_features
        self.encoder = ResidualEncoder(dim, input_channels, features, kernels, schedule, blocks_per_stage)
        self.aspp = ASPP(dim, features[-1], aspp_ch, aspp_dilations(aspp_rates, patch_size, total, dim))
        self.decoder = DeepLabDecoder(dim, aspp_ch, features[self.low_level_stage],
                                      low_level_features or max(1, 3 * base_features // 2),
                                      decoder_features or 8 * base_features, num_classes,
                                      kernels[self.low_level_stage], deep_supervision)
        self.apply(blocks.he_init)

    def forward(self, x: torch.Tensor):
        features = self.encoder(x)
        logits = self.decoder(self.aspp(features[-1]), features[self.low_level_stage], x)
        return [logits] if self.decoder.deep_supervision else logits


def deeplab_divisibility(geometry: PlanGeometry, arch_kwargs: dict) -> tuple[int, ...]:
    """Only the strides the encoder applies count; those replaced by dilation do not shrink the map."""
    return used_total_stride(geometry.strides, arch_kwargs.get("output_stride", 16))


SPEC = ArchitectureSpec(
    name="deeplabv3plus",
    network_class=DeepLabV3Plus,
    dims=(2, 3),
    deep_supervision=False,
    description="DeepLabV3+ (Chen 2018): dilated residual encoder (output stride 16), ASPP, low-level skip decoder",
    default_kwargs={"base_features": 32, "blocks_per_stage": 2, "output_stride": 16},
    tiny_kwargs={"base_features": 4, "blocks_per_stage": 1},
    divisibility=deeplab_divisibility,
)
