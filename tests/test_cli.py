"""The command line: version, architecture and plugin listings, env exports, and bad options as one error line."""
from __future__ import annotations

import json
import subprocess

import pytest
import torch
from click.testing import CliRunner
from labelling_teachers import make_model_folder, nnunet_plans, teachers, transferal  # noqa: F401  (fixtures)
from refusals import one_error_line, write_experiment_config

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


@pytest.mark.parametrize("case", ["label --device tpu", "label --device cuda", "transfer --device cuda",
                                  "finetune --device cuda", "transfer --device tpu", "label --step-size 0",
                                  "synth --classes 300", "synth --channels 0", "synth --spacing -1,1",
                                  "experiment output is a file", "experiment output under a file"])
def test_bad_options_give_one_error_line_not_a_traceback(nnunet_env, teachers, transferal,  # noqa: F811
                                                         tmp_path, monkeypatch, case):
    """These gave a traceback (torch, nnU-Net's assert, numpy, SimpleITK, mkdir) instead of one line."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    label = ["label", "--teacher", str(teachers["unet"]), "--images", str(transferal), "--out",
             str(tmp_path / "Dataset831_Options"), "--no-tta", "--no-progress"]
    synth = ["data", "synth", "--id", "832", "--name", "Options", "--out", str(tmp_path), "--shape", "16,16",
             "--train", "1", "--test", "0"]
    output_file = tmp_path / "afile"
    output_file.write_text("")
    args, expected = {
        "label --device tpu": (label + ["--device", "tpu"], "--device 'tpu'"),
        "label --device cuda": (label + ["--device", "cuda"], "no CUDA GPU"),
        "transfer --device cuda": (["transfer", "--dataset", "Dataset612_Options", "--arch", "unet", "--device",
                                    "cuda"], "no CUDA GPU"),
        "finetune --device cuda": (["finetune", "--model", str(teachers["unet"]), "--dataset", "Dataset612_Options",
                                    "--device", "cuda"], "no CUDA GPU"),
        "transfer --device tpu": (["transfer", "--dataset", "Dataset612_Options", "--arch", "unet", "--device",
                                   "tpu"], "--device 'tpu'"),
        "label --step-size 0": (label + ["--step-size", "0"], "--step-size 0.0 must be in (0, 1]"),
        "synth --classes 300": (synth + ["--classes", "300"], "at most 256 classes"),
        "synth --channels 0": (synth + ["--channels", "0"], "at least one image channel"),
        "synth --spacing -1,1": (synth + ["--spacing", "-1,1"], "positive number of mm"),
        "experiment output is a file": (
            ["experiment", str(write_experiment_config(tmp_path, output_file, "a.yaml")), "--dry-run"],
                                        "output: " + str(output_file) + " is a file"),
        "experiment output under a file": (
            ["experiment", str(write_experiment_config(tmp_path, output_file / "run", "b.yaml")),
             "--dry-run"], "cannot write to"),
    }[case]
    one_error_line(args, expected)
    assert not (tmp_path / "Dataset831_Options").exists() and not (tmp_path / "Dataset832_Options").exists()
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no hidden work folder left


@pytest.mark.parametrize("case", ["transfer --force --continue", "finetune --force --continue",
                                  "label --num-parts 0", "label --teacher FILE", "transfer --teacher FILE",
                                  "transfer without checkpoints"])
def test_option_errors_name_the_actual_problem(nnunet_env, teachers, transferal, tmp_path, case):  # noqa: F811
    """--force --continue ran; --num-parts 0 said 'must be in 0..-1'; a --teacher file was reported
    as missing; transfer suggested a --checkpoint option it does not have."""
    a_file = tmp_path / "plans.json"
    a_file.write_text("{}")
    empty_model = make_model_folder(tmp_path / "nnUNetTrainer__untrained__2d", nnunet_plans())
    for checkpoint in empty_model.glob("fold_*/*.pth"):
        checkpoint.unlink()
    (nnunet_env["nnUNet_raw"] / transferal.name).symlink_to(transferal)  # labelled: transfer loads the teachers
    label = ["label", "--images", str(transferal), "--out", str(tmp_path / "out" / "Dataset835_Lower"),
             "--no-tta", "--no-progress"]
    transfer = ["transfer", "--dataset", "Dataset612_Options", "--arch", "unet"]
    args, expected = {
        "transfer --force --continue": (transfer + ["--force", "--continue"], "--force and --continue contradict"),
        "finetune --force --continue": (["finetune", "--model", str(teachers["unet"]), "--dataset",
                                         "Dataset612_Options", "--force", "--continue"],
                                        "--force and --continue contradict"),
        "label --num-parts 0": (label + ["--teacher", str(teachers["unet"]), "--num-parts", "0"],
                                "--num-parts 0 must be at least 1"),
        "label --teacher FILE": (label + ["--teacher", str(a_file)], "is a file, not a model folder"),
        "transfer --teacher FILE": (transfer + ["--teacher", str(a_file)], "is a file, not a model folder"),
        "transfer without checkpoints": (["transfer", "--dataset", transferal.name, "--arch", "unet", "--teacher",
                                          str(empty_model)], "label/finetune --checkpoint"),
    }[case]
    line = one_error_line(args, expected)
    assert "0..-1" not in line
    assert not (tmp_path / "out").exists()
