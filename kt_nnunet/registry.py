"""The architecture registry: every spec registered through the ``register_architectures`` hook.

A plugin whose hook raises, or that registers something nnU-Net could not use (not an ``ArchitectureSpec``, or a
network class that cannot be imported by its dotted path), is left out and reported as a warning, so that one
broken plugin never breaks the others. Two plugins registering one name is still an error: neither is "the"
broken one.
"""
from __future__ import annotations

import dataclasses
import difflib
import warnings
from typing import Optional

from kt_nnunet.errors import KtNnunetError, KtNnunetWarning, one_line

_architectures: Optional[dict] = None
_problems: dict[str, str] = {}  # architecture name (or "plugin:<name>" for a whole plugin) -> one-line message


class UnknownArchitectureError(KtNnunetError, KeyError):
    """No registered architecture has the requested name."""


class DuplicateArchitectureError(KtNnunetError, RuntimeError):
    """Two plugins registered the same architecture name."""


class ArchitectureContractError(KtNnunetError, RuntimeError):
    """An architecture breaks nnU-Net's network contract; the message names the plugin, architecture and rule."""


def reset() -> None:
    global _architectures
    _architectures = None
    _problems.clear()


def _spec_problem(spec) -> Optional[str]:
    from kt_nnunet.architectures.contract import class_path_problem

    return class_path_problem(spec.class_path, spec.network_class)


def _collect() -> dict:
    from kt_nnunet.architectures.spec import ArchitectureSpec
    from kt_nnunet.plugins.manager import get_plugin_manager, plugin_label

    pm = get_plugin_manager()
    found: dict = {}
    # Call implementations one by one so every spec is attributed to the plugin that registered it.
    for impl in pm.hook.register_architectures.get_hookimpls():  # registration order: built-ins first
        plugin_name = impl.plugin_name
        mine: dict = {}

        def register(spec, _plugin=plugin_name, _mine=mine):
            if not isinstance(spec, ArchitectureSpec):
                _problems[f"plugin:{_plugin}"] = (f"{plugin_label(_plugin)} registered {spec!r}, which is not an "
                                                  "ArchitectureSpec; it is left out")
                return
            owner = found.get(spec.name) or _mine.get(spec.name)
            if owner is not None:
                raise DuplicateArchitectureError(
                    f"architecture {spec.name!r} is registered by both plugin {owner.plugin!r} and "
                    f"plugin {_plugin!r}; uninstall one of them or load only one (KT_NNUNET_PLUGINS=<names>)")
            problem = _spec_problem(spec)
            if problem is not None:
                _problems[spec.name] = f"architecture {spec.name!r} from {plugin_label(_plugin)}: {problem}"
                return
            _mine[spec.name] = dataclasses.replace(spec, plugin=_plugin)

        try:
            impl.function(register=register)
        except DuplicateArchitectureError:
            raise
        except Exception as exc:  # third-party code: whatever it raises leaves that plugin out, not the others
            _problems[f"plugin:{plugin_name}"] = (f"{plugin_label(plugin_name)} failed in register_architectures: "
                                                  f"{one_line(exc)}; its architectures are left out")
            continue
        found.update(mine)
    for message in _problems.values():
        warnings.warn(message, KtNnunetWarning, stacklevel=3)
    return found


def _all() -> dict:
    global _architectures
    if _architectures is None:
        _architectures = _collect()
    return _architectures


def list_architectures() -> list:
    """All registered :class:`ArchitectureSpec` objects, sorted by name."""
    return [spec for _, spec in sorted(_all().items())]


def problems() -> list[str]:
    """One line per plugin or architecture left out because it is broken, naming the plugin and the cause."""
    from kt_nnunet.plugins.manager import broken_plugins

    _all()
    return [f"{info.label()} {info.error}" for info in broken_plugins()] + list(_problems.values())


def get_architecture(name: str):
    """The spec registered as ``name``; an unknown name lists what exists and the closest match."""
    specs = _all()
    if name in specs:
        return specs[name]
    if name in _problems:
        raise UnknownArchitectureError(f"{_problems[name]}, so it cannot be used")
    close = difflib.get_close_matches(name, list(specs), n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    broken = [line for key, line in _problems.items() if key.startswith("plugin:")]
    from kt_nnunet.plugins.manager import broken_plugins

    broken += [f"{info.label()} {info.error}" for info in broken_plugins()]
    left_out = f" Left out because broken: {' | '.join(broken)}." if broken else ""
    raise UnknownArchitectureError(
        f"unknown architecture {name!r}.{hint} Available: {', '.join(sorted(specs))}.{left_out} "
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
