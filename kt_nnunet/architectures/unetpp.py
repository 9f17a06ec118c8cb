"""UNet++: a U-Net whose encoder and decoder are joined by nested, dense skip pathways.

Zhou, Rahman Siddiquee, Tajbakhsh, Liang, "UNet++: A Nested U-Net Architecture for Medical Image
Segmentation", DLMIA 2018, arXiv:1807.10165. Node X^{i,j} (row i = resolution, column j) is

    X^{i,0} = encoder stage i,    X^{i,j} = H([X^{i,0}, ..., X^{i,j-1}, Up(X^{i+1,j-1})])  for j >= 1,

with H a double conv and Up a transposed conv (kernel = stride = the plan's stride, as in the authors'
code). Deep supervision is nnU-Net style rather than the paper's (which puts all heads at full
resolution): one head per decoder resolution on the last node of each row, X^{i, L-i}, so the outputs
match nnU-Net's deep-supervision targets; X^{0,L} gives the full-resolution logits.

Memory: the nested nodes and their wide concatenations need about 2.5-4x the training activations of a
U-Net of the same widths, too much for patches that nnU-Net sized for its own U-Net. So by default
(``checkpoint_nodes=True``) each node is recomputed in the backward pass (activation checkpointing) and
only node outputs are kept: about 1.4x a U-Net's peak, for ~25% more time; results are identical.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn

from torch.utils.checkpoint import checkpoint

from kt_nnunet.architectures import blocks
from kt_nnunet.architectures.spec import ArchitectureSpec
from kt_nnunet.architectures.unet_parts import (Encoder, double_conv, spatial_dim, stage_features,
                                                stage_kernels)


class NestedDecoder(nn.Module):
    """All nodes X^{i,j}, j >= 1, plus the heads; ``deep_supervision`` is read at forward time."""

    def __init__(self, dim: int, features: Sequence[int], strides, kernels, num_classes: int,
                 deep_supervision: bool, checkpoint_nodes: bool = True):
        super().__init__()
        self.deep_supervision = deep_supervision
        self.checkpoint_nodes = checkpoint_nodes
        depth = len(features) - 1  # L: the bottleneck is X^{L,0}
        # rows[i][j-1] is X^{i,j}; ups[i][j-1] upsamples X^{i+1,j-1} for it. Rows shrink as i grows.
        self.rows, self.ups = nn.ModuleList(), nn.ModuleList()
        for i in range(depth):
            stride = tuple(strides[i + 1])
            self.ups.append(nn.ModuleList(
                blocks.transposed_conv_nd(dim)(features[i + 1], features[i], stride, stride=stride, bias=True)
                for _ in range(depth - i)))
            # X^{i,j} concatenates j same-row predecessors and one upsampled map, all features[i] wide.
            self.rows.append(nn.ModuleList(
                double_conv(dim, (j + 1) * features[i], features[i], [1] * dim, kernels[i])
                for j in range(1, depth - i + 1)))
        self.heads = blocks.DeepSupervisionHeads(dim, list(features[-2::-1]), num_classes)

    def forward(self, skips: Sequence[torch.Tensor]):
        depth = len(skips) - 1
        grid = [[s] for s in skips]  # grid[i][j] = X^{i,j}
        for j in range(1, depth + 1):  # column by column, so every input already exists
            for i in range(depth - j + 1):
                node = (self.ups[i][j - 1], self.rows[i][j - 1])
                if self.checkpoint_nodes and torch.is_grad_enabled():
                    x = checkpoint(self._node, *node, grid[i + 1][j - 1], *grid[i], use_reentrant=False)
                else:
                    x = self._node(*node, grid[i + 1][j - 1], *grid[i])
                grid[i].append(x)
        last_of_each_row = [grid[i][depth - i] for i in range(depth - 1, -1, -1)]  # coarse to fine
        return self.heads.select(last_of_each_row, self.deep_supervision)

    @staticmethod
    def _node(up: nn.Module, conv: nn.Module, coarser: torch.Tensor, *same_row: torch.Tensor) -> torch.Tensor:
        """X^{i,j} from X^{i+1,j-1} (``coarser``) and X^{i,0..j-1} (``same_row``)."""
        return conv(torch.cat([*same_row, up(coarser)], dim=1))


class UNetPlusPlus(nn.Module):
    """UNet++ on nnU-Net plan geometry; stage ``i`` has ``min(max_features, base_features * 2**i)`` channels."""

    def __init__(self, input_channels: int, num_classes: int, strides, deep_supervision: bool = False,
                 patch_size=None, kernel_sizes=None, base_features: int = 32,
                 max_features: Optional[int] = None, downsample: str = "maxpool", checkpoint_nodes: bool = True,
                 **kwargs):
        super().__init__()
        dim = spatial_dim(strides)
        if len(strides) < 2:
            raise ValueError("UNet++ needs at least two stages (len(strides) >= 2)")
        features = stage_features(len(strides), base_features, max_features, dim)
        kernels = stage_kernels(kernel_sizes, len(strides), dim)
        self.encoder = Encoder(dim, input_channels, features, strides, kernels, double_conv, downsample)
        self.decoder = NestedDecoder(dim, features, strides, kernels, num_classes, deep_supervision,
                                     checkpoint_nodes)
        self.apply(blocks.he_init)

    def forward(self, x: torch.Tensor):
        return self.decoder(self.encoder(x))


SPEC = ArchitectureSpec(
    name="unetpp",
    network_class=UNetPlusPlus,
    dims=(2, 3),
    deep_supervision=True,
    description="UNet++ (Zhou 2018): nested dense skip pathways, one deep-supervision head per resolution",
    default_kwargs={"base_features": 32, "downsample": "maxpool", "checkpoint_nodes": True},
    tiny_kwargs={"base_features": 4},
)
