"""Appearance of a domain (a "scanner" or "site"): how labels become intensities, and what degrades them.

``render`` turns a label map into a clean image (per-class intensity plus smooth texture);
``apply_appearance`` then applies, in the order a real acquisition would, an intensity mapping
(contrast, gamma, inversion), a multiplicative bias field, multiplicative speckle, blur and additive
noise. ``apply_appearance`` also works on real images scaled to [0, 1] (the demo uses it to shift the
MNI152 template's appearance for the transferal and test roles).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class DomainConfig:
    """Intensity model of one domain. All intensities are on a [0, 1] scale before ``intensity_scale``.

    - ``class_intensities``: mean intensity per class, background first (None: evenly spaced);
    - ``intensity_jitter``: per-case random shift of each class mean (patient variability);
    - ``texture``: amplitude of smooth within-class texture;
    - ``contrast``: scales deviations from mid-grey (0.5); ``gamma``: ``i ** gamma``;
      ``invert``: ``1 - i`` (a T1-to-T2-like swap of which tissue is bright);
    - ``bias_field``: amplitude of a smooth multiplicative field ``exp(b * field)`` (MR coil shading);
    - ``speckle``: std of unit-mean multiplicative gamma noise (ultrasound-like), applied before blur
      so that it comes out spatially correlated as real speckle does;
    - ``blur_mm``: Gaussian point-spread sigma in millimetres;
    - ``noise``: std of additive Gaussian noise;
    - ``intensity_scale``/``intensity_offset``: the stored value is ``i * scale + offset`` (e.g. 1000 and
      -1000 for CT-like numbers). PNG output clips ``i`` to [0, 1] and stores ``round(255 * i)``.
    """

    class_intensities: Optional[tuple] = None
    intensity_jitter: float = 0.03
    texture: float = 0.03
    contrast: float = 1.0
    gamma: float = 1.0
    invert: bool = False
    bias_field: float = 0.0
    speckle: float = 0.0
    blur_mm: float = 0.0
    noise: float = 0.02
    intensity_scale: float = 1.0
    intensity_offset: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)

    def class_means(self, num_classes: int) -> np.ndarray:
        if self.class_intensities is not None:
            means = np.asarray(self.class_intensities, dtype=np.float32)
            if len(means) != num_classes:
                raise ValueError(f"class_intensities has {len(means)} values; need one per class "
                                 f"including background ({num_classes})")
            return means
        return np.concatenate([[0.05], np.linspace(0.35, 0.9, num_classes - 1)]).astype(np.float32)


def _smooth_noise(shape: Sequence[int], sigma_px: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """Unit-std smooth Gaussian noise."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_px, mode="reflect")
    return field / (field.std() + 1e-8)


def _low_frequency_field(shape: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """A smooth field in about [-1, 1]: a random low-order polynomial over normalised coordinates."""
    axes = np.meshgrid(*[np.linspace(-1, 1, s, dtype=np.float32) for s in shape], indexing="ij")
    field = np.zeros(shape, np.float32)
    for axis in axes:
        field += rng.uniform(-1, 1) * axis + rng.uniform(-0.5, 0.5) * (axis ** 2 - 1 / 3)
    if len(axes) > 1:
        field += rng.uniform(-0.5, 0.5) * axes[0] * axes[1]
    return field / max(1.0, float(np.abs(field).max()))


def render(labels: np.ndarray, num_classes: int, config: DomainConfig, rng: np.random.Generator,
           spacing: Sequence[float]) -> np.ndarray:
    """A clean float32 image in about [0, 1]: class means (with per-case jitter) plus smooth texture."""
    means = config.class_means(num_classes) + config.intensity_jitter * rng.standard_normal(num_classes)
    image = means.astype(np.float32)[labels]
    if config.texture > 0:
        sigma_px = [2.0 / float(s) for s in spacing]  # texture grain of about 2 mm
        image = image + config.texture * _smooth_noise(labels.shape, sigma_px, rng)
    return image.astype(np.float32)


def apply_appearance(image: np.ndarray, config: DomainConfig, rng: np.random.Generator,
                     spacing: Sequence[float], mask: Optional[np.ndarray] = None) -> np.ndarray:
    """Map a [0, 1] image through ``config``'s intensity mapping and degradations; float32 out.

    ``mask`` (optional) marks the object: the bias field and speckle act everywhere, but the intensity
    mapping keeps a zero background at zero when ``mask`` is given (a skull-stripped MR stays stripped).
    """
    out = np.clip(image.astype(np.float32), 0, None)
    if config.invert:
        out = np.where(mask, 1.0 - out, out) if mask is not None else 1.0 - out
    if config.gamma != 1.0:
        out = np.clip(out, 0, None) ** config.gamma
    if config.contrast != 1.0:
        mapped = 0.5 + config.contrast * (out - 0.5)
        out = np.where(mask, mapped, out) if mask is not None else mapped
    if config.bias_field > 0:
        out = out * np.exp(config.bias_field * _low_frequency_field(out.shape, rng))
    if config.speckle > 0:
        shape_k = 1.0 / config.speckle ** 2  # gamma(k, 1/k) has mean 1 and std `speckle`
        out = out * rng.gamma(shape_k, 1.0 / shape_k, size=out.shape).astype(np.float32)
    if config.blur_mm > 0:
        out = ndimage.gaussian_filter(out, [config.blur_mm / float(s) for s in spacing], mode="nearest")
    if config.noise > 0:
        out = out + config.noise * rng.standard_normal(out.shape).astype(np.float32)
    return (out * config.intensity_scale + config.intensity_offset).astype(np.float32)


# Named domains for the CLI (`kt-nnunet data synth --preset NAME`) and for tests of domain shift.
DOMAIN_PRESETS = {
    "default": DomainConfig(),
    "inverted": DomainConfig(invert=True),  # T2-like: the bright classes become dark
    "shifted": DomainConfig(gamma=1.6, contrast=0.8, bias_field=0.3, blur_mm=1.0, noise=0.05),
    "ultrasound": DomainConfig(speckle=0.5, blur_mm=0.8, noise=0.01, texture=0.05),
    "ct": DomainConfig(intensity_scale=1000.0, intensity_offset=-1000.0, noise=0.01),
}
