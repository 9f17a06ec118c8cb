"""``transfer``: train a student of any architecture from one or more teachers, offline or online.

    from kt_nnunet.training import transfer
    result = transfer(["nnUNet_results/Dataset501_Src/nnUNetTrainer__nnUNetPlans__2d"], "Dataset503_Labelled",
                      "light_unet", transfer=TransferSettings(mode="online"), budget=Budget(epochs=10))

* **Offline** (default, the paper's method): the student trains with ``nnUNetTrainerKTOffline`` on a
  teacher-labelled dataset. If ``dataset`` is an unlabelled transferal set, it is labelled first with
  ``kt_nnunet.labelling.label_dataset`` into ``labelled_out``.
* **Offline soft** (``soft=True``): ``nnUNetTrainerKTOfflineSoft`` also learns the fused probabilities that
  ``label --save-probabilities`` kept (an unlabelled transferal set is labelled that way here).
* **Online**: ``nnUNetTrainerKTOnline`` (hard labels) or ``nnUNetTrainerKTOnlineSoft`` (``soft=True``)
  labels every augmented batch with the teachers. nnU-Net still needs ``labelsTr`` to preprocess the
  dataset (they serve patch sampling and the final validation only), so an unlabelled transferal set is
  labelled first here too.

Both plan with the student's architecture (nnU-Net's planning + ``ktOffline_<arch>`` / ``ktOnline_<arch>``
plans holding the settings), then train one fold through ``train_fold`` (which never overwrites a finished
fold without ``force``; ``continue_training`` resumes). ``prepare_transfer`` stops after planning and
returns the ``TrainingPlan`` (its ``train_command`` is the equivalent stock ``nnUNetv2_train`` command).
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Optional, Sequence

from kt_nnunet.errors import KtNnunetError
from kt_nnunet.nnunet.paths import preprocessed_folder, raw_folder
from kt_nnunet.training.offline import REFERENCE_KEY, nnUNetTrainerKTOffline
from kt_nnunet.training.offline_soft import SOFT_KEY, nnUNetTrainerKTOfflineSoft
from kt_nnunet.training.online import nnUNetTrainerKTOnline, nnUNetTrainerKTOnlineSoft
from kt_nnunet.teachers.compatibility import check_online_teachers, check_student_dataset
from kt_nnunet.teachers.errors import TeacherSettingsError
from kt_nnunet.teachers.kinds import resolve_kind
from kt_nnunet.teachers.loading import load_teacher
from kt_nnunet.teachers.spec import MODEL_FOLDER_KIND, TeacherSpec
from kt_nnunet.teachers.methods import FusionSettings
from kt_nnunet.training.online_settings import ONLINE_KEY, OnlineSettings
from kt_nnunet.training.settings import Budget, TransferSettings
from kt_nnunet.training.training_plan import TrainingPlan, check_training_options, train_plan


class TransferError(KtNnunetError):
    """A transfer run cannot start as asked."""


def transfer_trainer(online: bool, soft: bool):
    if online:
        return nnUNetTrainerKTOnlineSoft if soft else nnUNetTrainerKTOnline
    return nnUNetTrainerKTOfflineSoft if soft else nnUNetTrainerKTOffline


def _saved_probabilities(name: str) -> Path:
    """The fused probabilities ``kt-nnunet label --save-probabilities`` kept for the labelled dataset ``name``."""
    meta = _raw_dataset_json(name).get("kt_nnunet") or {}
    folder = raw_folder() / name / (meta.get("soft_labels") or "probabilitiesTr")
    if not meta.get("soft_labels") or not folder.is_dir():
        raise TransferError(f"{name} holds no teacher probabilities, which offline soft targets (--soft) learn "
                            "from; label the transferal set with `kt-nnunet label --save-probabilities` (or pass "
                            "--labelled-out to label it here), or train with hard labels (no --soft)")
    return folder


def _raw_dataset_json(name: str) -> dict:
    from kt_nnunet.nnunet.raw_dataset import load_dataset_json

    return load_dataset_json(raw_folder() / name)


def _has_labels(name: str) -> bool:
    meta = _raw_dataset_json(name).get("kt_nnunet") or {}
    labels = raw_folder() / name / "labelsTr"
    return meta.get("labelled") is not False and labels.is_dir() and any(labels.iterdir())


def _label_first(teachers, dataset: str, labelled_out, fusion: FusionSettings, device, force,
                 save_probabilities: bool = False) -> Path:
    if not teachers:
        raise TransferError(f"{dataset} has no labels yet (an unlabelled transferal set) and no --teacher was given "
                            "to label it")
    if labelled_out is None:
        raise TransferError(
            f"{dataset} has no labels yet (an unlabelled transferal set). Pass --labelled-out DatasetNNN_Name to "
            "label it with the teachers first, or run `kt-nnunet label` and give the labelled dataset")
    from kt_nnunet.labelling import label_dataset

    result = label_dataset(teachers, dataset, labelled_out, fusion=fusion, device=device, force=force,
                           progress=False, save_probabilities=save_probabilities)
    return result.dataset


def _transfer_settings(specs, models, mode: TransferSettings, fusion: FusionSettings, name: str,
                       reference_labels, reference_images) -> dict:
    """The plans keys the student's trainer reads: its online teachers, its soft targets, its reference labels."""
    settings = {}
    if mode.online:
        online_settings = OnlineSettings(
            tuple(replace(s, folds=m.folds, checkpoint_sha256=m.checkpoint_sha256) for s, m in zip(specs, models)),
            fusion.method, fusion.weights, fusion.min_confidence, float(mode.temperature), float(mode.alpha))
        try:
            online_settings.validate()
        except TeacherSettingsError as exc:
            raise TransferError(str(exc)) from exc
        settings[ONLINE_KEY] = online_settings.to_json()
    if mode.soft and not mode.online:
        settings[SOFT_KEY] = {"probabilities": str(_saved_probabilities(name)), "temperature": float(mode.temperature),
                              "alpha": float(mode.alpha)}
    if reference_labels:
        settings[REFERENCE_KEY] = {"labels": str(Path(reference_labels).absolute()),
                                   "images": str(Path(reference_images).absolute()) if reference_images else None}
    elif reference_images:
        raise TransferError("--reference-images needs --reference-labels (the Dice is computed against them)")
    return settings


