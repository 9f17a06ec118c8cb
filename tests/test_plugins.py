"""Plugin loading: built-ins, entry points, the only/autoload switches, and every loading error."""
from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import warnings

import pytest
from click.testing import CliRunner

from fake_plugins import LOCAL_CLASS_PLUGIN, NO_KWARGS_PLUGIN, PLUGIN_TEMPLATE, TEACHER_KIND_PLUGIN
from kt_nnunet.cli import main
from kt_nnunet.errors import KtNnunetWarning
from kt_nnunet.plugins.manager import PluginLoadError
from kt_nnunet.registry import DuplicateArchitectureError, UnknownArchitectureError, get_architecture
from kt_nnunet.teachers.errors import TeacherKindError


def names(manager):
    from kt_nnunet.registry import list_architectures

    return {spec.name: spec.plugin for spec in list_architectures()}


def test_builtins_register_through_the_hook(fresh_plugins, monkeypatch):
    monkeypatch.setattr(fresh_plugins, "_entry_points", lambda: [])
    found = names(fresh_plugins)
    assert {"nnunet_plain", "nnunet_resenc", "unet", "unetpp", "attention_unet", "deeplabv3plus", "transunet",
            "light_unet"} <= set(found)
    assert set(found.values()) == {"builtin"}
    info = {p.name: p for p in fresh_plugins.plugin_infos()}
    assert info["builtin"].hooks == ["register_architectures"]


def test_entry_point_plugin_is_loaded_and_attributed(fake_entry_points, fresh_plugins):
    fake_entry_points("alpha", arch="alpha_net")
    assert names(fresh_plugins)["alpha_net"] == "alpha"
    info = {p.name: p.as_dict() for p in fresh_plugins.plugin_infos()}
    assert info["alpha"]["source"] == "entry point" and info["alpha"]["hooks"] == ["register_architectures"]


def test_only_switch_by_env_and_flag(fake_entry_points, fresh_plugins, monkeypatch):
    fake_entry_points("alpha", arch="alpha_net")
    fake_entry_points("beta", arch="beta_net")
    monkeypatch.setenv("KT_NNUNET_PLUGINS", "beta")
    fresh_plugins.reset()
    found = names(fresh_plugins)
    assert "beta_net" in found and "alpha_net" not in found and "unet" in found

    monkeypatch.delenv("KT_NNUNET_PLUGINS")
    fresh_plugins.reset()
    result = CliRunner().invoke(main, ["--plugins", "alpha", "plugins"])
    assert result.exit_code == 0, result.output
    assert {p["name"] for p in json.loads(result.output)} == {"builtin", "alpha"}


def test_only_switch_names_a_missing_plugin(fake_entry_points, fresh_plugins, monkeypatch):
    fake_entry_points("alpha", arch="alpha_net")
    monkeypatch.setenv("KT_NNUNET_PLUGINS", "gamma")
    fresh_plugins.reset()
    with pytest.raises(PluginLoadError, match=r"gamma.*installed entry-point plugins: alpha"):
        names(fresh_plugins)


def test_autoload_off_by_env_and_flag(fake_entry_points, fresh_plugins, monkeypatch):
    fake_entry_points("alpha", arch="alpha_net")
    monkeypatch.setenv("KT_NNUNET_DISABLE_PLUGIN_AUTOLOAD", "1")
    fresh_plugins.reset()
    assert "alpha_net" not in names(fresh_plugins)

    monkeypatch.delenv("KT_NNUNET_DISABLE_PLUGIN_AUTOLOAD")
    fresh_plugins.reset()
    result = CliRunner().invoke(main, ["--no-plugin-autoload", "plugins"])
    assert result.exit_code == 0, result.output
    assert [p["name"] for p in json.loads(result.output)] == ["builtin"]


def test_unknown_architecture_lists_names_and_closest(fresh_plugins, monkeypatch):
    monkeypatch.setattr(fresh_plugins, "_entry_points", lambda: [])
    from kt_nnunet.registry import get_architecture

    with pytest.raises(UnknownArchitectureError) as info:
        get_architecture("atention_unet")
    message = str(info.value)
    assert "Did you mean 'attention_unet'?" in message and "deeplabv3plus" in message and "transunet" in message


