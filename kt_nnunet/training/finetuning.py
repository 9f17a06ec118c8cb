"""Fine-tuning: a transferred student continues on a small labelled downstream dataset.

As nnU-Net's pretraining recipe (``nnUNetv2_move_plans_between_datasets`` + ``-pretrained_weights``):

1. the student's own ``plans.json`` (architecture, patch size, spacing, normalization, intensity
   statistics) is written for the labelled dataset as ``ktFinetune_<arch>.json``, with a
   ``data_identifier`` naming that preprocessing, so the weights see inputs preprocessed as in training;
2. nnU-Net preprocesses the labelled dataset with those plans;
3. the fold is trained from the student's checkpoint through the pretrained-weights path, loaded with
   ``weights_only=True``; all weights are kept, heads included (the label sets must be equal).

``nnUNetTrainerKTFinetune`` is the budget trainer (``kt_budget``: epochs, iterations, ``initial_lr``) that
records the source model in ``kt_provenance.json``; its checkpoints name ``nnUNetTrainer``, so stock
``nnUNetv2_predict`` loads the result with or without ``nnUNet_extTrainer``.
"""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Optional

from kt_nnunet.errors import KtNnunetError
from kt_nnunet.nnunet.model_folder import (DEFAULT_CHECKPOINT, TrainedModel, available_folds, dataset_mismatches,
                                          load_trained_model)
from kt_nnunet.nnunet.paths import raw_folder
from kt_nnunet.training.base import nnUNetTrainerKTBase
from kt_nnunet.training.plans import write_plans
from kt_nnunet.training.settings import Budget
from kt_nnunet.training.training_plan import TrainingPlan, check_training_options, train_plan

FINETUNE_KEY = "kt_finetune"
FINETUNE_PREFIX = "ktFinetune"
# The fine-tune-only baseline: the student's network and preprocessing, trained from scratch on the same set.
SCRATCH_KEY = "kt_network_from"
SCRATCH_PREFIX = "ktScratch"
# Plans entries that decide what preprocessing produces (the data identifier hashes them).
PREPROCESSING_KEYS = ("spacing", "normalization_schemes", "use_mask_for_norm", "resampling_fn_data",
                      "resampling_fn_data_kwargs", "resampling_fn_seg", "resampling_fn_seg_kwargs",
                      "preprocessor_name")
KT_CONFIGURATION_KEYS = ("kt_budget", "kt_seed", "kt_online", "kt_reference", FINETUNE_KEY, SCRATCH_KEY,
                         "inherits_from")


class FinetuneError(KtNnunetError):
    """The student cannot be fine-tuned on this dataset as asked."""


class nnUNetTrainerKTFinetune(nnUNetTrainerKTBase):
    """Budget trainer for fine-tuning a student; records the source model (plans key ``kt_finetune``)."""

    def kt_provenance(self) -> dict:
        record = super().kt_provenance()
        record["mode"] = "finetune"
        record["source"] = self.configuration_manager.configuration.get(FINETUNE_KEY)
        return record


class nnUNetTrainerKTScratch(nnUNetTrainerKTBase):
    """The fine-tune-only baseline: a student's network trained from scratch (plans key ``kt_network_from``)."""

    def kt_provenance(self) -> dict:
        record = super().kt_provenance()
        record["mode"] = "from_scratch"
        record["network_from"] = self.configuration_manager.configuration.get(SCRATCH_KEY)
        return record


def architecture_name(plans: dict, configuration_manager) -> str:
    return (plans.get("kt_nnunet") or {}).get("architecture") or configuration_manager.network_arch_class_name.split(
        ".")[-1]


def finetune_plans(student: TrainedModel, dataset_name: str, dataset_json: dict, budget: dict,
                   reader_writer: Optional[str] = None, seed: Optional[int] = None, from_scratch: bool = False) -> dict:
    """The student's plans for ``dataset_name``: same network and preprocessing, new data identifier.

    ``from_scratch`` names them ``ktScratch_<arch>`` (the baseline that trains this network without the
    student's weights); the data identifier is the same either way, so both train on one preprocessing.
    """
    from kt_nnunet.training.plans import SEED_KEY, seeded_plans_name

    configuration = {k: v for k, v in student.configuration_manager.configuration.items()
                     if k not in KT_CONFIGURATION_KEYS}
    plans = copy.deepcopy(student.plans)
    relevant = {k: configuration.get(k) for k in PREPROCESSING_KEYS}
    relevant.update({k: plans.get(k) for k in ("transpose_forward", "foreground_intensity_properties_per_channel")})
    relevant["reader"] = reader_writer or plans.get("image_reader_writer")
    digest = hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:8]
    configuration["data_identifier"] = f"{FINETUNE_PREFIX}_{student.configuration}_{digest}"
    if budget:
        configuration["kt_budget"] = budget
    if seed is not None:
        configuration[SEED_KEY] = int(seed)
    configuration[SCRATCH_KEY if from_scratch else FINETUNE_KEY] = {
        "source_model": str(student.folder), "folds": list(student.folds), "checkpoint": student.checkpoint_name,
        "checkpoint_sha256": student.checkpoint_sha256, "source_dataset": student.plans.get("dataset_name"),
        "source_plans": student.plans.get("plans_name")}
    prefix = SCRATCH_PREFIX if from_scratch else FINETUNE_PREFIX
    plans_name = f"{prefix}_{architecture_name(student.plans, student.configuration_manager)}"
    plans.update(dataset_name=dataset_name, configurations={student.configuration: configuration},
                 plans_name=seeded_plans_name(plans_name, seed))
    if reader_writer:
        plans["image_reader_writer"] = reader_writer
    plans.setdefault("kt_nnunet", {})["network_from" if from_scratch else "finetuned_from"] = str(student.folder)
    return plans


