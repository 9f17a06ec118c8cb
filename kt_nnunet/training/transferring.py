"""``transfer``: train a student of any architecture from one or more teachers, offline or online.

    from kt_nnunet.training import transfer
    result = transfer(["nnUNet_results/Dataset501_Src/nnUNetTrainer__nnUNetPlans__2d"], "Dataset503_Labelled",
                      "light_unet", configuration="2d", fold=0)

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
returns the equivalent stock ``nnUNetv2_train`` command.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Sequence

from kt_nnunet.errors import KtNnunetError
from kt_nnunet.nnunet.paths import preprocessed_folder, raw_folder
from kt_nnunet.training.offline import REFERENCE_KEY, nnUNetTrainerKTOffline
from kt_nnunet.training.offline_soft import SOFT_KEY, nnUNetTrainerKTOfflineSoft
from kt_nnunet.training.online import nnUNetTrainerKTOnline, nnUNetTrainerKTOnlineSoft
from kt_nnunet.training.plans import transfer_plans
from kt_nnunet.teachers.compatibility import check_online_teachers, check_student_dataset
from kt_nnunet.teachers.errors import TeacherSettingsError
from kt_nnunet.teachers.kinds import resolve_kind
from kt_nnunet.teachers.loading import load_teacher
from kt_nnunet.teachers.spec import MODEL_FOLDER_KIND, TeacherSpec
from kt_nnunet.training.online_settings import ONLINE_KEY, OnlineSettings


class TransferError(KtNnunetError):
    """A transfer run cannot start as asked."""


@dataclass(frozen=True)
class TransferPlan:
    dataset_name: str
    configuration: str
    plans_name: str
    trainer: str
    labelled_dataset: Optional[Path] = None   # set when the transferal set was labelled first

    def train_command(self, fold: int = 0) -> str:
        return (f"nnUNetv2_train {self.dataset_name} {self.configuration} {fold} -p {self.plans_name} "
                f"-tr {self.trainer} -device cpu")

    def model_folder(self) -> Path:
        from kt_nnunet.nnunet.paths import results_folder

        return results_folder() / self.dataset_name / f"{self.trainer}__{self.plans_name}__{self.configuration}"


def trainer_class(online: bool, soft: bool):
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


def _label_first(teachers, dataset: str, labelled_out, fusion, weights, min_confidence, device, force,
                 save_probabilities: bool = False) -> Path:
    if not teachers:
        raise TransferError(f"{dataset} has no labels yet (an unlabelled transferal set) and no --teacher was given "
                            "to label it")
    if labelled_out is None:
        raise TransferError(
            f"{dataset} has no labels yet (an unlabelled transferal set). Pass --labelled-out DatasetNNN_Name to "
            "label it with the teachers first, or run `kt-nnunet label` and give the labelled dataset")
    try:
        from kt_nnunet.labelling import label_dataset
    except ImportError as exc:  # pragma: no cover - only while the labelling package is incomplete
        raise TransferError("teacher labelling (`kt-nnunet label`) is not available in this installation; label "
                            f"{dataset} first and pass the labelled dataset") from exc
    result = label_dataset(teachers, dataset, labelled_out, fusion=fusion, weights=weights,
                           min_confidence=min_confidence, device=device, force=force, progress=False,
                           save_probabilities=save_probabilities)
    return result.dataset


def prepare_transfer(teachers: Sequence, dataset: str | int, architecture: str, *, online: bool = False,
                     soft: bool = False, temperature: float = 2.0, alpha: float = 0.5, fusion: str = "mean",
                     weights: Optional[Sequence[float]] = None, min_confidence: Optional[float] = None,
                     configuration: str = "2d", tiny: bool = False, arch_kwargs: Optional[dict] = None,
                     epochs: Optional[int] = None, iterations: Optional[int] = None,
                     val_iterations: Optional[int] = None, reference_labels: Optional[str] = None,
                     reference_images: Optional[str] = None, labelled_out: Optional[str] = None,
                     force: bool = False, device: str = "cpu", num_processes: int = 2,
                     seed: Optional[int] = None) -> TransferPlan:
    """Check teachers against the dataset, label it first if needed, plan the student; no training.

    ``seed`` makes the training repeatable (plans key ``kt_seed``; plans name ``..._seed<S>``).
    """
    from kt_nnunet.nnunet.planning import check_budget, dataset_name, load_plans
    from kt_nnunet.registry import get_architecture

    check_budget(TransferError, epochs=epochs, iterations=iterations, val_iterations=val_iterations)
    get_architecture(architecture).check_options(arch_kwargs)  # before labelling, not after
    cls = trainer_class(online, soft)
    specs = [resolve_kind(TeacherSpec.parse(t)) for t in teachers]
    if online and not specs:
        raise TransferError("online transfer needs at least one --teacher model folder")
    name = str(dataset_name(dataset))
    labelled = None
    if not _has_labels(name):
        labelled = _label_first(specs, name, labelled_out, fusion, weights, min_confidence, device, force,
                                save_probabilities=soft and not online)
        name = labelled.name
    # Online teachers must be model folders (load_teacher says so); offline, only model folders are checked
    # against the student's dataset here, the other kinds were checked when they labelled it.
    models = [load_teacher(spec) for spec in specs if online or spec.kind == MODEL_FOLDER_KIND]
    check_student_dataset(name, _raw_dataset_json(name), models)
    budget = {k: v for k, v in {"num_epochs": epochs, "num_iterations_per_epoch": iterations,
                                "num_val_iterations_per_epoch": val_iterations}.items() if v is not None}
    settings = {}
    if online:
        online_settings = OnlineSettings(
            tuple(replace(s, folds=m.folds, checkpoint_sha256=m.checkpoint_sha256) for s, m in zip(specs, models)),
            fusion, tuple(weights) if weights is not None else None, min_confidence, float(temperature), float(alpha))
        try:
            online_settings.validate()
        except TeacherSettingsError as exc:
            raise TransferError(str(exc)) from exc
        settings[ONLINE_KEY] = online_settings.to_json()
    if soft and not online:
        settings[SOFT_KEY] = {"probabilities": str(_saved_probabilities(name)), "temperature": float(temperature),
                              "alpha": float(alpha)}
    if reference_labels:
        settings[REFERENCE_KEY] = {"labels": str(Path(reference_labels).absolute()),
                                   "images": str(Path(reference_images).absolute()) if reference_images else None}
    elif reference_images:
        raise TransferError("--reference-images needs --reference-labels (the Dice is computed against them)")
    prefix = "ktOnline" if online else ("ktOfflineSoft" if soft else "ktOffline")
    name, plans_name = transfer_plans(name, architecture, prefix, configuration,
                                      arch_kwargs, tiny, budget, settings, force=force, num_processes=num_processes,
                                      seed=seed)
    if soft and not online:  # the probabilities on the student's preprocessed grid
        from kt_nnunet.nnunet.soft_targets import preprocess_soft_targets

        preprocess_soft_targets(name, load_plans(name, plans_name), configuration, settings[SOFT_KEY]["probabilities"])
    if online:  # fail before training starts; the trainer checks again (stock nnUNetv2_train path)
        plans = load_plans(name, plans_name)
        student_json = json.loads((preprocessed_folder() / name / "dataset.json").read_text())
        check_online_teachers(plans, plans["configurations"][configuration], student_json, models)
    return TransferPlan(name, configuration, plans_name, cls.__name__, labelled)


def transfer(teachers: Sequence, dataset: str | int, architecture: str, *, fold: int = 0, online: bool = False,
             soft: bool = False, continue_training: bool = False, force: bool = False, device: str = "cpu",
             validate: bool = True, num_workers: Optional[int] = 0, **options) -> Path:
    """Plan (``prepare_transfer``, whose keyword options it takes) and train one fold; returns the model folder.

    teachers: model folders (``DIR``, ``DIR:0,1``; relative to ``$nnUNet_results`` allowed). Offline they
        are checked against the dataset's labels and used to label an unlabelled transferal set.
    """
    from kt_nnunet.devices import parse_device
    from kt_nnunet.nnunet.training_api import check_fold_options, train_fold

    check_fold_options(force, continue_training, TransferError)
    parse_device(device)  # before labelling and planning, which take minutes
    plan = prepare_transfer(teachers, dataset, architecture, online=online, soft=soft, force=force, device=device,
                            **options)
    return train_fold(trainer_class(online, soft), plan.dataset_name, plan.configuration, fold, plan.plans_name,
                      device, continue_training=continue_training, force=force, validate=validate,
                      num_workers=num_workers)
