"""TransUNet: a CNN encoder whose lowest-resolution features go through a Vision Transformer, then a U-Net
style cascaded upsampler.

Chen, Lu, Yu, Luo, Adeli, Wang, Lu, Yuille, Zhou, "TransUNet: Transformers Make Strong Encoders for Medical
Image Segmentation", arXiv:2102.04306 (2021); ViT from Dosovitskiy et al., arXiv:2010.11929.

* CNN encoder: a stem conv and one stage of residual basic blocks per entry of the plan's ``strides``
  (the paper uses a ResNet-50; instance norm + LeakyReLU here, as nnU-Net), giving the skips.
* ViT bottleneck: the lowest-resolution CNN map is projected by a 1x1 conv ("patch size 1" embedding, as
  in the paper's hybrid model) to ``hidden_size`` tokens, one per voxel (2D or 3D), plus a learned position
  embedding sized from ``patch_size`` / total stride. ``num_layers`` pre-norm blocks of multi-head
  self-attention and a GELU MLP follow; the tokens are reshaped back into a feature map.
* Cascaded upsampler (CUP): a 3x3 conv from ``hidden_size`` to the deepest CNN width, then per stage
  (bi/tri)linear upsampling to the skip's grid, concatenation and two 3x3 conv-norm-act units.

Deep supervision: one 1x1 head on every CUP stage (full resolution first, ``len(strides) - 1`` outputs),
nnU-Net style; the paper has a single head. With nnU-Net's default 2D plan (7 stages at 256 px) the ViT
sees a 4x4 map (16 tokens); the paper's ViT sees 1/16 of the input (14x14 tokens at 224 px).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from kt_nnunet.architectures import blocks
from kt_nnunet.architectures.deeplabv3plus import ResidualEncoder, conv_norm_act
from kt_nnunet.architectures.spec import ArchitectureSpec
from kt_nnunet.architectures.unet_parts import spatial_dim, stage_features, stage_kernels


class TransformerBlock(nn.Module):
    """Pre-norm ViT block: x + MSA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_dim: int, dropout: float):
        super().__init__()
        self.attention_norm = nn.LayerNorm(hidden_size, eps=1e-6)
        # The paper's attention dropout is 0; its 0.1 dropout sits in the MLP and on the embeddings.
        self.attention = nn.MultiheadAttention(hidden_size, num_heads, batch_first=True)
        self.mlp_norm = nn.LayerNorm(hidden_size, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(hidden_size, mlp_dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(mlp_dim, hidden_size), nn.Dropout(dropout))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        normed = self.attention_norm(tokens)
        tokens = tokens + self.attention(normed, normed, normed, need_weights=False)[0]
        return tokens + self.mlp(self.mlp_norm(tokens))


class ViTBottleneck(nn.Module):
    """Feature map -> tokens (1x1 conv) + learned positions -> transformer blocks -> feature map."""

    def __init__(self, dim: int, in_ch: int, grid: Sequence[int], hidden_size: int, num_layers: int,
                 num_heads: int, mlp_dim: int, dropout: float):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size ({hidden_size}) must be divisible by num_heads ({num_heads})")
        self.grid = tuple(int(g) for g in grid)
        self.embed = blocks.conv_nd(dim)(in_ch, hidden_size, 1, bias=True)
        self.position = nn.Parameter(torch.zeros(1, math.prod(self.grid), hidden_size))
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(TransformerBlock(hidden_size, num_heads, mlp_dim, dropout)
                                    for _ in range(num_layers))
        self.norm = nn.LayerNorm(hidden_size, eps=1e-6)

    def positions_for(self, grid: Sequence[int]) -> torch.Tensor:
        """The learned embedding, resampled when a caller feeds an input other than the plan's patch size."""
        if tuple(grid) == self.grid:
            return self.position
        mode = {2: "bilinear", 3: "trilinear"}[len(grid)]
        table = self.position.transpose(1, 2).reshape(1, -1, *self.grid)
        return F.interpolate(table, size=tuple(grid), mode=mode, align_corners=False).flatten(2).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        embedded = self.embed(x)
        batch, channels, grid = embedded.shape[0], embedded.shape[1], embedded.shape[2:]
        tokens = self.dropout(embedded.flatten(2).transpose(1, 2) + self.positions_for(grid))
        for layer in self.layers:
            tokens = layer(tokens)
        return self.norm(tokens).transpose(1, 2).reshape(batch, channels, *grid)


class CascadedUpsampler(nn.Module):
    """The CUP decoder; ``deep_supervision`` is read at every forward pass (nnU-Net flips it)."""

    def __init__(self, dim: int, hidden_size: int, features: Sequence[int], kernels, num_classes: int,
                 deep_supervision: bool):
        super().__init__()
        self.deep_supervision = deep_supervision
        self.from_tokens = conv_norm_act(dim, hidden_size, features[-1], kernels[-1])  # the paper's conv_more
        self.stages = nn.ModuleList(
            nn.Sequential(conv_norm_act(dim, features[i + 1] + features[i], features[i], kernels[i]),
                          conv_norm_act(dim, features[i], features[i], kernels[i]))
            for i in range(len(features) - 2, -1, -1))
        self.heads = blocks.DeepSupervisionHeads(dim, list(features[-2::-1]), num_classes)

    def forward(self, bottleneck: torch.Tensor, skips: Sequence[torch.Tensor]):
        x, outputs = self.from_tokens(bottleneck), []
        for stage, skip in zip(self.stages, reversed(skips[:-1])):
            x = stage(torch.cat([blocks.upsample_like(x, skip), skip], dim=1))
            outputs.append(x)
        return self.heads.select(outputs, self.deep_supervision)


def init_transformer(module: nn.Module) -> None:
    """ViT init (as the TransUNet code): Xavier-uniform linear weights, near-zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.normal_(module.bias, std=1e-6)


class TransUNet(nn.Module):
    """TransUNet on nnU-Net plan geometry; CNN stage ``i`` has ``min(max_features, base * 2**i)`` channels.

    Needs ``patch_size`` (in nnU-Net's arch_kwargs) to size the position embedding.
    """

    def __init__(self, input_channels: int, num_classes: int, strides, deep_supervision: bool = False,
                 patch_size=None, kernel_sizes=None, base_features: int = 32, max_features: Optional[int] = None,
                 blocks_per_stage: int = 1, hidden_size: int = 768, num_layers: int = 12, num_heads: int = 12,
                 mlp_dim: int = 3072, dropout: float = 0.1, **kwargs):
        super().__init__()
        dim = spatial_dim(strides)
        if len(strides) < 2:
            raise ValueError("TransUNet needs at least two stages (len(strides) >= 2) for its skips")
        if patch_size is None:
            raise ValueError("TransUNet needs patch_size (nnU-Net's patch size) to size its learned position "
                             "embedding; pass patch_size=[...] in arch_kwargs")
        if len(patch_size) != dim:
            raise ValueError(f"patch_size {list(patch_size)} does not match {dim}D strides")
        total = [math.prod(stage[axis] for stage in strides) for axis in range(dim)]
        if any(p % t for p, t in zip(patch_size, total)):
            raise ValueError(f"patch_size {list(patch_size)} must be divisible by the total stride {total}")
        features = stage_features(len(strides), base_features, max_features, dim)
        kernels = stage_kernels(kernel_sizes, len(strides), dim)
        no_dilation = [1] * dim
        schedule = [([int(s) for s in stride], no_dilation, no_dilation) for stride in strides]
        self.encoder = ResidualEncoder(dim, input_channels, features, kernels, schedule, blocks_per_stage)
        self.transformer = ViTBottleneck(dim, features[-1], [p // t for p, t in zip(patch_size, total)],
                                         hidden_size, num_layers, num_heads, mlp_dim, dropout)
        self.decoder = CascadedUpsampler(dim, hidden_size, features, kernels, num_classes, deep_supervision)
        self.apply(blocks.he_init)
        self.apply(init_transformer)
        nn.init.trunc_normal_(self.transformer.position, std=0.02)

    def forward(self, x: torch.Tensor):
        skips = self.encoder(x)
        return self.decoder(self.transformer(skips[-1]), skips)


SPEC = ArchitectureSpec(
    name="transunet",
    network_class=TransUNet,
    dims=(2, 3),
    deep_supervision=True,
    description="TransUNet (Chen 2021): residual CNN encoder, ViT on the lowest-resolution map, cascaded upsampler",
    default_kwargs={"base_features": 32, "blocks_per_stage": 1, "hidden_size": 768, "num_layers": 12,
                    "num_heads": 12, "mlp_dim": 3072, "dropout": 0.1},
    tiny_kwargs={"base_features": 4, "hidden_size": 16, "num_layers": 1, "num_heads": 2, "mlp_dim": 32,
                 "dropout": 0.0},
)
