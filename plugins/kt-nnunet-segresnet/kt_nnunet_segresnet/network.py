"""SegResNet (Myronenko 2018) without the VAE branch, following nnU-Net's network contract.

Written against plain torch only, as a third-party package would be: the encoder has
``blocks_down[i]`` pre-activation residual blocks (GroupNorm, ReLU) per stage and downsamples with
strided 3x3 convs following nnU-Net's ``strides``; the decoder upsamples with a 1x1 conv plus
interpolation, adds the skip, and applies one residual block per stage.
"""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F


def _conv(dim):
    return nn.Conv2d if dim == 2 else nn.Conv3d


def _groups(channels: int) -> int:
    return min(8, channels)


class ResBlock(nn.Module):
    def __init__(self, dim: int, channels: int):
        super().__init__()
        conv = _conv(dim)
        self.norm1 = nn.GroupNorm(_groups(channels), channels)
        self.conv1 = conv(channels, channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(_groups(channels), channels)
        self.conv2 = conv(channels, channels, 3, padding=1)

    def forward(self, x):
        y = self.conv1(F.relu(self.norm1(x)))
        y = self.conv2(F.relu(self.norm2(y)))
        return x + y


class SegResNetDecoder(nn.Module):
    def __init__(self, dim: int, features: list[int], num_classes: int):
        super().__init__()
        self.deep_supervision = False
        conv = _conv(dim)
        # One up-step per encoder stage except the deepest, coarse to fine.
        self.reduce = nn.ModuleList(conv(features[i + 1], features[i], 1) for i in reversed(range(len(features) - 1)))
        self.blocks = nn.ModuleList(ResBlock(dim, features[i]) for i in reversed(range(len(features) - 1)))
        self.heads = nn.ModuleList(conv(features[i], num_classes, 1) for i in reversed(range(len(features) - 1)))

    def forward(self, skips):
        x, outputs = skips[-1], []
        for reduce, block, head, skip in zip(self.reduce, self.blocks, self.heads, reversed(skips[:-1])):
            x = F.interpolate(reduce(x), size=skip.shape[2:], mode="nearest") + skip
            x = block(x)
            if self.deep_supervision:
                outputs.append(head(x))
        if not self.deep_supervision:
            return self.heads[-1](x)
        return outputs[::-1]


class SegResNet(nn.Module):
    def __init__(self, input_channels: int, num_classes: int, strides, deep_supervision: bool = False,
                 base_features: int = 16, max_features: int = 256, blocks_down=(1, 2, 2, 4), **kwargs):
        super().__init__()
        dim = len(strides[0])
        n = len(strides)
        features = [min(max_features, base_features * 2 ** i) for i in range(n)]
        blocks = [blocks_down[min(i, len(blocks_down) - 1)] for i in range(n)]
        conv = _conv(dim)
        self.stem = conv(input_channels, features[0], 3, stride=strides[0], padding=1)
        self.down = nn.ModuleList(
            nn.Identity() if i == 0 else conv(features[i - 1], features[i], 3, stride=strides[i], padding=1)
            for i in range(n))
        self.stages = nn.ModuleList(nn.Sequential(*[ResBlock(dim, features[i]) for _ in range(blocks[i])])
                                    for i in range(n))
        self.decoder = SegResNetDecoder(dim, features, num_classes)
        self.decoder.deep_supervision = deep_supervision

    def forward(self, x):
        x = self.stem(x)
        skips = []
        for down, stage in zip(self.down, self.stages):
            x = stage(down(x))
            skips.append(x)
        return self.decoder(skips)
