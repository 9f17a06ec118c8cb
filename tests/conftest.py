"""Shared fixtures: nnU-Net folders in a temporary directory and CPU-friendly nnU-Net settings."""
from __future__ import annotations

import os

import pytest

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
