"""The fusion methods' names and the settings of a fusion, importable without torch (the CLI's ``--fusion``
choices; the experiment config, labelling and transfer all take one ``FusionSettings``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

FUSION_METHODS = ("mean", "weighted", "majority", "staple", "reliability")


@dataclass(frozen=True)
class FusionSettings:
    """How several teachers' outputs become one label: the ``method``, per-teacher ``weights`` (``weighted``
    only), ``min_confidence`` (voxels fused below it get nnU-Net's ignore label) and test-time mirroring (``tta``)."""

    method: str = "mean"
    weights: Optional[tuple] = None
    min_confidence: Optional[float] = None
    tta: bool = True

    def __post_init__(self):
        if self.weights is not None and not isinstance(self.weights, tuple):
            object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
