"""``train_model``: train a model of any registered architecture on a labelled dataset, as a teacher is trained.

    from kt_nnunet.training import train_model
    folder = train_model("Dataset501_Src", "unet", configuration="2d", fold=0, epochs=10, seed=0)

It plans the dataset for the architecture as ``kt-nnunet plan`` does (nnU-Net's planning and preprocessing,
reused when done, then ``ktPlans_<arch>[_seed<S>].json`` holding the budget and seed) and trains one fold
with ``nnUNetTrainerKTBudget`` through ``train_fold``, which never overwrites a finished fold without
``force``; ``continue_training`` resumes it. The budget trainer is used even without a budget, so a model
folder's name does not depend on whether a budget was given. ``prepare_training`` stops after planning.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from kt_nnunet.nnunet.training_api import TrainingError
from kt_nnunet.training.budget import nnUNetTrainerKTBudget


@dataclass(frozen=True)
class TrainingPlan:
    dataset_name: str
    configuration: str
    plans_name: str
    plans_file: Path
    architecture: str
    trainer: str = nnUNetTrainerKTBudget.__name__

    def train_command(self, fold: int = 0) -> str:
        return (f"nnUNetv2_train {self.dataset_name} {self.configuration} {fold} -p {self.plans_name} "
                f"-tr {self.trainer} -device cpu")

    def model_folder(self) -> Path:
        from kt_nnunet.nnunet.paths import results_folder

        return results_folder() / self.dataset_name / f"{self.trainer}__{self.plans_name}__{self.configuration}"


def prepare_training(dataset: str | int, architecture: str, *, configuration: str = "2d",
                     arch_kwargs: Optional[dict] = None, tiny: bool = False, epochs: Optional[int] = None,
                     iterations: Optional[int] = None, val_iterations: Optional[int] = None,
                     seed: Optional[int] = None, force: bool = False, num_processes: int = 2) -> TrainingPlan:
    """Plan ``dataset`` for ``architecture`` (``ktPlans_<arch>.json`` with the budget and seed); no training."""
    from kt_nnunet.nnunet.planning import write_architecture_plans

    budget = {k: v for k, v in {"num_epochs": epochs, "num_iterations_per_epoch": iterations,
                                "num_val_iterations_per_epoch": val_iterations}.items() if v is not None}
    planned = write_architecture_plans(dataset, architecture, configuration, arch_kwargs, tiny=tiny, force=force,
                                       num_processes=num_processes, budget=budget or None, seed=seed)
    return TrainingPlan(planned.dataset_name, planned.configuration, planned.plans_name, planned.plans_file,
                        planned.architecture)


def train_model(dataset: str | int, architecture: str, *, fold: int = 0, configuration: str = "2d",
                arch_kwargs: Optional[dict] = None, tiny: bool = False, epochs: Optional[int] = None,
                iterations: Optional[int] = None, val_iterations: Optional[int] = None, seed: Optional[int] = None,
                continue_training: bool = False, force: bool = False, device: str = "cpu", validate: bool = True,
                num_processes: int = 2, num_workers: Optional[int] = 0) -> Path:
    """Plan (``prepare_training``) and train one fold of ``architecture`` on the labelled ``dataset``; returns the
    model folder (``nnUNet_results/DatasetX/nnUNetTrainerKTBudget__ktPlans_<arch>__<configuration>``)."""
    from kt_nnunet.devices import parse_device
    from kt_nnunet.nnunet.training_api import check_fold_options, train_fold

    check_fold_options(force, continue_training, TrainingError)
    parse_device(device)  # before planning, which takes minutes
    plan = prepare_training(dataset, architecture, configuration=configuration, arch_kwargs=arch_kwargs, tiny=tiny,
                            epochs=epochs, iterations=iterations, val_iterations=val_iterations, seed=seed,
                            force=force, num_processes=num_processes)
    return train_fold(nnUNetTrainerKTBudget, plan.dataset_name, plan.configuration, fold, plan.plans_name, device,
                      continue_training=continue_training, force=force, validate=validate, num_workers=num_workers)
