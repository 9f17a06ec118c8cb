"""The command line: version, architecture and plugin listings, env exports."""
from __future__ import annotations

import json
import subprocess

from click.testing import CliRunner

from kt_nnunet import __version__
from kt_nnunet.cli import main


def test_version():
    out = subprocess.run(["kt-nnunet", "--version"], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"kt-nnunet, version {__version__}"


def test_architectures_json_lists_builtins_and_the_plugin_package(fresh_plugins):
    result = CliRunner().invoke(main, ["architectures", "--json"])
    assert result.exit_code == 0, result.output
    records = {r["name"]: r for r in json.loads(result.output)}
    assert len(records) >= 8 and len({r["plugin"] for r in records.values()}) >= 2
    assert records["segresnet"]["plugin"] == "segresnet"
    assert records["unet"]["dims"] == [2, 3] and records["unet"]["deep_supervision"] is True
    assert records["deeplabv3plus"]["deep_supervision"] is False
    # nnU-Net's default network for the reference 2D plan, counted on the meta device
    assert records["nnunet_plain"]["params_2d"] == 33_473_330
    assert records["light_unet"]["params_2d"] < records["nnunet_plain"]["params_2d"] / 10


def test_architectures_table(fresh_plugins):
    result = CliRunner().invoke(main, ["architectures"])
    assert result.exit_code == 0
    assert "transunet" in result.output and "architectures; parameters for a 256x256 2D plan" in result.output


def test_plugins_json(fresh_plugins):
    result = CliRunner().invoke(main, ["plugins"])
    plugins = {p["name"]: p for p in json.loads(result.output)}
    assert plugins["builtin"]["version"] == __version__ and plugins["builtin"]["source"] == "builtin"
    assert plugins["segresnet"]["version"] == "0.1.0" and plugins["segresnet"]["hooks"] == ["register_architectures"]
    assert plugins["segresnet"]["distribution"] == "kt-nnunet-segresnet" and "error" not in plugins["segresnet"]


def test_env_prints_exports_including_the_trainer_folder(tmp_path):
    result = CliRunner().invoke(main, ["env", "--root", str(tmp_path)])
    lines = dict(line.removeprefix("export ").split("=", 1) for line in result.output.splitlines())
    assert lines["nnUNet_raw"] == str(tmp_path / "nnUNet_raw")
    assert lines["nnUNet_extTrainer"].endswith("kt_nnunet/nnunet/ext_trainers")
