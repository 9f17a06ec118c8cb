"""What an architecture plugin declares, and how a network is built from nnU-Net plan geometry.

nnU-Net builds every network as ``cls(input_channels=, num_classes=, deep_supervision=, **arch_kwargs)``
where ``cls`` is located by its dotted path in the plans file. An :class:`ArchitectureSpec` therefore
names an importable ``network_class`` and knows how to turn plan geometry (patch size, strides, conv
kernel sizes) plus the user's own kwargs into the JSON-serialisable ``arch_kwargs`` written into the plans.
Building through the spec and building through stock nnU-Net give the same module.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import torch.nn as nn

from kt_nnunet.errors import KtNnunetError

# nnU-Net passes these itself; a user override would be a second value for the same argument.
_NNUNET_ARGUMENTS = ("self", "input_channels", "num_classes", "deep_supervision")


class ArchitectureOptionError(KtNnunetError, ValueError):
    """An ``arch_kwargs`` name or value the architecture does not take."""


def _as_int_lists(values: Sequence[Sequence[int]]) -> list[list[int]]:
    return [[int(v) for v in stage] for stage in values]


@dataclass(frozen=True)
class PlanGeometry:
    """The parts of an nnU-Net configuration that decide a network's shape.

    ``strides`` follows nnU-Net's ``pool_op_kernel_sizes``: one entry per resolution stage, the first
    usually all ones, e.g. ``[[1, 1], [2, 2], [2, 2]]`` for three stages in 2D.
    """

    patch_size: tuple[int, ...]
    strides: tuple[tuple[int, ...], ...]
    kernel_sizes: Optional[tuple[tuple[int, ...], ...]] = None

    @classmethod
    def create(cls, patch_size, strides, kernel_sizes=None) -> "PlanGeometry":
        strides_t = tuple(tuple(int(v) for v in s) for s in strides)
        kernels_t = None if kernel_sizes is None else tuple(tuple(int(v) for v in k) for k in kernel_sizes)
        geometry = cls(tuple(int(p) for p in patch_size), strides_t, kernels_t)
        if any(len(s) != geometry.dim for s in geometry.strides):
            raise ValueError(f"every stride must have {geometry.dim} entries to match patch size {patch_size}")
        return geometry

    @classmethod
    def default(cls, patch_size: Sequence[int], n_stages: int) -> "PlanGeometry":
        """nnU-Net-like geometry: stage 0 at full resolution, each later stage halves every axis."""
        dim = len(patch_size)
        strides = [[1] * dim] + [[2] * dim for _ in range(n_stages - 1)]
        return cls.create(patch_size, strides, [[3] * dim for _ in range(n_stages)])

    @property
    def dim(self) -> int:
        return len(self.patch_size)

    @property
    def n_stages(self) -> int:
        return len(self.strides)

    def cumulative_strides(self) -> tuple[int, ...]:
        """Total downsampling per axis after the last stage."""
        return tuple(math.prod(s[axis] for s in self.strides) for axis in range(self.dim))

    def deep_supervision_shapes(self) -> list[tuple[int, ...]]:
        """Shapes nnU-Net's trainer makes the deep-supervision targets: full resolution first.

        Mirrors ``nnUNetTrainer._get_deep_supervision_scales`` (``1/cumprod(strides)[:-1]``).
        """
        shapes, factor = [], [1] * self.dim
        for stage in self.strides[:-1]:
            factor = [f * s for f, s in zip(factor, stage)]
            shapes.append(tuple(round(p / f) for p, f in zip(self.patch_size, factor)))
        return shapes


def cumulative_stride_divisibility(geometry: PlanGeometry, arch_kwargs: dict) -> tuple[int, ...]:
    """Default input-size rule: the patch must be divisible by the total stride of the encoder."""
    return geometry.cumulative_strides()


def geometry_arch_kwargs(geometry: PlanGeometry, nnunet_arch_kwargs: dict, options: dict) -> dict:
    """Default ``arch_kwargs``: the plan's strides, kernel sizes and patch size plus the options.

    ``nnunet_arch_kwargs`` is nnU-Net's own ``arch_kwargs`` for the configuration (ignored here; specs
    that build nnU-Net's own networks use it to stay identical to the planner). ``options`` are the
    spec's defaults, updated with the tiny overrides (if asked for) and the user's kwargs.
    """
    kwargs: dict[str, Any] = {
        "strides": _as_int_lists(geometry.strides),
        "patch_size": list(geometry.patch_size),
    }
    if geometry.kernel_sizes is not None:
        kwargs["kernel_sizes"] = _as_int_lists(geometry.kernel_sizes)
    kwargs.update(options)
    return kwargs


@dataclass(frozen=True)
class ArchitectureSpec:
    """One segmentation architecture that kt-nnunet can use as a teacher or a student.

    Attributes:
        name: registry name used on the command line (lower case, ``[a-z0-9_]``).
        network_class: importable ``nn.Module`` class that nnU-Net constructs as
            ``network_class(input_channels=, num_classes=, deep_supervision=, **arch_kwargs)``.
        dims: spatial dimensionalities supported, e.g. ``(2, 3)``.
        deep_supervision: True if, with deep supervision on, the network returns one logit map per
            nnU-Net deep-supervision scale. False means it returns a one-element list, which nnU-Net's
            ``DeepSupervisionWrapper`` accepts (only the full-resolution loss term is used).
        description: one line for listings.
        default_kwargs: the architecture's own kwargs (its width/depth knobs) at normal size.
        tiny_kwargs: overrides giving a tiny but complete network, used by tests and CPU demos.
        divisibility: ``(geometry, arch_kwargs) -> per-axis divisor`` that a patch size must satisfy.
        plan_kwargs: ``(geometry, nnunet_arch_kwargs, options) -> arch_kwargs`` derived from an nnU-Net
            plan; ``options`` is ``default_kwargs`` updated with ``tiny_kwargs`` (when asked) and user kwargs.
        kw_requires_import: names in ``arch_kwargs`` that are dotted paths nnU-Net must ``pydoc.locate``.
        plugin: filled in by the registry with the name of the plugin that registered the spec.
    """

    name: str
    network_class: type
    dims: tuple[int, ...]
    deep_supervision: bool
    description: str = ""
    default_kwargs: dict = field(default_factory=dict)
    tiny_kwargs: dict = field(default_factory=dict)
    divisibility: Callable[[PlanGeometry, dict], tuple[int, ...]] = cumulative_stride_divisibility
    plan_kwargs: Callable[[PlanGeometry, dict, dict], dict] = geometry_arch_kwargs
    kw_requires_import: tuple[str, ...] = ()
    plugin: str = ""

    def __post_init__(self):
        if not self.name or not all(c.isalnum() or c == "_" for c in self.name) or self.name != self.name.lower():
            raise ValueError(f"architecture name {self.name!r} must be lower case letters, digits and '_'")
        if not set(self.dims) <= {2, 3} or not self.dims:
            raise ValueError(f"architecture {self.name!r}: dims must be a non-empty subset of (2, 3)")
        if not (isinstance(self.network_class, type) and issubclass(self.network_class, nn.Module)):
            raise TypeError(f"architecture {self.name!r}: network_class must be an nn.Module subclass")

    @property
    def class_path(self) -> str:
        """Dotted path written into nnU-Net plans (``network_class_name``)."""
        return f"{self.network_class.__module__}.{self.network_class.__qualname__}"

    def arch_kwargs(self, geometry: PlanGeometry, nnunet_arch_kwargs: Optional[dict] = None,
                    tiny: bool = False, **overrides) -> dict:
        """The ``arch_kwargs`` to write into a plans configuration for ``geometry``."""
        if geometry.dim not in self.dims:
            raise ValueError(f"architecture {self.name!r} supports {list(self.dims)}D, not {geometry.dim}D")
        self.check_options(overrides)
        options = dict(self.default_kwargs)
        if tiny:
            options.update(self.tiny_kwargs)
        options.update(overrides)
        return dict(self.plan_kwargs(geometry, dict(nnunet_arch_kwargs or {}), options))

    def check_options(self, options: Optional[dict]) -> None:
        """Refuse names the network does not take and values of the wrong type for its declared options.

        A misspelt name would otherwise be swallowed by a ``**kwargs`` constructor and the default network
        trained silently, so only named constructor parameters and declared options count; a wrong value
        would only fail when nnU-Net builds the network, after planning and preprocessing.
        """
        from kt_nnunet.errors import did_you_mean

        if options is None:
            return
        if not isinstance(options, dict):
            raise ArchitectureOptionError(f"--arch-kwargs for {self.name!r} must be a JSON object, got "
                                          f"{type(options).__name__}")
        declared = {**self.default_kwargs, **self.tiny_kwargs}
        parameters = inspect.signature(self.network_class.__init__).parameters.values()
        known = set(declared) | {p.name for p in parameters if p.kind not in (
            inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)} - set(_NNUNET_ARGUMENTS)
        for key, value in options.items():
            if key not in known:
                raise ArchitectureOptionError(
                    f"--arch-kwargs: architecture {self.name!r} has no option {key!r}{did_you_mean(key, known)} "
                    f"(options: {', '.join(sorted(known))})")
            if key not in declared:
                continue
            default = declared[key]
            if isinstance(default, bool):
                ok, wanted = isinstance(value, bool), "true or false"
            elif isinstance(default, int):
                ok, wanted = isinstance(value, int) and not isinstance(value, bool) and value >= 1, \
                    "a whole number of at least 1"
            elif isinstance(default, float):
                ok, wanted = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0, \
                    "a number of at least 0"
            elif isinstance(default, str):
                ok, wanted = isinstance(value, str), "a string"
            else:
                continue
            if not ok:
                raise ArchitectureOptionError(f"--arch-kwargs: {self.name!r} option {key!r} must be {wanted}, "
                                              f"got {value!r}")

    def check_patch_size(self, geometry: PlanGeometry, arch_kwargs: dict) -> None:
        divisors = self.divisibility(geometry, arch_kwargs)
        bad = [(p, d) for p, d in zip(geometry.patch_size, divisors) if p % d]
        if bad:
            raise ValueError(
                f"patch size {list(geometry.patch_size)} is not divisible by {list(divisors)}, which architecture "
                f"{self.name!r} needs for strides {[list(s) for s in geometry.strides]}; choose a patch size that "
                f"is a multiple of {list(divisors)}")

    def build(self, input_channels: int, num_classes: int, geometry: PlanGeometry,
              deep_supervision: bool = False, nnunet_arch_kwargs: Optional[dict] = None,
              tiny: bool = False, **overrides) -> nn.Module:
        """Build the network exactly as nnU-Net would from the plans this spec writes."""
        from kt_nnunet.architectures.contract import construct_like_nnunet

        kwargs = self.arch_kwargs(geometry, nnunet_arch_kwargs, tiny=tiny, **overrides)
        self.check_patch_size(geometry, kwargs)
        return construct_like_nnunet(self.class_path, kwargs, self.kw_requires_import,
                                     input_channels, num_classes, deep_supervision)
