"""Procedural label maps: nested, smoothly deformed ellipses (2D) or ellipsoids (3D).

Class 1 is a large "organ" near the centre; classes 2..K-1 are smaller structures inside it, drawn
in order so that each later class lies on top. Sizes are in millimetres, so the pixel ``spacing``
changes how many pixels an object covers (a resolution shift), not its anatomy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class ShapeConfig:
    """Geometry of generated cases: grid, spacing and shape statistics.

    ``shape``/``spacing`` are in array order, ``(y, x)`` or ``(z, y, x)``. ``radius_mm`` is the mean radius
    of class 1; inner classes get ``inner_scale`` times the radius of the class before. ``size_std`` is
    the relative spread of radii between cases, ``elongation`` the spread of axis ratios, ``irregularity``
    the amplitude of a smooth random deformation (as a fraction of the radius), ``objects_per_class`` how
    many inner objects each inner class gets, and ``min_pixels`` the smallest visible area kept per class.
    """

    shape: tuple = (64, 64)
    spacing: Optional[tuple] = None  # None: 1 mm per axis
    num_classes: int = 3  # including background
    radius_mm: float = 18.0
    size_std: float = 0.15
    elongation: float = 0.3
    irregularity: float = 0.15
    inner_scale: float = 0.45
    objects_per_class: int = 1
    min_pixels: int = 4
    center_jitter: float = 0.1  # fraction of the field of view

    @property
    def dim(self) -> int:
        return len(self.shape)

    def spacing_or_default(self) -> tuple:
        return tuple(float(s) for s in (self.spacing or (1.0,) * self.dim))

    def check(self) -> None:
        if self.dim not in (2, 3):
            raise ValueError(f"shape {self.shape} must be 2D or 3D")
        if len(self.spacing_or_default()) != self.dim:
            raise ValueError(f"spacing {self.spacing} must have {self.dim} values, like shape {self.shape}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes={self.num_classes}: need background plus at least one class")
        if self.num_classes > 256:  # labels are stored as uint8
            raise ValueError(f"num_classes={self.num_classes}: at most 256 classes (incl. background)")
        if not all(0 < s < float("inf") for s in self.spacing_or_default()):
            raise ValueError(f"spacing {self.spacing}: every value must be a positive number of mm")
        if min(self.shape) < 2:
            raise ValueError(f"shape {self.shape}: every axis needs at least 2 pixels")


def _random_rotation(dim: int, rng: np.random.Generator) -> np.ndarray:
    if dim == 2:
        angle = rng.uniform(0, np.pi)
        return np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def _smooth_field(shape: tuple, rng: np.random.Generator, coarse: int = 4) -> np.ndarray:
    """A smooth random field in [-1, 1] with a few bumps across the field of view."""
    coarse_shape = tuple(min(coarse, s) for s in shape)
    noise = rng.uniform(-1, 1, size=coarse_shape)
    zoom = [s / c for s, c in zip(shape, coarse_shape)]
    return ndimage.zoom(noise, zoom, order=3, mode="reflect", grid_mode=True)[tuple(slice(0, s) for s in shape)]


def _ellipsoid(coords_mm: np.ndarray, center: np.ndarray, radii: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    local = np.tensordot(rotation.T, coords_mm - center.reshape((-1,) + (1,) * (coords_mm.ndim - 1)), axes=1)
    return sum((local[i] / radii[i]) ** 2 for i in range(len(radii))) <= 1.0


def make_label_map(config: ShapeConfig, rng: np.random.Generator) -> np.ndarray:
    """One label map (uint8, ``config.shape``) drawn from ``rng``; every class is present."""
    config.check()
    dim, shape = config.dim, tuple(config.shape)
    spacing = np.asarray(config.spacing_or_default())
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij"))
    coords = grid * spacing.reshape((-1,) + (1,) * dim)
    fov = np.asarray(shape) * spacing
    if config.irregularity > 0:  # one smooth warp per case, shared by all classes so they stay nested
        warp = np.stack([_smooth_field(shape, rng) for _ in range(dim)])
        coords = coords + warp * (config.irregularity * config.radius_mm)
    labels = np.zeros(shape, np.uint8)

    radius = config.radius_mm * max(0.3, 1 + config.size_std * rng.standard_normal())
    radius = min(radius, 0.45 * float(fov.min()))
    center = fov / 2 + rng.uniform(-1, 1, dim) * config.center_jitter * fov
    outer = _axes(radius, dim, config.elongation, rng)
    rotation = _random_rotation(dim, rng)
    labels[_ellipsoid(coords, center, outer, rotation)] = 1
    parent = (center, outer, rotation)

    for cls in range(2, config.num_classes):
        radius *= config.inner_scale * max(0.5, 1 + config.size_std * rng.standard_normal())
        for _ in range(max(1, config.objects_per_class)):
            p_center, p_radii, p_rot = parent
            # a random point well inside the parent ellipsoid
            direction = rng.normal(size=dim)
            direction /= np.linalg.norm(direction) + 1e-8
            offset = p_rot @ (direction * p_radii * rng.uniform(0, 0.5))
            obj_center = p_center + offset
            radii = _axes(radius, dim, config.elongation, rng)
            labels[_ellipsoid(coords, obj_center, radii, _random_rotation(dim, rng))] = cls
        _ensure_visible(labels, cls, config.min_pixels, coords, parent, max(radius, 2 * float(spacing.max())))
    return labels


def _axes(radius: float, dim: int, elongation: float, rng: np.random.Generator) -> np.ndarray:
    return radius * np.exp(rng.uniform(-elongation, elongation, dim))


def _ensure_visible(labels: np.ndarray, cls: int, min_pixels: int, coords: np.ndarray, parent, radius: float):
    """Tiny or fully covered classes get a small disc at the parent's centre, so every class appears."""
    if (labels == cls).sum() >= min_pixels:
        return
    center, _, rotation = parent
    radii = np.full(labels.ndim, radius)
    while True:
        disc = _ellipsoid(coords, center, radii, rotation)
        if disc.sum() >= min_pixels or radii[0] > 1e4:
            break
        radii = radii * 1.5
    labels[disc] = cls
