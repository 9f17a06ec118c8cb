"""A budget trainer for checkpoint and plans tests that train nothing: ``build_trainer(nnUNetTrainerKTBudget, ...)``
on a hand-written plans file and a preprocessed folder holding one placeholder file (nnU-Net's ``initialize`` only
looks at file endings there)."""
from __future__ import annotations

import json

import pytest
from labelling_teachers import nnunet_plans, with_architecture

DATASET = "Dataset611_Reliable"
PLANS_NAME = "ktPlans_light_unet"


@pytest.fixture
def budget_trainer(nnunet_env):
    """``build_trainer(nnUNetTrainerKTBudget, ...)`` on a tiny light U-Net plan, without preprocessing."""
    from kt_nnunet.nnunet.training_api import build_trainer
    from kt_nnunet.training.budget import nnUNetTrainerKTBudget

    plans = with_architecture(nnunet_plans(), "light_unet")
    plans["dataset_name"] = DATASET
    plans["configurations"]["2d"]["kt_budget"] = {"num_epochs": 1, "num_iterations_per_epoch": 2,
                                                  "num_val_iterations_per_epoch": 1}
    folder = nnunet_env["nnUNet_preprocessed"] / DATASET
    (folder / plans["configurations"]["2d"]["data_identifier"]).mkdir(parents=True)
    (folder / plans["configurations"]["2d"]["data_identifier"] / "case_000.b2nd").touch()
    (folder / f"{PLANS_NAME}.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps({"channel_names": {"0": "image"}, "numTraining": 1,
                                                     "labels": {"background": 0, "class1": 1, "class2": 2},
                                                     "file_ending": ".nii.gz"}))
    (folder / "splits_final.json").write_text(json.dumps([{"train": ["case_000"], "val": ["case_000"]}] * 5))

    def build():
        return build_trainer(nnUNetTrainerKTBudget, DATASET, "2d", 0, PLANS_NAME, continue_training=True)

    return build