def test_duplicate_name_names_both_plugins(fake_entry_points, fresh_plugins):
    fake_entry_points("alpha", arch="unet")
    with pytest.raises(DuplicateArchitectureError, match=r"'unet'.*'builtin'.*'alpha'"):
        names(fresh_plugins)


def test_entry_point_plugin_records_its_distribution(fake_entry_points, fresh_plugins):
    fake_entry_points("alpha", arch="alpha_net")
    info = {p.name: p for p in fresh_plugins.plugin_infos()}
    assert info["alpha"].as_dict()["distribution"] == "kt-nnunet-alpha" and info["alpha"].version == "1.0"
    assert fresh_plugins.plugin_label("alpha") == "plugin 'alpha' (kt-nnunet-alpha 1.0)"
    assert fresh_plugins.plugin_label("builtin").startswith("plugin 'builtin' (kt-nnunet ")


def test_plugin_that_fails_to_import_is_reported_and_left_out(fake_entry_points, fresh_plugins):
    fake_entry_points("alpha", arch="alpha_net")
    fake_entry_points("broken", source="import definitely_not_a_module_kt\n")
    with pytest.warns(KtNnunetWarning, match=r"plugin 'broken' \(kt-nnunet-broken 1.0\) failed to import .*"
                                             r"ModuleNotFoundError.*definitely_not_a_module_kt.*left out"):
        found = names(fresh_plugins)
    assert found["alpha_net"] == "alpha" and found["unet"] == "builtin"
    info = {p.name: p.as_dict() for p in fresh_plugins.plugin_infos()}
    assert "definitely_not_a_module_kt" in info["broken"]["error"] and "error" not in info["alpha"]
    with pytest.raises(UnknownArchitectureError, match=r"'broken_net'.*Left out because broken: plugin 'broken'"):
        get_architecture("broken_net")


def test_misspelled_hook_is_reported_and_not_listed_as_known(fake_entry_points, fresh_plugins):
    fake_entry_points("alpha", arch="alpha_net")
    fake_entry_points("typo", hook="register_architecture", arch="typo_net")
    with pytest.warns(KtNnunetWarning) as caught:
        found = names(fresh_plugins)
    assert "alpha_net" in found and "typo_net" not in found
    message = next(str(w.message) for w in caught if "'typo'" in str(w.message))
    assert "implements 'register_architecture', which kt-nnunet does not define" in message
    assert "did you mean 'register_architectures'" in message
    assert message.split("known hooks: ")[1].startswith(
        "register_architectures, register_teacher_kinds, register_teacher_loaders.")
    assert "register_architecture," not in message.split("known hooks: ")[1]


def test_hook_with_the_wrong_signature_is_reported_and_left_out(fake_entry_points, fresh_plugins):
    fake_entry_points("alpha", arch="alpha_net")
    fake_entry_points("badsig", source=PLUGIN_TEMPLATE.format(cls="Net_badsig", hook="register_architectures",
                                                              arch="badsig_net").replace("(register):", "(reg):"))
    with pytest.warns(KtNnunetWarning, match=r"plugin 'badsig' \(kt-nnunet-badsig 1.0\) could not be registered: "
                                             r"PluginValidationError: .*'reg'") as caught:
        found = names(fresh_plugins)
    assert all("\n" not in str(w.message) for w in caught)
    assert "alpha_net" in found and "badsig_net" not in found
    assert not fresh_plugins.get_plugin_manager().has_plugin("badsig")


def test_plugin_without_hookimpl_gets_a_warning(fake_entry_points, fresh_plugins):
    source = PLUGIN_TEMPLATE.format(cls="Net_bare", hook="register_architectures", arch="bare_net").replace(
        "@hookimpl\n", "")
    fake_entry_points("bare", source=source)
    with pytest.warns(KtNnunetWarning, match=r"plugin 'bare' \(kt-nnunet-bare 1.0\) implements no kt-nnunet hook: "
                                             r"register_architectures is not decorated with @hookimpl"):
        found = names(fresh_plugins)
    assert "bare_net" not in found
    info = {p.name: p.as_dict() for p in fresh_plugins.plugin_infos()}
    assert info["bare"]["hooks"] == [] and "@hookimpl" in info["bare"]["warning"]


