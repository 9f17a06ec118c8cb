"""Builds the pluggy plugin manager: built-ins first, then the ``kt_nnunet`` entry-point group.

Nothing is loaded at import time; the first call to :func:`get_plugin_manager` does the work.

Switches (the CLI flags ``--plugins`` and ``--no-plugin-autoload`` set the same thing):

* ``KT_NNUNET_PLUGINS=a,b``: load only the entry-point plugins named ``a`` and ``b``.
* ``KT_NNUNET_DISABLE_PLUGIN_AUTOLOAD=1``: load no entry-point plugins at all.

Built-in architectures are always registered, through the same hook third parties implement.
"""
from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass, field
from typing import Iterable, Optional

import pluggy

from kt_nnunet.errors import KtNnunetError
from kt_nnunet.plugins import ENTRY_POINT_GROUP, PROJECT_NAME

ENV_ONLY_PLUGINS = "KT_NNUNET_PLUGINS"
ENV_DISABLE_AUTOLOAD = "KT_NNUNET_DISABLE_PLUGIN_AUTOLOAD"
BUILTIN_PLUGINS = {"builtin": "kt_nnunet.architectures.builtin"}


class PluginLoadError(KtNnunetError, RuntimeError):
    """A plugin could not be imported or registered; the message names the plugin and the cause."""


@dataclass
class PluginInfo:
    name: str
    version: str
    source: str  # "builtin" or "entry point"
    module: str
    hooks: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"name": self.name, "version": self.version, "source": self.source, "module": self.module,
                "hooks": self.hooks}


@dataclass
class _Settings:
    only: Optional[tuple[str, ...]] = None
    autoload: Optional[bool] = None


_settings = _Settings()
_manager: Optional[pluggy.PluginManager] = None
_infos: list[PluginInfo] = []


def configure(only: Optional[Iterable[str]] = None, autoload: Optional[bool] = None) -> None:
    """Override the environment switches for this process and forget any loaded plugins."""
    _settings.only = tuple(only) if only is not None else None
    _settings.autoload = autoload
    reset()


def reset() -> None:
    """Forget the loaded plugin manager (the next use rebuilds it)."""
    global _manager
    _manager = None
    _infos.clear()
    from kt_nnunet import registry

    registry.reset()


def _only_plugins() -> Optional[tuple[str, ...]]:
    if _settings.only is not None:
        return _settings.only
    raw = os.environ.get(ENV_ONLY_PLUGINS, "").strip()
    return tuple(p.strip() for p in raw.split(",") if p.strip()) if raw else None


def _autoload_enabled() -> bool:
    if _settings.autoload is not None:
        return _settings.autoload
    return os.environ.get(ENV_DISABLE_AUTOLOAD, "").strip().lower() not in ("1", "true", "yes", "on")


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def _kt_version() -> str:
    from kt_nnunet import __version__

    return __version__


def _register(pm: pluggy.PluginManager, plugin, name: str, version: str, source: str) -> None:
    try:
        pm.register(plugin, name=name)
    except Exception as exc:  # pluggy raises ValueError / PluginValidationError with useful text
        raise PluginLoadError(f"plugin {name!r} could not be registered: {type(exc).__name__}: {exc}") from exc
    hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
    _infos.append(PluginInfo(name, version, source, getattr(plugin, "__name__", repr(plugin)), hooks))


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    only = _only_plugins()
    available = _entry_points()
    if only is not None:
        missing = sorted(set(only) - {ep.name for ep in available} - set(BUILTIN_PLUGINS))
        if missing:
            names = ", ".join(sorted(ep.name for ep in available)) or "none"
            raise PluginLoadError(f"{ENV_ONLY_PLUGINS}/--plugins names {missing} but no such plugin is installed "
                                  f"(installed entry-point plugins: {names})")
    for ep in available:
        if only is not None and ep.name not in only:
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            raise PluginLoadError(
                f"plugin {ep.name!r} (entry point {ep.value!r} in group {ENTRY_POINT_GROUP!r}) failed to import: "
                f"{type(exc).__name__}: {exc}. Fix or uninstall that package, or skip it with "
                f"{ENV_DISABLE_AUTOLOAD}=1 / {ENV_ONLY_PLUGINS}=<names>.") from exc
        version = ep.dist.version if getattr(ep, "dist", None) is not None else "unknown"
        _register(pm, plugin, ep.name, version, "entry point")


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, built on first use."""
    global _manager
    if _manager is not None:
        return _manager
    from kt_nnunet.plugins import hookspecs

    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    _infos.clear()
    for name, module_path in BUILTIN_PLUGINS.items():
        module = importlib.import_module(module_path)
        _register(pm, module, name, _kt_version(), "builtin")
    if _autoload_enabled():
        _load_entry_points(pm)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) or repr(exc.plugin)
        known = ", ".join(sorted(h for h in dir(pm.hook) if not h.startswith("_")))
        raise PluginLoadError(f"plugin {name!r} implements a hook kt-nnunet does not define ({exc}); "
                              f"known hooks: {known}. Check the function name in that plugin.") from exc
    _manager = pm
    return pm


def plugin_infos() -> list[PluginInfo]:
    """Name, version, source and implemented hooks of every loaded plugin."""
    get_plugin_manager()
    return list(_infos)
