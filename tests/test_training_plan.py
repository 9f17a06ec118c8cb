"""One ``TrainingPlan`` per training: its commands, its settings' checks, and a plan that travels to another process."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from refusals import one_error_line

from kt_nnunet.errors import KtNnunetError
from kt_nnunet.teachers.methods import FusionSettings
from kt_nnunet.training.settings import Budget, TransferSettings
from kt_nnunet.training.training_plan import TrainingPlan, trainer_class


def test_a_plan_names_its_commands_with_the_device_and_the_pretrained_weights():
    plan = TrainingPlan("Dataset501_Src", "2d", "ktFinetune_unet_seed1", "nnUNetTrainerKTFinetune", "unet",
                        pretrained_weights=Path("/m/fold_0/checkpoint_final.pth"))
    assert plan.train_command(2, "cuda") == ("nnUNetv2_train Dataset501_Src 2d 2 -p ktFinetune_unet_seed1 -tr "
                                             "nnUNetTrainerKTFinetune -device cuda -pretrained_weights "
                                             "/m/fold_0/checkpoint_final.pth")
    assert plan.predict_command("IN", "OUT", 2).endswith("-p ktFinetune_unet_seed1 -tr nnUNetTrainerKTFinetune -f 2 "
                                                         "-device cpu")
    assert pickle.loads(pickle.dumps(plan)) == plan


def test_a_plan_names_only_kt_nnunet_trainers():
    assert trainer_class("nnUNetTrainerKTOnlineSoft").__name__ == "nnUNetTrainerKTOnlineSoft"
    with pytest.raises(ValueError, match="not one of"):
        trainer_class("os.system")


@pytest.mark.parametrize("budget, message", [
    (Budget(epochs=0), "--epochs must be a whole number of at least 1, got 0"),
    (Budget(iterations_per_epoch=2.5), "--iterations must be a whole number of at least 1, got 2.5"),
    (Budget(val_iterations_per_epoch=True), "--val-iterations must be a whole number"),
    (Budget(initial_lr=0.0), "--lr must be a positive number, got 0.0"),
])
def test_a_budget_out_of_range_is_one_clear_error(budget, message):
    with pytest.raises(KtNnunetError, match=message):
        budget.check()


def test_settings_are_checked_and_give_the_plans_keys():
    assert Budget(3, None, 1, 1e-3).as_plans_budget() == {"num_epochs": 3, "num_val_iterations_per_epoch": 1,
                                                          "initial_lr": 1e-3}
    assert Budget().as_plans_budget() == {}
    with pytest.raises(KtNnunetError, match="transfer mode 'sideways' is not one of offline, online"):
        TransferSettings("sideways").check()
    with pytest.raises(KtNnunetError, match="alpha in"):
        TransferSettings(alpha=1.5).check()
    assert TransferSettings("online").online and not TransferSettings().online
    assert FusionSettings("weighted", [1, 3]).weights == (1.0, 3.0)  # hashable and frozen, whatever it was given


@pytest.mark.slow
def test_a_plan_pickled_here_trains_in_another_process_from_the_object_alone(nnunet_env, tmp_path):
    from kt_nnunet.data import tiny_dataset
    from kt_nnunet.training.supervised import prepare_training

    tiny_dataset(983, "PlanTravels", num_train=4, num_test=0)
    plan = prepare_training(983, "light_unet", tiny=True, budget=Budget(1, 2, 1), seed=0)
    assert not plan.model_folder().exists()
    (tmp_path / "plan.pkl").write_bytes(pickle.dumps(plan))
    job = ("import pickle, sys\n"
           "from kt_nnunet.training import train_plan\n"
           "plan = pickle.load(open(sys.argv[1], 'rb'))\n"
           "print(train_plan(plan, device='cpu', validate=False))\n")
    env = dict(os.environ, nnUNet_n_proc_DA="0", OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-c", job, str(tmp_path / "plan.pkl")], env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert Path(result.stdout.strip().splitlines()[-1]) == plan.model_folder()
    assert (plan.model_folder() / "fold_0" / "checkpoint_final.pth").is_file()


@pytest.mark.parametrize("option", ["--epochs", "--iterations", "--val-iterations"])
@pytest.mark.parametrize("command", ["plan", "transfer", "finetune"])
def test_budgets_below_one_are_refused_by_the_cli(nnunet_env, tmp_path, command, option):
    """--epochs 0 was written into the plans; transfer --epochs 0 raised ZeroDivisionError."""
    args = {"plan": ["plan", "Dataset612_Options", "--arch", "unet"],
            "transfer": ["transfer", "--dataset", "Dataset612_Options", "--arch", "unet"],
            "finetune": ["finetune", "--model", str(tmp_path), "--dataset", "Dataset612_Options"]}[command]
    one_error_line(args + [option, "0"], f"{option} must be a whole number of at least 1, got 0")
    assert not any(nnunet_env["nnUNet_preprocessed"].iterdir())


def test_the_api_refuses_budgets_below_one_too(nnunet_env):
    """The Python API is checked as well, not only the CLI."""
    from kt_nnunet.training.plans import write_architecture_plans
    from kt_nnunet.training.settings import Budget
    from kt_nnunet.training.transferring import prepare_transfer

    with pytest.raises(KtNnunetError, match="--epochs must be a whole number of at least 1"):
        write_architecture_plans("Dataset612_Options", "unet", budget=Budget(epochs=0))
    with pytest.raises(KtNnunetError, match="--iterations must be a whole number of at least 1"):
        prepare_transfer([], "Dataset612_Options", "unet", budget=Budget(iterations_per_epoch=-1))
