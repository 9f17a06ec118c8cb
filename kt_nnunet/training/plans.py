"""kt-nnunet's plans files (a model of another architecture, a transfer, a fine-tuning), beside nnU-Net's own in ``nnUNet_preprocessed/DatasetX/``.

Trainer settings travel in plans configuration keys (nnU-Net's trainer ``__init__`` cannot take more
arguments, and the plans are copied into every model folder, so a model records how it was trained):

| plans file | written by | keys |
| --- | --- | --- |
| ``ktPlans_<arch>.json`` | ``kt-nnunet plan``, ``train_model`` | ``kt_budget`` |
| ``ktOffline_<arch>.json`` | ``transfer(online=False)`` | ``kt_budget``, ``kt_reference`` |
| ``ktOnline_<arch>.json`` | ``transfer(online=True)`` | ``kt_budget``, ``kt_online`` |
| ``ktFinetune_<arch>.json`` | ``finetune`` | ``kt_budget`` (with ``initial_lr``), ``kt_finetune`` |
| ``ktScratch_<arch>.json`` | ``finetune(from_scratch=True)`` | ``kt_budget``, ``kt_network_from`` |

With a seed, every file name ends in ``_seed<S>`` and its configuration holds ``kt_seed``, so each seed
trains into its own model folder.

All of them are nnU-Net's plans with the student's architecture (``architecture_plans``)
and keep nnU-Net's ``data_identifier``, so they reuse its preprocessed data; nnU-Net's own ``nnUNetPlans.json``
is never touched. A plans file holding a *different* configuration is only
replaced with ``force`` (trained models keep their own copy in their folder).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Optional

from kt_nnunet.errors import KtNnunetError
from kt_nnunet.nnunet.paths import preprocessed_folder
from kt_nnunet.training.settings import Budget
from kt_nnunet.training.training_plan import BUDGET_TRAINER, STOCK_TRAINER, TrainingPlan


BUDGET_KEY = "kt_budget"  # read by kt_nnunet.training.budget.nnUNetTrainerKTBudget
SEED_KEY = "kt_seed"      # read by the same trainer: seeds initialisation, patch sampling and augmentation
KT_PLANS_PREFIX = "ktPlans"


class TransferPlansError(KtNnunetError):
    """A plans file for a transfer or fine-tuning run cannot be written as asked."""


def plans_path(dataset_name: str, plans_name: str) -> Path:
    return preprocessed_folder() / dataset_name / f"{plans_name}.json"


def write_plans(dataset_name: str, plans: dict, configuration: str, force: bool = False,
                error: type = TransferPlansError) -> Path:
    """Write ``plans`` as ``<plans_name>.json``; other configurations already there are kept."""
    from kt_nnunet.nnunet.planning import write_plans_configuration

    return write_plans_configuration(plans_path(dataset_name, plans["plans_name"]), plans, configuration,
                                     force=force, error=error)


def seeded_plans_name(plans_name: str, seed: Optional[int]) -> str:
    """Each seed gets its own plans name, hence its own model folder (``TRAINER__PLANS__CONFIG``)."""
    return plans_name if seed is None else f"{plans_name}_seed{int(seed)}"


def architecture_plans(plans: dict, configuration: str, spec, arch_kwargs_overrides: Optional[dict] = None,
                       tiny: bool = False, budget: Optional[dict] = None, seed: Optional[int] = None,
                       plans_prefix: str = KT_PLANS_PREFIX) -> dict:
    """nnU-Net's ``plans`` with ``spec``'s architecture (``planning.swap_architecture``), named
    ``<plans_prefix>_<arch>[_seed<S>]`` (``ktPlans_unet_seed3``), with ``budget`` as ``kt_budget``, ``seed`` as ``kt_seed`` and what it was
    planned from under ``kt_nnunet``."""
    from kt_nnunet.nnunet.planning import swap_architecture

    new_plans = swap_architecture(plans, configuration, spec, arch_kwargs_overrides, tiny)
    if budget:
        new_plans["configurations"][configuration][BUDGET_KEY] = {k: v for k, v in budget.items() if v is not None}
    if seed is not None:
        new_plans["configurations"][configuration][SEED_KEY] = int(seed)
    new_plans["plans_name"] = seeded_plans_name(f"{plans_prefix}_{spec.name}", seed)
    new_plans["kt_nnunet"] = {"architecture": spec.name, "plugin": spec.plugin, "based_on": plans["plans_name"],
                              "tiny": tiny}
    return new_plans


def check_planned_network(name: str, plans: dict, configuration: str, spec) -> None:
    """The quick contract check of ``spec`` at the geometry, arch_kwargs and channel counts ``plans`` give it, so a
    network nnU-Net cannot train fails here, naming the plugin and the rule, not at the first training step."""
    import json

    from kt_nnunet.architectures.spec import PlanGeometry
    from kt_nnunet.nnunet.planning import network_channels
    from kt_nnunet.registry import check_contract

    dataset_json = json.loads((preprocessed_folder() / name / "dataset.json").read_text())
    config = plans["configurations"][configuration]
    arch_kwargs = config["architecture"]["arch_kwargs"]
    # The trainer's deep-supervision targets follow these strides; without them check_contract names that rule.
    strides = arch_kwargs.get("strides") or [[1] * len(config["patch_size"])]
    geometry = PlanGeometry.create(config["patch_size"], strides, arch_kwargs.get("kernel_sizes"))
    check_contract(spec, geometry, *network_channels(plans, configuration, dataset_json), arch_kwargs=arch_kwargs)


def write_model_plans(dataset: str | int, architecture: str, plans_prefix: str = KT_PLANS_PREFIX, *,
                      configuration: str = "2d", arch_kwargs: Optional[dict] = None, tiny: bool = False,
                      budget: Budget = Budget(), settings: Optional[dict] = None, seed: Optional[int] = None,
                      force: bool = False, num_processes: int = 1, error: type = TransferPlansError) -> TrainingPlan:
    """Plan/preprocess with nnU-Net if needed, then write ``<prefix>_<arch>[_seed<S>].json`` beside nnU-Net's plans:
    nnU-Net's configuration with the architecture swapped in, ``budget`` as ``kt_budget``, ``seed`` as ``kt_seed``
    and ``settings`` (a transfer's plans keys) added. The network contract is checked at the planned geometry
    first, so a network nnU-Net cannot train fails here, not at its first training step. Returns the plan of a
    ``nnUNetTrainerKTBudget`` training (the caller names another trainer with ``dataclasses.replace``).
    """
    from kt_nnunet.nnunet.planning import ensure_preprocessed, load_plans
    from kt_nnunet.registry import get_architecture

    spec = get_architecture(architecture)
    budget.check(error)
    spec.check_options(arch_kwargs)
    name = str(ensure_preprocessed(dataset, configuration, num_processes=num_processes))
    plans = architecture_plans(load_plans(name), configuration, spec, arch_kwargs, tiny=tiny,
                               budget=budget.as_plans_budget(), seed=seed, plans_prefix=plans_prefix)
    plans["configurations"][configuration].update({k: v for k, v in (settings or {}).items() if v is not None})
    check_planned_network(name, plans, configuration, spec)
    plans_file = write_plans(name, plans, configuration, force=force, error=error)
    return TrainingPlan(name, configuration, plans["plans_name"], BUDGET_TRAINER, spec.name, plans_file)


def write_architecture_plans(dataset: str | int, architecture: str, configuration: str = "2d",
                             arch_kwargs: Optional[dict] = None, tiny: bool = False, force: bool = False,
                             num_processes: int = 1, budget: Budget = Budget(),
                             seed: Optional[int] = None) -> TrainingPlan:
    """``kt-nnunet plan``: ``ktPlans_<architecture>[_seed<S>].json``, for stock ``nnUNetv2_train -p``.

    Its plan names stock ``nnUNetTrainer`` when there is neither a budget nor a seed (the plans are then
    nnU-Net's own with another network), else ``nnUNetTrainerKTBudget``, which reads them.
    """
    from kt_nnunet.nnunet.planning import PlanningError

    plan = write_model_plans(dataset, architecture, configuration=configuration, arch_kwargs=arch_kwargs, tiny=tiny,
                             budget=budget, seed=seed, force=force, num_processes=num_processes, error=PlanningError)
    if not budget.as_plans_budget() and seed is None:
        plan = replace(plan, trainer=STOCK_TRAINER)
    return plan
