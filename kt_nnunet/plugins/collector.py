"""What plugins register through one hook, collected once per plugin manager: the one collection both registries
(architectures, teacher kinds) use.

Each hook implementation is called on its own, so every item is attributed to the plugin that registered it. A
broken plugin is left out with a one-line problem (also a :class:`~kt_nnunet.errors.KtNnunetWarning`) instead of
breaking the others: its hook raises (all it registered is left out), or it registers something of the wrong type
or an item the registry's check refuses (that item is left out). Two plugins registering one name is an error
naming both: neither is "the" broken one.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

from kt_nnunet.errors import KtNnunetError, KtNnunetWarning, closest, one_line


@dataclass(frozen=True)
class Problem:
    """One thing left out: a plugin's item (``item`` is its name) or all the plugin registered (``item`` None)."""

    plugin: str
    line: str
    item: Optional[str] = None


@dataclass
class Collection:
    items: dict = field(default_factory=dict)       # name -> item, its ``plugin`` set to the one that registered it
    problems: list = field(default_factory=list)    # Problem, in the order found

    def problem_of(self, name: str) -> Optional[Problem]:
        """Why the item called ``name`` was left out; None when no plugin registered a broken one by that name."""
        return next((p for p in self.problems if p.item == name), None)

    def closest_name(self, name: str) -> Optional[str]:
        """The registered name ``name`` was probably meant to be (for "did you mean")."""
        return closest(name, self.items)

    def broken_plugins(self) -> list[str]:
        """One line per plugin problem that is not about one named item: the plugin failed to load, its hook
        raised, or it registered something that is not an item."""
        return load_problems() + [p.line for p in self.problems if p.item is None]


def load_problems() -> list[str]:
    """One line per plugin the plugin manager left out (failed to import, hooks that do not validate)."""
    from kt_nnunet.plugins.manager import broken_plugins

    return [f"{info.label()} {info.error}" for info in broken_plugins()]


class HookRegistry:
    """The items of the hooks ``hooks`` (a renamed hook's old name after the new one), each of ``item_class()``
    with a ``name`` and a ``plugin`` field; ``builtin`` items come first, ``check(item)`` says why an item is
    unusable (None: usable), and ``duplicate_error`` is raised for a name registered twice."""

    def __init__(self, what: str, hooks: tuple[str, ...], item_class: Callable[[], type],
                 duplicate_error: type[KtNnunetError], builtin: Iterable = (),
                 check: Optional[Callable[[object], Optional[str]]] = None):
        self.what, self.hooks, self.item_class = what, hooks, item_class
        self.duplicate_error, self.builtin, self.check = duplicate_error, tuple(builtin), check
        self._collected: tuple = (None, None)  # (the plugin manager collected from, its Collection)

    def collection(self) -> Collection:
        """Collected on first use and again whenever the plugin manager was rebuilt; problems warn once each."""
        from kt_nnunet.plugins.manager import get_plugin_manager

        manager = get_plugin_manager()
        if self._collected[0] is not manager:
            collection = self._collect(manager)
            for problem in collection.problems:
                warnings.warn(problem.line, KtNnunetWarning, stacklevel=3)
            self._collected = (manager, collection)
        return self._collected[1]

    def reset(self) -> None:
        self._collected = (None, None)

    def problems(self) -> list[str]:
        """One line per plugin or item left out because it is broken, naming the plugin and the cause."""
        return load_problems() + [p.line for p in self.collection().problems]

    def _collect(self, manager) -> Collection:
        item_class = self.item_class()
        found = Collection({item.name: item for item in self.builtin})
        for hook in self.hooks:
            for impl in getattr(manager.hook, hook).get_hookimpls():  # registration order: built-ins first
                self._collect_from(impl, hook, item_class, found)
        return found

    def _collect_from(self, impl, hook: str, item_class: type, found: Collection) -> None:
        """One plugin's implementation of ``hook``: its items join ``found`` only if the hook returns."""
        from kt_nnunet.plugins.manager import plugin_label

        plugin, mine, duplicates = impl.plugin_name, {}, []
        label = plugin_label(plugin)

        def register(item):
            if not isinstance(item, item_class):
                found.problems.append(Problem(plugin, f"{label} registered {item!r}, which is not "
                                                      f"{_article(item_class.__name__)}; it is left out"))
                return
            owner = found.items.get(item.name) or mine.get(item.name)
            if owner is not None:
                # Raised once the hook returns: an exception through the plugin's own code could be caught there.
                duplicates.append(f"{self.what} {item.name!r} is registered by both plugin {owner.plugin!r} and "
                                  f"plugin {plugin!r}; uninstall one of them or load only one "
                                  "(KT_NNUNET_PLUGINS=<names>)")
                return
            problem = self.check(item) if self.check is not None else None
            if problem is not None:
                found.problems.append(Problem(plugin, f"{self.what} {item.name!r} from {label}: {problem}", item.name))
                return
            mine[item.name] = dataclasses.replace(item, plugin=plugin)

        try:
            impl.function(register=register)
        except Exception as exc:  # third-party code: whatever it raises leaves that plugin out, not the others
            found.problems.append(Problem(plugin, f"{label} failed in {hook}: {one_line(exc)}; its {self.what}s are "
                                                  "left out"))
            mine.clear()
        if duplicates:
            raise self.duplicate_error(duplicates[0])
        found.items.update(mine)


def _article(noun: str) -> str:
    return f"{'an' if noun[:1].upper() in 'AEIOU' else 'a'} {noun}"
