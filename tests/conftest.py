"""Shared fixtures: nnU-Net folders in a temporary directory and CPU-friendly nnU-Net settings."""
from __future__ import annotations

import importlib.metadata
import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from fake_plugins import PLUGIN_TEMPLATE

# Tests run on 2 CPU cores: keep nnU-Net and torch from oversubscribing them.
os.environ.setdefault("nnUNet_def_n_proc", "1")
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture
def nnunet_env(tmp_path, monkeypatch):
    """Point nnUNet_raw / nnUNet_preprocessed / nnUNet_results at fresh temporary folders."""
    folders = {}
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        folder = tmp_path / variable
        folder.mkdir()
        monkeypatch.setenv(variable, str(folder))
        folders[variable] = folder
    monkeypatch.setenv("nnUNet_def_n_proc", "1")
    return folders


@pytest.fixture
def fresh_plugins(monkeypatch):
    """A plugin manager rebuilt from scratch for this test, and forgotten afterwards."""
    from kt_nnunet.plugins import manager

    monkeypatch.delenv("KT_NNUNET_PLUGINS", raising=False)
    monkeypatch.delenv("KT_NNUNET_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    manager.configure()
    yield manager
    manager.configure()


@pytest.fixture
def fake_entry_points(tmp_path, monkeypatch, fresh_plugins):
    """Install fake plugin packages (a module and its distribution's metadata, ``kt-nnunet-<name> 1.0``) and make
    their entry points the only ones kt-nnunet sees."""
    monkeypatch.syspath_prepend(str(tmp_path))
    installed = tmp_path / "site"
    installed.mkdir()

    def add(name, arch="fake_net", hook="register_architectures", source=None):
        module = f"fake_kt_plugin_{name}"
        code = source if source is not None else PLUGIN_TEMPLATE.format(cls=f"Net_{name}", hook=hook, arch=arch)
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(code))
        monkeypatch.delitem(sys.modules, module, raising=False)  # another test's module of the same name
        dist_info = installed / f"kt_nnunet_{name}-1.0.dist-info"
        dist_info.mkdir()
        (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: kt-nnunet-{name}\nVersion: 1.0\n")
        (dist_info / "entry_points.txt").write_text(f"[kt_nnunet]\n{name} = {module}\n")
        fresh_plugins.reset()

    def entry_points():
        dists = sorted(importlib.metadata.distributions(path=[str(installed)]), key=lambda d: d.metadata["Name"])
        return [ep for dist in dists for ep in dist.entry_points if ep.group == "kt_nnunet"]

    monkeypatch.setattr(fresh_plugins, "_entry_points", entry_points)
    return add


@pytest.fixture
def planned_dataset(nnunet_env):
    """A preprocessed-looking dataset folder holding nnU-Net's 2d plans for 48x48 images, with 1 channel and 3 labels
    (so no preprocessing runs)."""
    name = "Dataset990_Tiny"
    (nnunet_env["nnUNet_raw"] / name).mkdir()
    folder = nnunet_env["nnUNet_preprocessed"] / name
    (folder / "nnUNetPlans_2d").mkdir(parents=True)
    (folder / "nnUNetPlans.json").write_text((Path(__file__).parent / "data" / "nnUNetPlans_2d_48px.json").read_text())
    (folder / "dataset.json").write_text(json.dumps({"numTraining": 1, "file_ending": ".png",
                                                     "channel_names": {"0": "x"},
                                                     "labels": {"background": 0, "a": 1, "b": 2}}))
    (folder / "nnUNetPlans_2d" / "c000.pkl").write_bytes(b"")
    return folder
