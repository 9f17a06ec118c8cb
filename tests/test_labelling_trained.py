"""A teacher trained by real nnU-Net training (kt budget trainer) labels together with a stock-format teacher."""
from __future__ import annotations

import json

import numpy as np
import pytest
from labelling_teachers import labels_of, teachers  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow


def test_trained_teacher_and_differently_preprocessed_teacher_label_a_dataset(nnunet_env, teachers):  # noqa: F811
    from click.testing import CliRunner

    from kt_nnunet.cli import main
    from kt_nnunet.data import tiny_dataset
    from kt_nnunet.nnunet.inference import verify_dataset_integrity
    from kt_nnunet.training.plans import write_architecture_plans
    from kt_nnunet.training.settings import Budget
    from kt_nnunet.nnunet.training_api import train_fold
    from kt_nnunet.training.budget import nnUNetTrainerKTBudget

    source = tiny_dataset(850, "Source", num_train=5, num_test=3, seed=1)
    planned = write_architecture_plans(850, "unet", "2d", tiny=True, num_processes=1,
                                       budget=Budget(1, 2, 1))
    model = train_fold(nnUNetTrainerKTBudget, 850, "2d", 0, planned.plans_name, validate=False)
    relative = f"{source.name}/{model.name}"  # found under $nnUNet_results

    result = CliRunner().invoke(main, ["label", "--teacher", f"{relative}:0", "--teacher", str(teachers["ct2mm"]),
                                       "--images", str(source / "imagesTs"), "--out", "Dataset851_Labelled",
                                       "--min-confidence", "0.5", "--no-progress"])
    assert result.exit_code == 0, result.output
    dataset = nnunet_env["nnUNet_raw"] / "Dataset851_Labelled"
    assert f"dataset: {dataset}" in result.output
    labels = labels_of(dataset)
    assert sorted(labels) == ["test_000.nii.gz", "test_001.nii.gz", "test_002.nii.gz"]
    assert all(a.shape == (64, 64) and set(np.unique(a)) <= {0, 1, 2, 3} for a in labels.values())
    provenance = json.loads((dataset / "provenance.json").read_text())
    first, second = provenance["teachers"]
    assert first["trainer"] == "nnUNetTrainerKTBudget" and first["plans_name"] == "ktPlans_unet"
    assert first["architecture"].endswith(".UNet") and second["architecture"].endswith("PlainConvUNet")
    assert first["normalization_schemes"] != second["normalization_schemes"]
    assert first["spacing"] != second["spacing"]
    verify_dataset_integrity(dataset)