def test_hook_that_raises_or_registers_junk_leaves_only_that_plugin_out(fake_entry_points, fresh_plugins):
    fake_entry_points("alpha", arch="alpha_net")
    fake_entry_points("raiser", source=(
        "from kt_nnunet.plugins import hookimpl\n\n@hookimpl\ndef register_architectures(register):\n"
        "    raise RuntimeError('no GPU here')\n"))
    fake_entry_points("junk", source=(
        "from kt_nnunet.plugins import hookimpl\n\n@hookimpl\ndef register_architectures(register):\n"
        "    register('my_net')\n"))
    with pytest.warns(KtNnunetWarning) as caught:
        found = names(fresh_plugins)
    assert "alpha_net" in found
    messages = " | ".join(str(w.message) for w in caught)
    assert "plugin 'raiser' (kt-nnunet-raiser 1.0) failed in register_architectures: RuntimeError: no GPU here" \
        in messages
    assert "plugin 'junk' (kt-nnunet-junk 1.0) registered 'my_net', which is not an ArchitectureSpec" in messages


def test_class_that_cannot_be_imported_by_its_path_is_left_out(fake_entry_points, fresh_plugins):
    fake_entry_points("alpha", arch="alpha_net")
    fake_entry_points("local", source=LOCAL_CLASS_PLUGIN)
    with pytest.warns(KtNnunetWarning, match=r"architecture 'local_net' from plugin 'local' \(kt-nnunet-local 1.0\):"
                                             r" network class .*<locals>.* is defined inside a function"):
        found = names(fresh_plugins)
    assert "alpha_net" in found and "local_net" not in found
    with pytest.raises(UnknownArchitectureError, match=r"'local_net' from plugin 'local'.*cannot be used"):
        get_architecture("local_net")


