"""Plans files for transfer and fine-tuning runs, beside nnU-Net's own in ``nnUNet_preprocessed/DatasetX/``.

Trainer settings travel in plans configuration keys (nnU-Net's trainer ``__init__`` cannot take more
arguments, and the plans are copied into every model folder, so a model records how it was trained):

| plans file | written by | keys |
| --- | --- | --- |
| ``ktOffline_<arch>.json`` | ``transfer(online=False)`` | ``kt_budget``, ``kt_reference`` |
| ``ktOnline_<arch>.json`` | ``transfer(online=True)`` | ``kt_budget``, ``kt_online`` |
| ``ktFinetune_<arch>.json`` | ``finetune`` | ``kt_budget`` (with ``initial_lr``), ``kt_finetune`` |
| ``ktScratch_<arch>.json`` | ``finetune(from_scratch=True)`` | ``kt_budget``, ``kt_network_from`` |

With a seed, every file name ends in ``_seed<S>`` and its configuration holds ``kt_seed``, so each seed
trains into its own model folder.

Transfer plans are nnU-Net's plans with the student's architecture (``planning.architecture_plans``)
and keep nnU-Net's ``data_identifier``, so they reuse its preprocessed data. ``kt-nnunet plan``'s
``ktPlans_<arch>.json`` is never touched. A plans file holding a *different* configuration is only
replaced with ``force`` (trained models keep their own copy in their folder).
"""
from __future__ import annotations

from pathlib import Path

from kt_nnunet.errors import KtNnunetError
from kt_nnunet.nnunet.paths import preprocessed_folder


class TransferPlansError(KtNnunetError):
    """A plans file for a transfer or fine-tuning run cannot be written as asked."""


def plans_path(dataset_name: str, plans_name: str) -> Path:
    return preprocessed_folder() / dataset_name / f"{plans_name}.json"


def write_plans(dataset_name: str, plans: dict, configuration: str, force: bool = False) -> Path:
    """Write ``plans`` as ``<plans_name>.json``; other configurations already there are kept."""
    from kt_nnunet.nnunet.planning import write_plans_configuration

    return write_plans_configuration(plans_path(dataset_name, plans["plans_name"]), plans, configuration,
                                     force=force, error=TransferPlansError)


def transfer_plans(dataset: str | int, architecture: str, plans_prefix: str, configuration: str = "2d",
                   arch_kwargs: dict | None = None, tiny: bool = False, budget: dict | None = None,
                   settings: dict | None = None, force: bool = False, num_processes: int = 2,
                   seed: int | None = None) -> tuple[str, str]:
    """Plan/preprocess with nnU-Net if needed, write ``<prefix>_<arch>[_seed<S>].json``; ``(dataset, plans name)``."""
    from kt_nnunet.nnunet.planning import (architecture_plans, check_planned_network, ensure_preprocessed, load_plans,
                                           seeded_plans_name)
    from kt_nnunet.registry import get_architecture

    spec = get_architecture(architecture)
    name = str(ensure_preprocessed(dataset, configuration, num_processes=num_processes))
    plans = architecture_plans(load_plans(name), configuration, spec, arch_kwargs, tiny=tiny, budget=budget,
                               seed=seed)
    plans["plans_name"] = seeded_plans_name(f"{plans_prefix}_{spec.name}", seed)
    plans["configurations"][configuration].update({k: v for k, v in (settings or {}).items() if v is not None})
    check_planned_network(name, plans, configuration, spec)  # a student nnU-Net cannot train fails before training
    write_plans(name, plans, configuration, force=force)
    return name, plans["plans_name"]
