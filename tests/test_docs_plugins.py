"""Every Python code block in docs/plugins.md runs as written, and so does the hook's docstring example."""
from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import torch.nn as nn

pytest_plugins = ["pytester"]

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def kind(block: str) -> str:
    """How a block is meant to be used: a plugin module, a test module for the kit, or a script."""
    if "def register_architectures" in block:
        return "plugin"
    if "def register_teacher_kinds" in block:
        return "kind_plugin"
    if "ArchitectureConformance" in block:
        return "kit"
    if "TeacherKindConformance" in block:
        return "kind_kit"
    return "script"


def test_the_doc_has_a_block_of_each_kind():
    assert sorted(kind(b) for b in BLOCKS) == ["kind_kit", "kind_plugin", "kit", "plugin", "script"]


@pytest.mark.parametrize("block", [b for b in BLOCKS if kind(b) == "plugin"])
def test_plugin_block_registers_through_its_entry_point(block, fake_entry_points):
    from kt_nnunet.registry import get_architecture
    from kt_nnunet.testing import GEOMETRIES, check_plan_contract

    fake_entry_points("docs", source=block)
    name = re.search(r'name="(\w+)"', block).group(1)
    assert get_architecture(name).plugin == "docs"
    check_plan_contract(name, GEOMETRIES["2d"])


@pytest.mark.parametrize("block", [b for b in BLOCKS if kind(b) == "kit"])
def test_kit_block_is_a_passing_test_module(block, pytester, fresh_plugins):
    pytester.makepyfile(test_from_docs=block)
    result = pytester.runpytest_inprocess("-m", "not slow", "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= 10 and "failed" not in outcomes and "error" not in outcomes, \
        result.stdout.str()


@pytest.mark.parametrize("block", [b for b in BLOCKS if kind(b) == "kind_kit"])
def test_kind_kit_block_passes_on_the_kind_plugin_block(block, pytester, fake_entry_points):
    """The teacher-kind example plugin, installed through its entry point, passes the kit as the doc's test module
    runs it, on a rules file where the doc's test module says."""
    import json

    from kt_nnunet.teachers.kinds import get_kind  # before the inner run, which forgets the modules it imports

    fake_entry_points("docs_kind", source=next(b for b in BLOCKS if kind(b) == "kind_plugin"))
    (pytester.path / "data").mkdir()
    (pytester.path / "data" / "rules.threshold.json").write_text(json.dumps(
        {"labels": {"background": 0, "dark": 1, "bright": 2}, "thresholds": [0.3, 0.7]}))
    pytester.makepyfile(test_from_docs=block)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    assert result.parseoutcomes() == {"passed": 5}, result.stdout.str()
    assert get_kind("threshold").plugin == "docs_kind"


@pytest.mark.parametrize("block", [b for b in BLOCKS if kind(b) == "script"])
def test_script_block_runs(block, fresh_plugins):
    exec(compile(block, str(DOC), "exec"), {})


class MyNet(nn.Module):
    def __init__(self, input_channels, num_classes, deep_supervision=False, **kwargs):
        super().__init__()


def test_hook_docstring_example_runs():
    from kt_nnunet.plugins import hookspecs

    example = textwrap.dedent(hookspecs.register_architectures.__doc__.split("::\n", 1)[1])
    namespace = {"MyNet": MyNet}
    exec(compile(example, hookspecs.__file__, "exec"), namespace)
    assert hasattr(namespace["register_architectures"], "kt_nnunet_impl")  # decorated with the real marker
    registered = []
    namespace["register_architectures"](register=registered.append)
    assert [(spec.name, spec.network_class) for spec in registered] == [("my_net", MyNet)]


def test_teacher_kind_hook_docstring_example_runs():
    """The register_teacher_kinds docstring's example registers a real TeacherKind with the real marker."""
    from kt_nnunet.plugins import hookspecs
    from kt_nnunet.teachers.kinds import TeacherKind

    example = textwrap.dedent(hookspecs.register_teacher_kinds.__doc__.split("::\n", 1)[1])
    namespace = {"MyToolTeacher": lambda spec, options: None}
    exec(compile(example, hookspecs.__file__, "exec"), namespace)
    assert hasattr(namespace["register_teacher_kinds"], "kt_nnunet_impl")
    registered = []
    namespace["register_teacher_kinds"](register=registered.append)
    assert [type(k) for k in registered] == [TeacherKind] and registered[0].name == "my_tool"
    from pathlib import Path

    assert registered[0].claims(Path("a.mytool")) and not registered[0].claims(Path("a.nii.gz"))
