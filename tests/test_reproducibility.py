"""Seeded training is repeatable: one seed twice gives identical weights, another seed different weights.

Real nnU-Net preprocessing and training (initialisation, patch sampling, augmentation, SGD) on a tiny set.
"""
from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.slow

DATASET = 880
BUDGET = dict(epochs=2, iterations_per_epoch=3, val_iterations_per_epoch=1)


def _train(seed: int, force: bool = False):
    from kt_nnunet.nnunet.model_folder import load_checkpoint_safely
    from kt_nnunet.training.plans import write_architecture_plans
    from kt_nnunet.training.settings import Budget
    from kt_nnunet.nnunet.training_api import train_fold
    from kt_nnunet.training.budget import nnUNetTrainerKTBudget

    planned = write_architecture_plans(DATASET, "light_unet", tiny=True, num_processes=1, budget=Budget(**BUDGET), seed=seed)
    folder = train_fold(nnUNetTrainerKTBudget, DATASET, "2d", 0, planned.plans_name, validate=False, force=force)
    return folder, load_checkpoint_safely(folder / "fold_0" / "checkpoint_final.pth")["network_weights"]


def test_same_seed_same_weights_other_seed_other_weights(nnunet_env, monkeypatch):
    from kt_nnunet.data import tiny_dataset

    monkeypatch.delenv("nnUNet_n_proc_DA", raising=False)
    tiny_dataset(DATASET, "Seeded", num_train=6, num_test=0)
    torch.manual_seed(12345)  # whatever the process did before must not matter
    first_folder, first = _train(seed=7)
    torch.rand(100)           # nor what it did in between
    again_folder, again = _train(seed=7, force=True)
    assert again_folder == first_folder and first_folder.name.endswith("_seed7__2d")
    assert first.keys() == again.keys()
    for key in first:
        assert torch.equal(first[key], again[key]), f"{key} differs between two runs with seed 7"

    other_folder, other = _train(seed=8)
    assert other_folder != first_folder  # each seed trains into its own model folder
    assert any(not torch.equal(first[k], other[k]) for k in first), "seeds 7 and 8 gave identical weights"
