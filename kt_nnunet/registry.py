"""The architecture registry: every spec registered through the ``register_architectures`` hook.

Collected by the plugin collector (``plugins/collector.py``, shared with the teacher kinds): a plugin whose hook
raises, or that registers something nnU-Net could not use (not an ``ArchitectureSpec``, or a network class that
cannot be imported by its dotted path), is left out and reported as a warning, so that one broken plugin never
breaks the others. Two plugins registering one name is still an error: neither is "the" broken one.
"""
from __future__ import annotations

from functools import cache
from typing import Optional

from kt_nnunet.errors import KtNnunetError


class UnknownArchitectureError(KtNnunetError, KeyError):
    """No registered architecture has the requested name."""


class DuplicateArchitectureError(KtNnunetError, RuntimeError):
    """Two plugins registered the same architecture name."""


class ArchitectureContractError(KtNnunetError, RuntimeError):
    """An architecture breaks nnU-Net's network contract; the message names the plugin, architecture and rule."""


def _spec_class():
    from kt_nnunet.architectures.spec import ArchitectureSpec  # torch: loaded when architectures are first used

    return ArchitectureSpec


def _spec_problem(spec) -> Optional[str]:
    from kt_nnunet.architectures.contract import class_path_problem

    return class_path_problem(spec.class_path, spec.network_class)


@cache
def _architectures():
    # Made on first use, so that `import kt_nnunet` (which imports this module) does not import pluggy.
    from kt_nnunet.plugins.collector import HookRegistry

    return HookRegistry("architecture", ("register_architectures",), _spec_class, DuplicateArchitectureError,
                        check=_spec_problem)


def reset() -> None:
    _architectures().reset()


def list_architectures() -> list:
    """All registered :class:`ArchitectureSpec` objects, sorted by name."""
    return [spec for _, spec in sorted(_architectures().collection().items.items())]


def problems() -> list[str]:
    """One line per plugin or architecture left out because it is broken, naming the plugin and the cause."""
    return _architectures().problems()


def get_architecture(name: str):
    """The spec registered as ``name``; an unknown name lists what exists and the closest match."""
    found = _architectures().collection()
    if name in found.items:
        return found.items[name]
    problem = found.problem_of(name)
    if problem is not None:
        raise UnknownArchitectureError(f"{problem.line}, so it cannot be used")
    close = found.closest_name(name)
    hint = f" Did you mean {close!r}?" if close else ""
    broken = found.broken_plugins()
    left_out = f" Left out because broken: {' | '.join(broken)}." if broken else ""
    raise UnknownArchitectureError(
        f"unknown architecture {name!r}.{hint} Available: {', '.join(sorted(found.items))}.{left_out} "
        "Run `kt-nnunet architectures` to list them with their plugins.")


def check_contract(spec, geometry, input_channels: int, num_classes: int, arch_kwargs: Optional[dict] = None,
                   device: str = "meta"):
    """nnU-Net's network contract for ``spec`` at ``geometry``, built from ``arch_kwargs`` exactly as the plans hold
    them (default: the spec's own for that geometry); returns the network it checked.

    A broken rule raises :class:`ArchitectureContractError` naming the plugin (with its distribution), the
    architecture, the geometry and the rule.
    """
    import json

    from kt_nnunet.architectures.contract import NetworkContractError, check_network
    from kt_nnunet.plugins.manager import plugin_label

    if arch_kwargs is None:
        arch_kwargs = spec.arch_kwargs(geometry)
    where = (f"architecture {spec.name!r} from {plugin_label(spec.plugin)} breaks nnU-Net's network contract "
             f"(patch {list(geometry.patch_size)}, strides {[list(s) for s in geometry.strides]}, "
             f"{input_channels} input channel(s), {num_classes} classes)")
    try:
        # nnU-Net reads arch_kwargs back from JSON: tuples become lists, and so on.
        arch_kwargs = json.loads(json.dumps(arch_kwargs))
    except (TypeError, ValueError) as exc:
        raise ArchitectureContractError(f"{where}: its arch_kwargs cannot be written into the plans file as JSON "
                                        f"({exc})") from exc
    try:
        return check_network(spec.class_path, arch_kwargs, spec.kw_requires_import, geometry, input_channels,
                             num_classes, spec.deep_supervision, device=device)
    except NetworkContractError as exc:
        raise ArchitectureContractError(f"{where}: {exc}") from exc