def test_cli_lists_the_others_and_reports_each_broken_plugin_in_one_line(fake_entry_points, fresh_plugins):
    fake_entry_points("alpha", arch="alpha_net")
    fake_entry_points("broken", source="raise RuntimeError('boom at import')\n")
    fake_entry_points("strict", source=NO_KWARGS_PLUGIN)
    fake_entry_points("local", source=LOCAL_CLASS_PLUGIN)
    result = CliRunner().invoke(main, ["architectures"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    listed = [line.split()[0] for line in result.stdout.splitlines()[1:] if line.strip()][:-1]
    assert {"alpha_net", "unet", "transunet"} <= set(listed) and not {"strict_net", "local_net"} & set(listed)
    broken = [line for line in result.stderr.splitlines() if line]
    assert len(broken) == 3 and all(line.startswith("broken: ") for line in broken), result.stderr
    assert "plugin 'broken' (kt-nnunet-broken 1.0) failed to import" in broken[0] and "boom at import" in broken[0]
    assert "'local_net' from plugin 'local' (kt-nnunet-local 1.0)" in broken[1]
    assert ("architecture 'strict_net' from plugin 'strict' (kt-nnunet-strict 1.0) breaks nnU-Net's network contract"
            in broken[2] and "unexpected keyword argument" in broken[2] and "**kwargs" in broken[2])

    as_json = CliRunner().invoke(main, ["architectures", "--json"])
    assert as_json.exit_code == 1 and "alpha_net" in {r["name"] for r in json.loads(as_json.stdout)}

    fresh_plugins.reset()  # as in a new process: the plugins load again
    listing = CliRunner().invoke(main, ["plugins"])
    assert listing.exit_code == 1 and "warning:" not in listing.stderr  # reported once, as broken: lines
    assert "broken: plugin 'broken' (kt-nnunet-broken 1.0) failed to import" in listing.stderr
    assert "broken: architecture 'local_net' from plugin 'local'" in listing.stderr
    assert {p["name"]: "error" in p for p in json.loads(listing.stdout)} == {
        "builtin": False, "alpha": False, "broken": True, "local": False, "strict": False}

    fresh_plugins.reset()
    other_command = CliRunner().invoke(main, ["label", "--teacher", "onxx:model", "--images", "x", "--out",
                                              "Dataset999_X"])
    assert other_command.exit_code == 1 and "unknown teacher kind 'onxx'" in other_command.stderr
    warned = [line for line in other_command.stderr.splitlines() if line.startswith("warning: plugin 'broken'")]
    assert len(warned) == 1 and "failed to import" in warned[0]


def kinds():
    from kt_nnunet.teachers.kinds import list_kinds

    return {kind.name: kind.plugin for kind in list_kinds()}


def test_a_plugin_teacher_kind_is_collected_attributed_and_listed(fake_entry_points, fresh_plugins):
    fake_entry_points("alpha", arch="alpha_net")
    fake_entry_points("tool", source=TEACHER_KIND_PLUGIN.format(hook="register_teacher_kinds", kind="my_tool"))
    assert kinds() == {"nnunet": "builtin", "onnx": "builtin", "torchscript": "builtin", "predictions": "builtin",
                       "my_tool": "tool"}
    result = CliRunner().invoke(main, ["plugins"])
    assert result.exit_code == 0, result.output
    listed = {p["name"]: (p["architectures"], p["teacher_kinds"]) for p in json.loads(result.stdout)}
    assert listed["tool"] == ([], ["my_tool"]) and listed["alpha"] == (["alpha_net"], [])
    assert listed["builtin"][1] == ["nnunet", "onnx", "torchscript", "predictions"] and "unet" in listed["builtin"][0]


def test_the_old_hook_name_still_registers_a_kind_and_says_it_is_deprecated(fake_entry_points, fresh_plugins):
    fake_entry_points("old", source=TEACHER_KIND_PLUGIN.format(hook="register_teacher_loaders", kind="old_tool"))
    with pytest.warns(DeprecationWarning, match="register_teacher_loaders is the old name of the kt-nnunet hook "
                                                "register_teacher_kinds"):
        found = kinds()
    assert found["old_tool"] == "old"
    assert {p.name: p.hooks for p in fresh_plugins.plugin_infos()}["old"] == ["register_teacher_loaders"]


def test_a_broken_teacher_kind_plugin_is_reported_like_a_broken_architecture_plugin(fake_entry_points, fresh_plugins):
    from kt_nnunet.teachers.kinds import get_kind, problems

    fake_entry_points("tool", source=TEACHER_KIND_PLUGIN.format(hook="register_teacher_kinds", kind="my_tool"))
    fake_entry_points("raiser", source=(
        "from kt_nnunet.plugins import hookimpl\n\n@hookimpl\ndef register_teacher_kinds(register):\n"
        "    raise RuntimeError('no licence here')\n"))
    fake_entry_points("junk", source=(
        "from kt_nnunet.plugins import hookimpl\n\n@hookimpl\ndef register_teacher_kinds(register):\n"
        "    register('my_kind')\n"))
    raised = ("plugin 'raiser' (kt-nnunet-raiser 1.0) failed in register_teacher_kinds: RuntimeError: no licence "
              "here; its teacher kinds are left out")
    junk = "plugin 'junk' (kt-nnunet-junk 1.0) registered 'my_kind', which is not a TeacherKind; it is left out"
    with pytest.warns(KtNnunetWarning) as caught:
        assert kinds()["my_tool"] == "tool"
    assert sorted(str(w.message) for w in caught) == sorted([raised, junk])
    assert sorted(problems()) == sorted([raised, junk])
    with warnings.catch_warnings():
        warnings.simplefilter("error", KtNnunetWarning)  # collected once, so warned once
        kinds()
    with pytest.raises(TeacherKindError, match=r"unknown teacher kind 'licensed'.*left out because broken: "
                                               r".*plugin 'raiser' .*no licence here"):
        get_kind("licensed")

    fresh_plugins.reset()  # as in a new process
    listing = CliRunner().invoke(main, ["plugins"])
    assert listing.exit_code == 1 and "warning:" not in listing.stderr
    assert sorted(line for line in listing.stderr.splitlines() if line) == sorted([f"broken: {raised}",
                                                                                  f"broken: {junk}"])
    assert {p["name"]: p["teacher_kinds"] for p in json.loads(listing.stdout)}["raiser"] == []

    fresh_plugins.reset()
    other_command = CliRunner().invoke(main, ["label", "--teacher", "onxx:model", "--images", "x", "--out",
                                              "Dataset999_X"])
    assert other_command.exit_code == 1 and "unknown teacher kind 'onxx' (did you mean 'onnx'?)" in other_command.stderr
    assert sorted(line for line in other_command.stderr.splitlines() if line.startswith("warning:")) == sorted([
        f"warning: {raised}", f"warning: {junk}"])


@pytest.mark.filterwarnings("ignore:register_teacher_loaders is the old name:DeprecationWarning")
def test_two_plugins_registering_one_kind_name_is_an_error_naming_both(fake_entry_points, fresh_plugins):
    fake_entry_points("alpha", source=TEACHER_KIND_PLUGIN.format(hook="register_teacher_kinds", kind="my_tool"))
    fake_entry_points("beta", source=TEACHER_KIND_PLUGIN.format(hook="register_teacher_loaders", kind="my_tool"))
    with pytest.raises(TeacherKindError, match=r"teacher kind 'my_tool' is registered by both plugin 'alpha' and "
                                               r"plugin 'beta'; uninstall one of them"):
        kinds()
    fake_entry_points("gamma", source=TEACHER_KIND_PLUGIN.format(hook="register_teacher_kinds", kind="onnx"))
    fresh_plugins.configure(only=["gamma"])
    with pytest.raises(TeacherKindError, match=r"teacher kind 'onnx' is registered by both plugin 'builtin' and "
                                               r"plugin 'gamma'"):
        kinds()


def test_nothing_loads_at_import():
    code = ("import sys, kt_nnunet, kt_nnunet.cli; from kt_nnunet.plugins import manager; "
            "from kt_nnunet import hookimpl, KtNnunetError; import kt_nnunet.testing, kt_nnunet.testing.pytest_plugin; "
            "print(manager._manager is None, 'torch' in sys.modules, 'kt_nnunet_segresnet' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "False", "False"]
    bare = subprocess.run([sys.executable, "-c", "import sys, kt_nnunet; print('pluggy' in sys.modules)"],
                          capture_output=True, text=True, check=True).stdout
    assert bare.split() == ["False"]  # the registries make their collectors on first use


def test_plugin_authors_names_are_exported_lazily():
    import kt_nnunet
    from kt_nnunet.architectures.spec import ArchitectureSpec
    from kt_nnunet.errors import KtNnunetError
    from kt_nnunet.plugins import hookimpl

    assert (kt_nnunet.hookimpl, kt_nnunet.ArchitectureSpec, kt_nnunet.KtNnunetError) == \
        (hookimpl, ArchitectureSpec, KtNnunetError)
    assert {"hookimpl", "ArchitectureSpec", "KtNnunetError"} <= set(kt_nnunet.__all__)
    with pytest.raises(AttributeError, match="no attribute 'hookimpls'"):
        kt_nnunet.hookimpls


def test_third_party_package_is_found_only_through_its_entry_point(fresh_plugins, monkeypatch):
    """plugins/kt-nnunet-segresnet is installed by the README set-up; its entry point is the only link."""
    eps = [ep for ep in importlib.metadata.entry_points(group="kt_nnunet") if ep.name == "segresnet"]
    assert eps, "kt-nnunet-segresnet is not installed: run the README set-up command"
    assert eps[0].dist.name == "kt-nnunet-segresnet"

    code = ("import os, sys; os.environ['KT_NNUNET_DISABLE_PLUGIN_AUTOLOAD'] = '{off}'; "
            "from kt_nnunet.registry import list_architectures; "
            "print(sorted(s.name + '@' + s.plugin for s in list_architectures() if s.name == 'segresnet'), "
            "'kt_nnunet_segresnet' in sys.modules)")
    run = lambda off: subprocess.run([sys.executable, "-c", code.format(off=off)], capture_output=True,  # noqa: E731
                                     text=True, check=True).stdout.strip()
    assert run("0") == "['segresnet@segresnet'] True"
    assert run("1") == "[] False"
