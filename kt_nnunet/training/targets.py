"""Teacher targets at every deep-supervision scale, made as nnU-Net makes its ground-truth targets."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def downsample_labels(labels: torch.Tensor, shapes: Sequence[Sequence[int]], dtype: torch.dtype) -> list:
    """Deep-supervision label targets, exactly as nnU-Net's ``DownsampleSegForDSTransform`` makes them."""
    out, as_float = [], None
    for shape in shapes:
        if tuple(shape) == tuple(labels.shape[2:]):
            out.append(labels.to(dtype))
        else:
            as_float = labels.float() if as_float is None else as_float
            out.append(F.interpolate(as_float, size=tuple(shape), mode="nearest-exact").to(dtype))
    return out


def downsample_probabilities(probabilities: torch.Tensor, shapes: Sequence[Sequence[int]]) -> list:
    """Soft targets per scale: area averaging keeps them probability distributions."""
    return [probabilities if tuple(s) == tuple(probabilities.shape[2:])
            else F.interpolate(probabilities, size=tuple(s), mode="area") for s in shapes]
