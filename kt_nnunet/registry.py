"""The architecture registry: every spec registered through the ``register_architectures`` hook."""
from __future__ import annotations

import dataclasses
import difflib
from typing import Optional

from kt_nnunet.errors import KtNnunetError

_architectures: Optional[dict] = None


class UnknownArchitectureError(KtNnunetError, KeyError):
    """No registered architecture has the requested name."""


class DuplicateArchitectureError(KtNnunetError, RuntimeError):
    """Two plugins registered the same architecture name."""


def reset() -> None:
    global _architectures
    _architectures = None


def _collect() -> dict:
    from kt_nnunet.architectures.spec import ArchitectureSpec
    from kt_nnunet.plugins.manager import PluginLoadError, get_plugin_manager

    pm = get_plugin_manager()
    found: dict = {}
    # Call implementations one by one so every spec is attributed to the plugin that registered it.
    for impl in pm.hook.register_architectures.get_hookimpls():  # registration order: built-ins first
        plugin_name = impl.plugin_name

        def register(spec, _plugin=plugin_name):
            if not isinstance(spec, ArchitectureSpec):
                raise PluginLoadError(f"plugin {_plugin!r} registered {spec!r}, which is not an ArchitectureSpec")
            if spec.name in found:
                raise DuplicateArchitectureError(
                    f"architecture {spec.name!r} is registered by both plugin {found[spec.name].plugin!r} and "
                    f"plugin {_plugin!r}; uninstall one of them or load only one (KT_NNUNET_PLUGINS=<names>)")
            found[spec.name] = dataclasses.replace(spec, plugin=_plugin)

        try:
            impl.function(register=register)
        except (DuplicateArchitectureError, PluginLoadError):
            raise
        except Exception as exc:
            raise PluginLoadError(f"plugin {plugin_name!r} failed in register_architectures: "
                                  f"{type(exc).__name__}: {exc}") from exc
    return found


def _all() -> dict:
    global _architectures
    if _architectures is None:
        _architectures = _collect()
    return _architectures


def list_architectures() -> list:
    """All registered :class:`ArchitectureSpec` objects, sorted by name."""
    return [spec for _, spec in sorted(_all().items())]


def get_architecture(name: str):
    """The spec registered as ``name``; an unknown name lists what exists and the closest match."""
    specs = _all()
    if name in specs:
        return specs[name]
    close = difflib.get_close_matches(name, list(specs), n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UnknownArchitectureError(
        f"unknown architecture {name!r}.{hint} Available: {', '.join(sorted(specs))}. "
        "Run `kt-nnunet architectures` to list them with their plugins.")
