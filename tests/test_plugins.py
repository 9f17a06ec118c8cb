"""Plugin loading: built-ins, entry points, the only/autoload switches, and every loading error."""
from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from kt_nnunet.cli import main
from kt_nnunet.plugins.manager import PluginLoadError
from kt_nnunet.registry import DuplicateArchitectureError, UnknownArchitectureError

PLUGIN_TEMPLATE = '''
import torch.nn as nn
from kt_nnunet.architectures.spec import ArchitectureSpec
from kt_nnunet.plugins import hookimpl

class {cls}(nn.Module):
    def __init__(self, input_channels, num_classes, strides, deep_supervision=False, **kwargs):
        super().__init__()
        self.decoder = nn.Module()
        self.decoder.deep_supervision = deep_supervision
        self.conv = nn.Conv2d(input_channels, num_classes, 1)

    def forward(self, x):
        return [self.conv(x)] if self.decoder.deep_supervision else self.conv(x)

@hookimpl
def {hook}(register):
    register(ArchitectureSpec(name="{arch}", network_class={cls}, dims=(2,), deep_supervision=False))
'''


@pytest.fixture
def fake_entry_points(tmp_path, monkeypatch, fresh_plugins):
    """Install fake plugin modules and make them the only entry points kt-nnunet sees."""
    monkeypatch.syspath_prepend(str(tmp_path))
    entry_points = []

    def add(name, arch="fake_net", hook="register_architectures", source=None):
        module = f"fake_kt_plugin_{name}"
        code = source if source is not None else PLUGIN_TEMPLATE.format(cls=f"Net_{name}", hook=hook, arch=arch)
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(code))
        monkeypatch.delitem(sys.modules, module, raising=False)  # another test's module of the same name
        entry_points.append(importlib.metadata.EntryPoint(name=name, value=module, group="kt_nnunet"))
        fresh_plugins.reset()

    monkeypatch.setattr(fresh_plugins, "_entry_points", lambda: list(entry_points))
    return add


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


def test_plugin_that_fails_to_import_is_reported(fake_entry_points, fresh_plugins):
    fake_entry_points("broken", source="import definitely_not_a_module_kt\n")
    with pytest.raises(PluginLoadError,
                       match=r"plugin 'broken'.*failed to import: ModuleNotFoundError.*definitely_not_a_module_kt"):
        names(fresh_plugins)


def test_plugin_with_unknown_hook_fails_check_pending(fake_entry_points, fresh_plugins):
    fake_entry_points("typo", hook="register_architecture")
    with pytest.raises(PluginLoadError, match=r"'typo'.*register_architecture"):
        names(fresh_plugins)


def test_cli_reports_plugin_errors_as_one_message(fake_entry_points, fresh_plugins):
    fake_entry_points("broken", source="raise RuntimeError('boom at import')\n")
    result = CliRunner().invoke(main, ["architectures"])
    assert result.exit_code == 1
    assert "plugin 'broken'" in result.output and "boom at import" in result.output
    assert "Traceback" not in result.output


def test_nothing_loads_at_import():
    code = ("import sys, kt_nnunet, kt_nnunet.cli; from kt_nnunet.plugins import manager; "
            "print(manager._manager is None, 'torch' in sys.modules, 'kt_nnunet_segresnet' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "False", "False"]


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
