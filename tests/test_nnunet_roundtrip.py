"""End to end with stock nnU-Net: plan a non-default architecture, `nnUNetv2_train`, `nnUNetv2_predict`."""
from __future__ import annotations

import json
import os
import shlex
import subprocess

import nibabel as nib
import numpy as np
import pytest

from kt_nnunet.nnunet.ext_trainers import EXT_TRAINER_FOLDER
from kt_nnunet.testing.training import predict_argv, printed_command

pytestmark = pytest.mark.slow


def run(command, env):
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.mark.parametrize("architecture", ["segresnet"])  # from plugins/, reached only through its entry point
def test_stock_train_and_predict_a_planned_architecture(nnunet_env, architecture, tmp_path):
    from kt_nnunet.data import tiny_dataset

    raw = tiny_dataset(991, "RoundTrip", num_train=6, num_test=2)
    env = dict(os.environ, nnUNet_extTrainer=str(EXT_TRAINER_FOLDER), nnUNet_def_n_proc="1")
    env.pop("nnUNet_n_proc_DA", None)

    out = run(["kt-nnunet", "plan", "991", "--arch", architecture, "-c", "2d", "--tiny", "-np", "1",
               "--epochs", "2", "--iterations", "3", "--val-iterations", "1"], env)
    plans_name = f"ktPlans_{architecture}"
    assert f"-p {plans_name} -tr nnUNetTrainerKTBudget" in out
    plans = json.loads((nnunet_env["nnUNet_preprocessed"] / raw.name / f"{plans_name}.json").read_text())
    assert plans["configurations"]["2d"]["architecture"]["network_class_name"].startswith("kt_nnunet_segresnet.")

    train_env = dict(env, nnUNet_n_proc_DA="0")
    run(shlex.split(printed_command(out, "train")), train_env)  # as printed, so a user can paste it
    model = nnunet_env["nnUNet_results"] / raw.name / f"nnUNetTrainerKTBudget__{plans_name}__2d"
    assert (model / "fold_0" / "checkpoint_final.pth").is_file()
    progress = (model / "fold_0").glob("training_log_*.txt")
    assert any("Epoch 1" in p.read_text() and "Epoch 2" not in p.read_text() for p in progress)

    predictions = tmp_path / "predictions"
    # The checkpoint names nnUNetTrainer, so prediction needs no nnUNet_extTrainer (issue 11).
    predict_env = {k: v for k, v in env.items() if k != "nnUNet_extTrainer"}
    run(predict_argv(printed_command(out, "predict"), raw / "imagesTs", predictions), predict_env)
    cases = sorted(p.name for p in (raw / "labelsTs").iterdir())
    assert sorted(p.name for p in predictions.glob("*.nii.gz")) == cases
    for case in cases:
        prediction = nib.load(predictions / case)
        reference = nib.load(raw / "labelsTs" / case)
        assert prediction.shape == reference.shape
        np.testing.assert_allclose(prediction.affine, reference.affine, atol=1e-5)
        assert set(np.unique(np.asarray(prediction.dataobj))) <= {0, 1, 2}