def prepare_finetune(model_folder: str | Path, dataset: str | int, *, source_fold: Optional[int] = None,
                     checkpoint: str = DEFAULT_CHECKPOINT, budget: Budget = Budget(), seed: Optional[int] = None,
                     from_scratch: bool = False, force: bool = False, num_processes: int = 1) -> TrainingPlan:
    """Write ``ktFinetune_<arch>.json`` for the labelled ``dataset`` and preprocess it with the student's plans;
    returns the ``TrainingPlan``, which starts from the student's checkpoint (``source_fold``, default its first).

    ``budget.initial_lr`` is the fine-tuning learning rate. ``from_scratch``: the fine-tune-only baseline,
    ``ktScratch_<arch>.json``: the same network and preprocessing, trained without the student's weights (so a
    comparison of the two is between equal networks).
    """
    from kt_nnunet.nnunet.planning import check_raw_dataset, dataset_name, preprocess_with_own_plans
    from kt_nnunet.nnunet.raw_dataset import dataset_reader_name, labelled_training_cases

    budget.check(FinetuneError)
    folds = [source_fold] if source_fold is not None else available_folds(Path(model_folder), checkpoint)[:1]
    student = load_trained_model(model_folder, folds, checkpoint)  # weights_only=True, allow-list
    name = str(dataset_name(dataset))
    check_raw_dataset(name)
    raw = raw_folder() / name
    dataset_json = json.loads((raw / "dataset.json").read_text())
    problems = dataset_mismatches(student, dataset_json["labels"], dataset_json["channel_names"],
                                  ours="dataset", theirs="student")
    if problems:
        raise FinetuneError(f"cannot fine-tune {model_folder} on {name}: " + "; ".join(problems)
                            + ". Fine-tuning keeps the student's network, so the dataset needs its labels and channels")
    cases = labelled_training_cases(raw, dataset_json)
    if not cases:
        raise FinetuneError(f"{raw} has no labelled training cases; fine-tuning needs imagesTr + labelsTr")
    example = next(iter(cases.values()))["images"][0]
    reader = dataset_reader_name(dataset_json, example)
    plans = finetune_plans(student, name, dataset_json, budget.as_plans_budget(), reader, seed=seed,
                           from_scratch=from_scratch)
    plans_file = preprocess_with_own_plans(
        name, plans, student.configuration, dataset_json,
        lambda p: write_plans(name, p, student.configuration, force=force), num_processes=num_processes)
    architecture = architecture_name(student.plans, student.configuration_manager)
    if from_scratch:
        return TrainingPlan(name, student.configuration, plans["plans_name"], nnUNetTrainerKTScratch.__name__,
                            architecture, plans_file)
    return TrainingPlan(name, student.configuration, plans["plans_name"], nnUNetTrainerKTFinetune.__name__,
                        architecture, plans_file,
                        pretrained_weights=student.folder / f"fold_{student.folds[0]}" / checkpoint)


def finetune(model_folder: str | Path, dataset: str | int, *, fold: int | str = 0, source_fold: Optional[int] = None,
             checkpoint: str = DEFAULT_CHECKPOINT, budget: Budget = Budget(), seed: Optional[int] = None,
             from_scratch: bool = False, force: bool = False, continue_training: bool = False, device: str = "auto",
             validate: bool = True, num_processes: int = 1, num_workers: Optional[int] = 0) -> Path:
    """Fine-tune the student in ``model_folder`` on the labelled ``dataset`` (``prepare_finetune``, then
    ``train_plan``); returns the new model folder.

    ``fold`` is the fold of the labelled dataset to train. An existing finished fold is kept unless ``force``;
    ``continue_training`` resumes it.
    """
    check_training_options(force, continue_training, device, FinetuneError)
    plan = prepare_finetune(model_folder, dataset, source_fold=source_fold, checkpoint=checkpoint, budget=budget,
                            seed=seed, from_scratch=from_scratch, force=force, num_processes=num_processes)
    return train_plan(plan, fold=fold, device=device, continue_training=continue_training, force=force,
                      validate=validate, num_workers=num_workers)
