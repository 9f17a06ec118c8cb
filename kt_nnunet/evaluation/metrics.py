"""HD95 with voxel spacing, and the mean/sd helpers the results use. numpy + scipy only.

HD95 (the definition of medpy's ``hd95``, which nnU-Net v1's evaluator used): the 95th percentile of the
pooled symmetric surface distances. Surfaces are the mask voxels removed by one binary erosion with the
face-connected structuring element (voxels on the image border count as surface); distances are
Euclidean in millimetres (``distance_transform_edt(..., sampling=spacing)``). Axes of length 1 (a 2D image
stored as a one-slice volume) are dropped first, with their spacing, so such images are measured in 2D.

Empty masks (``status``):

* ``both_empty``: the class is absent from reference and prediction; HD95 is NaN (like nnU-Net's Dice,
  which is NaN when TP+FP+FN=0) and left out of means.
* ``prediction_empty`` / ``reference_empty``: the distance is undefined; HD95 is the **penalty**, the
  length of the image diagonal in mm (the largest distance two voxels of the image can have; singleton
  axes are dropped first, so a 64x64 slice of 1 mm gets 90.5 mm). A missed
  or hallucinated structure thus scores as badly as possible instead of silently dropping out of the
  mean; results also count these cases (``hd95_n_penalised``).
* ``ok``: both masks are non-empty.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

HD95_STATUSES = ("ok", "both_empty", "prediction_empty", "reference_empty")


def _squeeze(mask: np.ndarray, spacing: Sequence[float]) -> tuple[np.ndarray, tuple[float, ...]]:
    keep = [axis for axis, size in enumerate(mask.shape) if size > 1] or [mask.ndim - 1]
    return mask.reshape([mask.shape[a] for a in keep]), tuple(float(spacing[a]) for a in keep)


def surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` that one face-connected erosion removes (image-border voxels included)."""
    from scipy.ndimage import binary_erosion, generate_binary_structure

    structure = generate_binary_structure(mask.ndim, 1)
    return mask & ~binary_erosion(mask, structure=structure, iterations=1)


def diagonal_mm(shape: Sequence[int], spacing: Sequence[float]) -> float:
    return float(math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing))))


def _crop_to_union(prediction: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Exact: every surface voxel lies inside the box, and a one-voxel margin keeps erosion unchanged.
    coords = np.argwhere(prediction | reference)
    low = np.maximum(coords.min(0) - 1, 0)
    high = np.minimum(coords.max(0) + 2, prediction.shape)
    box = tuple(slice(a, b) for a, b in zip(low, high))
    return prediction[box], reference[box]


def surface_distances(prediction: np.ndarray, reference: np.ndarray,
                      spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each prediction-surface voxel to the reference surface, and vice versa."""
    from scipy.ndimage import distance_transform_edt

    surface_p, surface_r = surface(prediction), surface(reference)
    to_reference = distance_transform_edt(~surface_r, sampling=spacing)[surface_p]
    to_prediction = distance_transform_edt(~surface_p, sampling=spacing)[surface_r]
    return to_reference, to_prediction


def hd95(prediction: np.ndarray, reference: np.ndarray, spacing: Optional[Sequence[float]] = None,
         penalty: Optional[float] = None) -> tuple[float, str]:
    """``(HD95 in mm, status)`` of two binary masks of equal shape; see the module docstring for empty masks.

    ``spacing`` is per array axis (default 1); ``penalty`` replaces the image diagonal for one-sided empties.
    """
    prediction = np.asarray(prediction, dtype=bool)
    reference = np.asarray(reference, dtype=bool)
    if prediction.shape != reference.shape:
        raise ValueError(f"prediction shape {prediction.shape} != reference shape {reference.shape}")
    spacing = tuple(spacing) if spacing is not None else (1.0,) * prediction.ndim
    if len(spacing) != prediction.ndim:
        raise ValueError(f"spacing {spacing} has {len(spacing)} entries for a {prediction.ndim}D mask")
    full_spacing = spacing
    prediction, spacing = _squeeze(prediction, full_spacing)
    reference, _ = _squeeze(reference, full_spacing)
    has_p, has_r = bool(prediction.any()), bool(reference.any())
    if not has_p and not has_r:
        return math.nan, "both_empty"
    if not has_p or not has_r:
        value = diagonal_mm(prediction.shape, spacing) if penalty is None else float(penalty)
        return value, "prediction_empty" if not has_p else "reference_empty"
    prediction, reference = _crop_to_union(prediction, reference)
    to_reference, to_prediction = surface_distances(prediction, reference, spacing)
    return float(np.percentile(np.concatenate([to_reference, to_prediction]), 95)), "ok"


def finite(values) -> list[float]:
    return [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]


def mean_sd(values) -> tuple[Optional[float], Optional[float], int]:
    """``(mean, sample sd, n)`` over the non-missing values; ``None`` where undefined (sd needs n >= 2)."""
    kept = finite(values)
    if not kept:
        return None, None, 0
    mean = float(np.mean(kept))
    sd = float(np.std(kept, ddof=1)) if len(kept) > 1 else None
    return mean, sd, len(kept)