def prepare_transfer(teachers: Sequence, dataset: str | int, architecture: str, *,
                     transfer: TransferSettings = TransferSettings(), fusion: FusionSettings = FusionSettings(),
                     budget: Budget = Budget(), configuration: str = "2d", tiny: bool = False,
                     arch_kwargs: Optional[dict] = None, seed: Optional[int] = None,
                     reference_labels: Optional[str] = None, reference_images: Optional[str] = None,
                     labelled_out: Optional[str] = None, force: bool = False, device: str = "auto",
                     num_processes: int = 1) -> TrainingPlan:
    """Check the teachers against the dataset, label it first if it is an unlabelled transferal set (into
    ``labelled_out``), plan the student; no training. Returns the student's ``TrainingPlan``.

    teachers: ``[KIND:]PATH[:FOLDS]`` texts or ``TeacherSpec``s; online, model folders only.
    transfer: offline or online, hard or soft targets (``TransferSettings``).
    fusion: how the teachers are fused when labelling here or online (``FusionSettings``).
    seed: makes the training repeatable (plans key ``kt_seed``; plans name ``..._seed<S>``).
    reference_labels / reference_images: offline, validation also reports the Dice against these labels.
    """
    from kt_nnunet.nnunet.planning import dataset_name, load_plans
    from kt_nnunet.registry import get_architecture
    from kt_nnunet.training.plans import write_model_plans

    budget.check(TransferError)
    transfer.check(TransferError)
    get_architecture(architecture).check_options(arch_kwargs)  # before labelling, not after
    online = transfer.online
    specs = [resolve_kind(TeacherSpec.parse(t)) for t in teachers]
    if online and not specs:
        raise TransferError("online transfer needs at least one --teacher model folder")
    name = str(dataset_name(dataset))
    labelled = None
    if not _has_labels(name):
        labelled = _label_first(specs, name, labelled_out, fusion, device, force,
                                save_probabilities=transfer.soft and not online)
        name = labelled.name
    # Online teachers must be model folders (load_teacher says so); offline, only model folders are checked
    # against the student's dataset here, the other kinds were checked when they labelled it.
    models = [load_teacher(spec) for spec in specs if online or spec.kind == MODEL_FOLDER_KIND]
    check_student_dataset(name, _raw_dataset_json(name), models)
    settings = _transfer_settings(specs, models, transfer, fusion, name, reference_labels, reference_images)
    prefix = "ktOnline" if online else ("ktOfflineSoft" if transfer.soft else "ktOffline")
    plan = write_model_plans(name, architecture, prefix, configuration=configuration, arch_kwargs=arch_kwargs,
                             tiny=tiny, budget=budget, settings=settings, seed=seed, force=force,
                             num_processes=num_processes)
    if transfer.soft and not online:  # the probabilities on the student's preprocessed grid
        from kt_nnunet.nnunet.soft_targets import preprocess_soft_targets

        preprocess_soft_targets(name, load_plans(name, plan.plans_name), configuration,
                                settings[SOFT_KEY]["probabilities"])
    if online:  # fail before training starts; the trainer checks again (stock nnUNetv2_train path)
        plans = load_plans(name, plan.plans_name)
        student_json = json.loads((preprocessed_folder() / name / "dataset.json").read_text())
        check_online_teachers(plans, plans["configurations"][configuration], student_json, models)
    return replace(plan, trainer=transfer_trainer(online, transfer.soft).__name__, labelled_dataset=labelled)


def transfer(teachers: Sequence, dataset: str | int, architecture: str, *, fold: int | str = 0,
             transfer: TransferSettings = TransferSettings(), fusion: FusionSettings = FusionSettings(),
             budget: Budget = Budget(), configuration: str = "2d", tiny: bool = False,
             arch_kwargs: Optional[dict] = None, seed: Optional[int] = None, reference_labels: Optional[str] = None,
             reference_images: Optional[str] = None, labelled_out: Optional[str] = None,
             continue_training: bool = False, force: bool = False, device: str = "auto", validate: bool = True,
             num_processes: int = 1, num_workers: Optional[int] = 0) -> Path:
    """``prepare_transfer`` (whose arguments it takes), then ``train_plan``: one fold; returns the model folder."""
    check_training_options(force, continue_training, device, TransferError)
    plan = prepare_transfer(teachers, dataset, architecture, transfer=transfer, fusion=fusion, budget=budget,
                            configuration=configuration, tiny=tiny, arch_kwargs=arch_kwargs, seed=seed,
                            reference_labels=reference_labels, reference_images=reference_images,
                            labelled_out=labelled_out, force=force, device=device, num_processes=num_processes)
    return train_plan(plan, fold=fold, device=device, continue_training=continue_training, force=force,
                      validate=validate, num_workers=num_workers)
