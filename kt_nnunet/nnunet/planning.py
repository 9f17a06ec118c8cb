"""nnU-Net planning and preprocessing, and plans files that swap in another architecture.

kt-nnunet never replaces nnU-Net's planner: it runs (or reuses) ``nnUNetPlans`` for a configuration, then
builds plans whose configuration is nnU-Net's, with only the ``architecture`` block replaced
(``swap_architecture``; ``kt_nnunet.training.plans`` adds kt-nnunet's keys, names and writes them). The configuration keeps nnU-Net's ``data_identifier``, so the same
preprocessed data serves every architecture, and stock ``nnUNetv2_train -p ktPlans_<arch>`` just works.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Callable, Optional

from kt_nnunet.errors import KtNnunetError
from kt_nnunet.nnunet.paths import preprocessed_folder, raw_folder

NNUNET_PLANS = "nnUNetPlans"


class PlanningError(KtNnunetError):
    """Planning or writing a plans file failed for a reason the user can fix."""


def dataset_name(dataset: str | int) -> str:
    """``501``, ``"501"`` or ``"Dataset501_Name"`` to the dataset folder name nnU-Net uses."""
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    raw_folder()  # a clear error if nnUNet_raw is unset, before nnU-Net's own
    try:
        return maybe_convert_to_dataset_name(int(dataset) if str(dataset).isdigit() else str(dataset))
    except RuntimeError as exc:
        raise PlanningError(f"dataset {dataset!r} not found in nnUNet_raw ({os.environ.get('nnUNet_raw')}) or "
                            "nnUNet_preprocessed; create it first (e.g. `kt-nnunet data synth`)") from exc


def dataset_id(name: str) -> int:
    return int(name[len("Dataset"):len("Dataset") + 3])


@contextlib.contextmanager
def _planning_environment():
    # nnUNet_n_proc_DA=0 (the fastest CPU training setting) crashes nnU-Net's planner (set_num_threads(0)).
    saved = os.environ.pop("nnUNet_n_proc_DA", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["nnUNet_n_proc_DA"] = saved


def load_plans(name: str, plans_name: str = NNUNET_PLANS) -> dict:
    path = preprocessed_folder() / name / f"{plans_name}.json"
    if not path.is_file():
        raise PlanningError(f"plans file {path} does not exist; run `kt-nnunet plan {name} --arch ...` first")
    return json.loads(path.read_text())


def _is_preprocessed(name: str, plans: dict, configuration: str) -> bool:
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    folder = preprocessed_folder() / name
    dataset_json = json.loads((folder / "dataset.json").read_text()) if (folder / "dataset.json").is_file() else None
    if dataset_json is None or configuration not in plans["configurations"]:
        return False
    data_folder = folder / PlansManager(plans).get_configuration(configuration).data_identifier
    return data_folder.is_dir() and len(list(data_folder.glob("*.pkl"))) == dataset_json["numTraining"]


def check_raw_dataset(name: str) -> None:
    """kt-nnunet's dataset validation before nnU-Net reads ``nnUNet_raw/<name>``: one error naming the file and
    the fix, and nothing written. nnU-Net's own check prints per-file tracebacks and raises a bare
    AssertionError or RuntimeError, and only after it has started writing into ``nnUNet_preprocessed``."""
    from kt_nnunet.nnunet.raw_validation import validate_dataset

    validate_dataset(raw_folder() / name, require_labels=True, check_test=False)


def ensure_preprocessed(dataset: str | int, configuration: str = "2d", num_processes: int = 2,
                        verify_dataset_integrity: bool = True) -> str:
    """Run nnU-Net's fingerprint, planner and preprocessing for ``configuration`` unless already done.

    ``num_processes=1`` runs them in this process, without nnU-Net's worker pools (``serial_pools``).
    """
    name = dataset_name(dataset)
    if _planned_and_preprocessed(name, configuration):
        return name
    check_raw_dataset(name)  # before the lock: a refused dataset leaves nothing in nnUNet_preprocessed
    with dataset_lock(name):  # parallel steps planning one dataset wait for the first (nnU-Net's files would tear)
        return _ensure_preprocessed(name, configuration, num_processes, verify_dataset_integrity)


def _planned_and_preprocessed(name: str, configuration: str) -> bool:
    plans_file = preprocessed_folder() / name / f"{NNUNET_PLANS}.json"
    return plans_file.is_file() and _is_preprocessed(name, json.loads(plans_file.read_text()), configuration)


def dataset_lock(name: str):
    """An exclusive lock on ``nnUNet_preprocessed/<name>``'s planning, preprocessing and split files."""
    from kt_nnunet.atomic_files import exclusive_lock

    return exclusive_lock(preprocessed_folder() / f".{name}.kt-nnunet.lock")


