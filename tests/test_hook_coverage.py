"""Every hook kt-nnunet defines is documented in docs/plugins.md and collected from a fake plugin implementing it,
so a new hook cannot be added without both."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from fake_plugins import PLUGIN_TEMPLATE, TEACHER_KIND_PLUGIN

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def defined_hooks() -> list[str]:
    from kt_nnunet.plugins import PROJECT_NAME, hookspecs

    return sorted(name for name, value in vars(hookspecs).items() if hasattr(value, f"{PROJECT_NAME}_spec"))


def undocumented(hooks, text: str) -> list[str]:
    """The hooks without their own ``### `NAME(...)` `` heading in ``text``."""
    headings = set(re.findall(r"^### `(\w+)\(", text, flags=re.MULTILINE))
    return [hook for hook in hooks if hook not in headings]


def registered_architecture(name):
    from kt_nnunet.registry import list_architectures

    return {spec.name: spec.plugin for spec in list_architectures()}.get(name)


def registered_kind(name):
    from kt_nnunet.teachers.kinds import list_kinds

    return {kind.name: kind.plugin for kind in list_kinds()}.get(name)


# hook -> (a fake plugin implementing it, the name it registers, where that name must then be found)
FAKE_PLUGINS = {
    "register_architectures": (PLUGIN_TEMPLATE.format(cls="CoverageNet", hook="register_architectures",
                                                      arch="coverage_net"), "coverage_net", registered_architecture),
    "register_teacher_kinds": (TEACHER_KIND_PLUGIN.format(hook="register_teacher_kinds", kind="coverage_kind"),
                               "coverage_kind", registered_kind),
    "register_teacher_loaders": (TEACHER_KIND_PLUGIN.format(hook="register_teacher_loaders", kind="coverage_old"),
                                 "coverage_old", registered_kind),
}


def test_there_are_hooks_to_check():
    assert {"register_architectures", "register_teacher_kinds", "register_teacher_loaders"} <= set(defined_hooks())


def test_every_hook_is_documented_in_plugins_md():
    missing = undocumented(defined_hooks(), DOC.read_text())
    assert not missing, f"docs/plugins.md has no `### \\`NAME(register)\\`` section for {missing}"


def test_the_documentation_check_finds_a_missing_hook():
    assert undocumented(["register_a", "register_b"], "### `register_a(register)`\n\ntext `register_b`\n") == [
        "register_b"]


def test_every_hook_has_a_fake_plugin_here():
    assert sorted(FAKE_PLUGINS) == defined_hooks(), "add a fake plugin implementing the new hook to FAKE_PLUGINS"


@pytest.mark.filterwarnings("ignore:register_teacher_loaders is the old name:DeprecationWarning")
@pytest.mark.parametrize("hook", sorted(FAKE_PLUGINS))
def test_a_plugin_implementing_the_hook_is_collected(hook, fake_entry_points, fresh_plugins):
    source, name, registered = FAKE_PLUGINS[hook]
    assert registered(name) is None
    fake_entry_points("coverage", source=source)
    assert {p.name: p.hooks for p in fresh_plugins.plugin_infos()}["coverage"] == [hook]
    assert registered(name) == "coverage"
