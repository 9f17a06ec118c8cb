"""``train_model``: train a model of any registered architecture on a labelled dataset, as a teacher is trained.

    from kt_nnunet.training import Budget, train_model
    folder = train_model("Dataset501_Src", "unet", configuration="2d", fold=0, budget=Budget(epochs=10), seed=0)

``prepare_training`` plans the dataset for the architecture as ``kt-nnunet plan`` does (nnU-Net's planning and
preprocessing, reused when done, then ``ktPlans_<arch>[_seed<S>].json`` holding the budget and seed) and returns
the ``TrainingPlan``; ``train_plan`` trains one fold of it with ``nnUNetTrainerKTBudget``, never overwriting a
finished fold without ``force``. The budget trainer is used even without a budget, so a model folder's name
does not depend on whether a budget was given.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Optional

from kt_nnunet.nnunet.training_api import TrainingError
from kt_nnunet.training.settings import Budget
from kt_nnunet.training.training_plan import BUDGET_TRAINER, TrainingPlan, check_training_options, train_plan


def prepare_training(dataset: str | int, architecture: str, *, configuration: str = "2d",
                     arch_kwargs: Optional[dict] = None, tiny: bool = False, budget: Budget = Budget(),
                     seed: Optional[int] = None, force: bool = False, num_processes: int = 1) -> TrainingPlan:
    """Plan ``dataset`` for ``architecture`` (``ktPlans_<arch>.json`` with the budget and seed); no training.

    ``num_processes``: nnU-Net's preprocessing workers (1: in this process, fastest on a few cores).
    """
    from kt_nnunet.training.plans import write_architecture_plans

    plan = write_architecture_plans(dataset, architecture, configuration, arch_kwargs, tiny=tiny, force=force,
                                    num_processes=num_processes, budget=budget, seed=seed)
    return replace(plan, trainer=BUDGET_TRAINER)


def train_model(dataset: str | int, architecture: str, *, fold: int | str = 0, configuration: str = "2d",
                arch_kwargs: Optional[dict] = None, tiny: bool = False, budget: Budget = Budget(),
                seed: Optional[int] = None, continue_training: bool = False, force: bool = False,
                device: str = "auto", validate: bool = True, num_processes: int = 1,
                num_workers: Optional[int] = 0) -> Path:
    """``prepare_training``, then ``train_plan``; returns the model folder
    (``nnUNet_results/DatasetX/nnUNetTrainerKTBudget__ktPlans_<arch>__<configuration>``)."""
    check_training_options(force, continue_training, device, TrainingError)
    plan = prepare_training(dataset, architecture, configuration=configuration, arch_kwargs=arch_kwargs, tiny=tiny,
                            budget=budget, seed=seed, force=force, num_processes=num_processes)
    return train_plan(plan, fold=fold, device=device, continue_training=continue_training, force=force,
                      validate=validate, num_workers=num_workers)