def _ensure_preprocessed(name: str, configuration: str, num_processes: int, verify_dataset_integrity: bool) -> str:
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (extract_fingerprints, plan_experiments,
                                                                      preprocess)

    plans_file = preprocessed_folder() / name / f"{NNUNET_PLANS}.json"
    if _planned_and_preprocessed(name, configuration):  # another process did it while this one waited
        return name
    from kt_nnunet.nnunet.serial_pools import serial_pools

    with _planning_environment(), serial_pools(num_processes <= 1):
        did = dataset_id(name)
        if not plans_file.is_file():
            extract_fingerprints([did], num_processes=num_processes, check_dataset_integrity=verify_dataset_integrity)
            plan_experiments([did])
        plans = json.loads(plans_file.read_text())
        if configuration not in plans["configurations"]:
            raise PlanningError(f"nnU-Net planned no {configuration!r} configuration for {name} (it planned "
                                f"{sorted(plans['configurations'])}); pick one of those with -c")
        preprocess([did], NNUNET_PLANS, configurations=[configuration], num_processes=[num_processes])
    return name


def preprocess_with_own_plans(name: str, plans: dict, configuration: str, dataset_json: dict,
                              write_plans: Callable[[dict], Path], num_processes: int = 2) -> Path:
    """Fingerprint raw dataset ``name`` and preprocess it with ``plans`` that nnU-Net did not plan for it (a
    trained model's, when fine-tuning). ``write_plans(plans)`` stores the plans file and returns its path."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, preprocess

    from kt_nnunet.nnunet.serial_pools import serial_pools

    folder = preprocessed_folder() / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset.json").write_text(json.dumps(dataset_json, indent=2))  # what nnU-Net's preprocessor reads
    with serial_pools(num_processes <= 1):
        if not (folder / "dataset_fingerprint.json").is_file():  # copied into the model folder by the trainer
            extract_fingerprints([dataset_id(name)], num_processes=num_processes, check_dataset_integrity=True)
        plans_file = write_plans(plans)
        if not _is_preprocessed(name, plans, configuration):
            preprocess([dataset_id(name)], plans["plans_name"], configurations=[configuration],
                       num_processes=[num_processes])
    return plans_file


def write_plans_configuration(path: Path, plans: dict, configuration: str, force: bool = False,
                              error: type = PlanningError) -> Path:
    """Write ``plans`` to ``path`` atomically, keeping the other configurations planned there earlier; a different
    ``configuration`` already there is replaced only with ``force`` (models trained with it keep their own copy)."""
    from kt_nnunet.atomic_files import atomic_write_json

    if path.is_file():
        existing = json.loads(path.read_text())
        old, new = existing.get("configurations", {}).get(configuration), plans["configurations"][configuration]
        if old is not None and old != new and not force:
            changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise error(f"{path} already holds a different {configuration!r} configuration (changed: "
                        f"{', '.join(changed)}); pass --force to replace it (models trained with it keep their own "
                        "plans.json)")
        plans = dict(plans, configurations={**existing.get("configurations", {}), **plans["configurations"]})
    atomic_write_json(path, plans)
    return path


def swap_architecture(plans: dict, configuration: str, spec, arch_kwargs_overrides: Optional[dict] = None,
                      tiny: bool = False) -> dict:
    """A copy of nnU-Net's ``plans`` holding only ``configuration``, resolved (no ``inherits_from``), with its
    network block built for ``spec``'s architecture at nnU-Net's planned patch size and strides."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from kt_nnunet.architectures.spec import PlanGeometry

    if configuration not in plans["configurations"]:
        raise PlanningError(f"configuration {configuration!r} is not in the plans (available: "
                            f"{sorted(plans['configurations'])})")
    resolved = PlansManager(plans).get_configuration(configuration).configuration
    nnunet_arch = resolved["architecture"]["arch_kwargs"]
    geometry = PlanGeometry.create(resolved["patch_size"], nnunet_arch["strides"], nnunet_arch.get("kernel_sizes"))
    if geometry.dim not in spec.dims:
        raise PlanningError(f"architecture {spec.name!r} supports {list(spec.dims)}D only; configuration "
                            f"{configuration!r} is {geometry.dim}D")
    arch_kwargs = spec.arch_kwargs(geometry, nnunet_arch, tiny=tiny, **(arch_kwargs_overrides or {}))
    try:
        spec.check_patch_size(geometry, arch_kwargs)
    except ValueError as exc:
        raise PlanningError(str(exc)) from exc
    new_configuration = {k: v for k, v in resolved.items() if k != "inherits_from"}
    new_configuration["architecture"] = {
        "network_class_name": spec.class_path,
        "arch_kwargs": arch_kwargs,
        "_kw_requires_import": list(spec.kw_requires_import),
    }
    return dict({k: v for k, v in plans.items() if k != "configurations"},
                configurations={configuration: new_configuration})


def network_channels(plans: dict, configuration: str, dataset_json: dict) -> tuple[int, int]:
    """``(input channels, output channels)`` nnU-Net builds the network of ``configuration`` with."""
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    manager = PlansManager(plans)
    return (determine_num_input_channels(manager, configuration, dataset_json),
            manager.get_label_manager(dataset_json).num_segmentation_heads)
