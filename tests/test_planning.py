"""Plans files for non-default architectures (fast: a real nnU-Net 2d plans file, no preprocessing), and their
--arch-kwargs checked against the architecture."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from refusals import one_error_line

from kt_nnunet.cli import main
from kt_nnunet.nnunet.planning import PlanningError
from kt_nnunet.training.plans import architecture_plans, write_architecture_plans
from kt_nnunet.registry import get_architecture

NNUNET_PLANS = json.loads((Path(__file__).parent / "data" / "nnUNetPlans_2d_48px.json").read_text())


def test_only_the_architecture_block_changes():
    spec = get_architecture("attention_unet")
    plans = architecture_plans(NNUNET_PLANS, "2d", spec, {"base_features": 8},
                               budget={"num_epochs": 2, "num_iterations_per_epoch": 3})
    ours, theirs = plans["configurations"]["2d"], NNUNET_PLANS["configurations"]["2d"]
    assert plans["plans_name"] == "ktPlans_attention_unet"
    assert {k: v for k, v in ours.items() if k not in ("architecture", "kt_budget")} == \
        {k: v for k, v in theirs.items() if k != "architecture"}
    arch = ours["architecture"]
    assert arch["network_class_name"] == spec.class_path
    assert arch["arch_kwargs"]["strides"] == theirs["architecture"]["arch_kwargs"]["strides"]
    assert arch["arch_kwargs"]["patch_size"] == theirs["patch_size"]
    assert arch["arch_kwargs"]["base_features"] == 8
    assert ours["kt_budget"] == {"num_epochs": 2, "num_iterations_per_epoch": 3}
    assert plans["kt_nnunet"]["architecture"] == "attention_unet"


def test_nnunet_plain_reproduces_nnunets_own_plan():
    plans = architecture_plans(NNUNET_PLANS, "2d", get_architecture("nnunet_plain"))
    assert plans["configurations"]["2d"]["architecture"] == NNUNET_PLANS["configurations"]["2d"]["architecture"]


def test_unknown_configuration_is_clear():
    plans_3d_only = copy.deepcopy(NNUNET_PLANS)
    with pytest.raises(PlanningError, match=r"configuration '3d_fullres' is not in the plans \(available: \['2d'\]\)"):
        architecture_plans(plans_3d_only, "3d_fullres", get_architecture("unet"))


def test_indivisible_patch_is_refused():
    plans = copy.deepcopy(NNUNET_PLANS)
    plans["configurations"]["2d"]["patch_size"] = [44, 48]
    with pytest.raises(PlanningError, match=r"patch size \[44, 48\] is not divisible by \[8, 8\]"):
        architecture_plans(plans, "2d", get_architecture("unet"))


def test_existing_plans_are_not_silently_overwritten(planned_dataset):
    first = write_architecture_plans(990, "unet", "2d")
    assert first.plans_file == planned_dataset / "ktPlans_unet.json"
    write_architecture_plans(990, "unet", "2d")  # identical: fine
    with pytest.raises(PlanningError, match=r"ktPlans_unet.json already holds a different '2d'.*--force"):
        write_architecture_plans(990, "unet", "2d", arch_kwargs={"base_features": 8})
    write_architecture_plans(990, "unet", "2d", arch_kwargs={"base_features": 8}, force=True)
    saved = json.loads(first.plans_file.read_text())
    assert saved["configurations"]["2d"]["architecture"]["arch_kwargs"]["base_features"] == 8


def test_plan_cli_prints_the_stock_commands(planned_dataset):
    result = CliRunner().invoke(main, ["plan", "Dataset990_Tiny", "--arch", "light_unet", "--tiny", "--epochs", "2"])
    assert result.exit_code == 0, result.output
    assert "nnUNetv2_train Dataset990_Tiny 2d 0 -p ktPlans_light_unet -tr nnUNetTrainerKTBudget -device cpu" \
        in result.output
    # The model folder is TRAINER__PLANS__CONFIG: predict must name the trainer that trained (the round trip in
    # the conformance kit runs the printed command itself).
    assert ("nnUNetv2_predict -i IMAGES -o OUT -d Dataset990_Tiny -c 2d -p ktPlans_light_unet -tr nnUNetTrainerKTBudget"
            " -f 0 -device cpu") in result.output
    stock = CliRunner().invoke(main, ["plan", "Dataset990_Tiny", "--arch", "light_unet", "--tiny", "--force"])
    assert stock.exit_code == 0, stock.output
    assert "-p ktPlans_light_unet -tr nnUNetTrainer -device cpu" in stock.output
    assert "-p ktPlans_light_unet -tr nnUNetTrainer -f 0 -device cpu" in stock.output
    bad = CliRunner().invoke(main, ["plan", "Dataset990_Tiny", "--arch", "unett"])
    assert bad.exit_code == 1 and "Did you mean 'unet'?" in bad.output and "Traceback" not in bad.output


@pytest.mark.parametrize("kwargs,expected", [
    ('{"base_feature": 4}', ["no option 'base_feature'", "did you mean 'base_features'"]),
    ('{"base_features": "x"}', ["'base_features' must be a whole number of at least 1", "'x'"]),
    ('{"base_features": -4}', ["'base_features' must be a whole number of at least 1", "-4"]),
    ('{"downsample": 2}', ["'downsample' must be a string"]),
])
@pytest.mark.parametrize("command", ["plan", "transfer"])
def test_arch_kwargs_are_checked_against_the_architecture(nnunet_env, kwargs, expected, command):
    """A misspelt --arch-kwargs name trained the default network; wrong values crashed after planning."""
    args = (["plan", "Dataset612_Options", "--arch", "unet"] if command == "plan"
            else ["transfer", "--dataset", "Dataset612_Options", "--arch", "unet"])
    one_error_line(args + ["--arch-kwargs", kwargs], "--arch-kwargs", *expected)
    assert not any(nnunet_env["nnUNet_preprocessed"].iterdir())


def test_every_architecture_accepts_its_own_default_options():
    """The check must not refuse what the architectures declare (or nnU-Net's constructor names)."""
    from kt_nnunet.registry import get_architecture, list_architectures

    for name in list_architectures():
        spec = get_architecture(name) if isinstance(name, str) else name
        spec.check_options({**spec.default_kwargs, **spec.tiny_kwargs})
    get_architecture("nnunet_plain").check_options({"n_conv_per_stage": [1, 1]})
