"""Builds the pluggy plugin manager: built-ins first, then the ``kt_nnunet`` entry-point group.

Nothing is loaded at import time; the first call to :func:`get_plugin_manager` does the work.

Switches (the CLI flags ``--plugins`` and ``--no-plugin-autoload`` set the same thing):

* ``KT_NNUNET_PLUGINS=a,b``: load only the entry-point plugins named ``a`` and ``b``.
* ``KT_NNUNET_DISABLE_PLUGIN_AUTOLOAD=1``: load no entry-point plugins at all.

Built-in architectures are always registered, through the same hook third parties implement.

A broken entry-point plugin (it fails to import, its hooks do not validate, or it implements a hook that does not
exist) is left out and reported, as a :class:`~kt_nnunet.errors.KtNnunetWarning` and in :func:`plugin_infos`, so
it never breaks the other plugins. A plugin that implements no hook at all is kept and warned about.
"""
from __future__ import annotations

import difflib
import importlib.metadata
import os
import warnings
from dataclasses import dataclass, field
from typing import Iterable, Optional

import pluggy

from kt_nnunet.errors import KtNnunetError, KtNnunetWarning, one_line
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
    distribution: str = ""
    error: Optional[str] = None    # why the plugin was left out; None when it is loaded
    warning: Optional[str] = None  # loaded, but probably not as its author meant

    def as_dict(self) -> dict:
        record = {"name": self.name, "version": self.version, "source": self.source, "module": self.module,
                  "distribution": self.distribution, "hooks": self.hooks}
        record.update({k: v for k, v in (("error", self.error), ("warning", self.warning)) if v is not None})
        return record

    def label(self) -> str:
        """``plugin 'segresnet' (kt-nnunet-segresnet 0.1.0)``: how every message names a plugin, with the
        distribution to fix or uninstall when it is known."""
        where = f"{self.distribution} {self.version}" if self.distribution else f"module {self.module}"
        return f"plugin {self.name!r} ({where})"


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
    """Forget the loaded plugin manager (the next use rebuilds it, and the registries collect from the new one)."""
    global _manager
    _manager = None
    _infos.clear()


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


def known_hooks(pm: pluggy.PluginManager) -> list[str]:
    # pm.hook also holds a caller for every misspelled implementation, so only callers with a spec count.
    return sorted(name for name, caller in vars(pm.hook).items() if getattr(caller, "has_spec", lambda: False)())


def _unknown_hooks_message(pm: pluggy.PluginManager, plugin) -> Optional[str]:
    unknown = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [] if not caller.has_spec()
                     and any(impl.plugin is plugin and not impl.optionalhook for impl in caller.get_hookimpls()))
    if not unknown:
        return None
    known = known_hooks(pm)
    hints = "".join(f" (did you mean {close[0]!r} for {hook!r}?)" for hook in unknown
                    if (close := difflib.get_close_matches(hook, known, n=1, cutoff=0.6)))
    return (f"implements {', '.join(map(repr, unknown))}, which kt-nnunet does not define{hints}; known hooks: "
            f"{', '.join(known)}. Check the function name in that plugin.")


def _no_hook_warning(plugin) -> str:
    """Why a plugin without hook implementations is probably a mistake: name the undecorated function if any."""
    from kt_nnunet.plugins import hookspecs

    hook_names = [n for n in dir(hookspecs) if not n.startswith("_") and callable(getattr(hookspecs, n))
                  and hasattr(getattr(hookspecs, n), f"{PROJECT_NAME}_spec")]
    undecorated = [n for n in hook_names if callable(getattr(plugin, n, None))]
    if undecorated:
        return (f"implements no kt-nnunet hook: {', '.join(undecorated)} is not decorated with "
                "@hookimpl (from kt_nnunet import hookimpl)")
    return f"implements no kt-nnunet hook (known hooks: {', '.join(hook_names)}), so it adds nothing"


def _register(pm: pluggy.PluginManager, plugin, info: PluginInfo, strict: bool) -> None:
    """Register ``plugin``; a failure is fatal when ``strict`` (the built-ins), else recorded in ``info.error``."""
    try:
        pm.register(plugin, name=info.name)
        problem = _unknown_hooks_message(pm, plugin)
        if problem is not None:
            pm.unregister(plugin)
    except Exception as exc:  # pluggy raises ValueError / PluginValidationError with useful text
        problem = f"could not be registered: {one_line(exc)}"
        if pm.is_registered(plugin):  # pluggy keeps the implementations it added before the invalid one
            pm.unregister(plugin)
    if problem is not None:
        if strict:
            raise PluginLoadError(f"plugin {info.name!r} {problem}")
        info.error = problem
    else:
        info.hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
        if not info.hooks:
            info.warning = _no_hook_warning(plugin)
    _infos.append(info)


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
        dist = getattr(ep, "dist", None)
        info = PluginInfo(ep.name, dist.version if dist is not None else "unknown", "entry point", ep.value,
                          distribution=dist.name if dist is not None else "")
        try:
            plugin = ep.load()
        except Exception as exc:  # third-party code: anything it raises makes that one plugin broken
            info.error = (f"failed to import (entry point {ep.value!r} in group {ENTRY_POINT_GROUP!r}): "
                          f"{one_line(exc)}")
            _infos.append(info)
            continue
        _register(pm, plugin, info, strict=False)


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
        _register(pm, module, PluginInfo(name, _kt_version(), "builtin", module_path, distribution="kt-nnunet"),
                  strict=True)
    if _autoload_enabled():
        _load_entry_points(pm)
    pm.check_pending()  # cannot fail: plugins with unknown hooks were unregistered above
    _manager = pm
    for info in _infos:
        if info.error is not None:
            warnings.warn(f"{info.label()} {info.error}; it is left out (fix or uninstall {info.distribution or 'it'}"
                          f", or skip it with {ENV_ONLY_PLUGINS}=<names>)", KtNnunetWarning, stacklevel=2)
        elif info.warning is not None:
            warnings.warn(f"{info.label()} {info.warning}", KtNnunetWarning, stacklevel=2)
    return pm


def plugin_infos() -> list[PluginInfo]:
    """Name, version, source, implemented hooks and any problem of every plugin found, loaded or left out."""
    get_plugin_manager()
    return list(_infos)


def plugin_label(name: str) -> str:
    """How messages name the plugin called ``name``: with its distribution and version when known."""
    for info in plugin_infos():
        if info.name == name:
            return info.label()
    return f"plugin {name!r}"


def broken_plugins() -> list[PluginInfo]:
    """The plugins left out, each with the reason in ``error``."""
    return [info for info in plugin_infos() if info.error is not None]
