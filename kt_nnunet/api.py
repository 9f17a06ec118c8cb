"""The public API, ``import kt_nnunet as kt``: ``kt.train``, ``kt.label``, ``kt.transfer``, ``kt.finetune``,
``kt.evaluate`` (and ``kt.run_experiment``), one argument vocabulary over the stage functions (see docs/api.md).

Every function takes the same kinds of argument under the same names:

* a model (``teachers``, ``model``): a model folder as a ``Path`` or ``str`` (``DatasetX/TRAINER__PLANS__CFG``,
  relative to ``$nnUNet_results`` allowed), or the ``TrainedModelResult`` of ``train``/``transfer``/``finetune``
  (its fold is the one used);
* a dataset (``dataset``, ``images``, ``test``): an id (``501``), a name (``Dataset501_Src``), the dataset's
  folder, or the ``LabellingResult`` of ``label``;
* ``fold``, ``device`` (``auto``: CUDA when torch sees one, else CPU), ``seed``, ``force``, the budget
  ``epochs``/``iterations``/``val_iterations``, and ``num_processes`` for nnU-Net's preprocessing (default 1:
  in this process, as an experiment does; more start worker pools, which pay off only on many cores);
* ``validate`` (default False): nnU-Net's final validation of a trained fold is skipped, as an experiment skips
  it, because ``evaluate`` scores models on a held-out test set, and because its spawned export pool re-imports
  a calling script's ``__main__``.

They wrap the stage functions (``kt_nnunet.training.train_model``, ``kt_nnunet.labelling.label_dataset``,
``kt_nnunet.training.transfer``/``finetune``, ``kt_nnunet.evaluation.evaluate_model``), turning the loose
keywords into the stages' settings (``Budget``, ``TransferSettings``, ``FusionSettings``) in one place. A wrong kind of argument raises ``ApiArgumentError`` (a ``KtNnunetError``) naming
the argument and what it takes. Heavy imports wait for the first call, so importing this module is cheap.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

from kt_nnunet.errors import KtNnunetError

DEFAULT_CHECKPOINT = "checkpoint_final.pth"


class ApiArgumentError(KtNnunetError, TypeError):
    """An argument of the public API is of the wrong kind (a model where a dataset belongs, ...)."""


@dataclass(frozen=True)
class TrainedModelResult:
    """One trained fold: what ``train``, ``transfer`` and ``finetune`` return, and what ``label``, ``transfer``
    (as teachers), ``finetune`` and ``evaluate`` (as the model) accept."""

    model_folder: Path           # nnUNet_results/DatasetX/TRAINER__PLANS__CFG
    fold: Union[int, str]        # the fold trained (what the next step uses)
    architecture: str            # the registered architecture name
    role: str                    # teacher, student, multi_teacher_student, kt_finetune or finetune_only
    teachers: tuple = ()         # the teachers' model folders, for a transferred student

    @property
    def dataset(self) -> str:
        """The dataset it was trained on (``DatasetNNN_Name``)."""
        return self.model_folder.parent.name

    @property
    def configuration(self) -> str:
        return self.model_folder.name.rsplit("__", 1)[-1]

    @property
    def checkpoint(self) -> Path:
        return self.model_folder / f"fold_{self.fold}" / DEFAULT_CHECKPOINT


ModelLike = Union[TrainedModelResult, Path, str]


def _describe(value) -> str:
    from kt_nnunet.labelling.api import LabellingResult

    if isinstance(value, TrainedModelResult):
        return f"the trained model {value.model_folder}"
    if isinstance(value, LabellingResult):
        return f"the labelled dataset {value.dataset}"
    return f"{value!r} ({type(value).__name__})"


def _refuse(argument: str, value, wanted: str) -> ApiArgumentError:
    return ApiArgumentError(f"{argument}: got {_describe(value)}; give {wanted}")


MODEL_KINDS = "a model folder (Path or str) or what kt_nnunet.train/transfer/finetune returned"
DATASET_KINDS = "a dataset id, DatasetNNN_Name, its folder, or what kt_nnunet.label returned"


def _model(value, argument: str) -> tuple[Path, Optional[Union[int, str]]]:
    """``(model folder, fold or None)``."""
    from kt_nnunet.nnunet.paths import under_results

    if isinstance(value, TrainedModelResult):
        return value.model_folder, value.fold
    if isinstance(value, (str, Path)):
        return under_results(value), None
    raise _refuse(argument, value, MODEL_KINDS)


def _teachers(teachers) -> list:
    """One model or a sequence of them, as a list; each checked."""
    many = list(teachers) if isinstance(teachers, (list, tuple)) else [teachers]
    for teacher in many:
        if not isinstance(teacher, (TrainedModelResult, str, Path)):
            raise _refuse("teachers", teacher, MODEL_KINDS + ", or a list of them")
    return many


def _teacher_text(teacher) -> str:
    """As the stage parsers read a teacher, ``DIR`` or ``DIR:FOLDS`` (a text, not a ``TeacherSpec``, so that a
    stage's ``checkpoint`` option still applies); a trained result names its fold."""
    if isinstance(teacher, TrainedModelResult):
        return f"{teacher.model_folder}:{teacher.fold}"
    return str(teacher)


def _teacher_folder(teacher) -> Path:
    from kt_nnunet.teachers.kinds import resolve_kind
    from kt_nnunet.teachers.spec import TeacherSpec

    if isinstance(teacher, TrainedModelResult):
        return teacher.model_folder
    return resolve_kind(TeacherSpec.parse(teacher)).path


def _labelled_folder(value, argument: str):
    """A ``LabellingResult``'s dataset folder, or ``value`` unchanged."""
    from kt_nnunet.labelling.api import LabellingResult

    if isinstance(value, LabellingResult):
        if not value.complete:
            raise ApiArgumentError(f"{argument}: the labelling into {value.dataset.name} is unfinished (other parts "
                                   "still have cases to label); wait for them, or pass the dataset once it exists")
        return value.dataset
    if isinstance(value, bool) or not isinstance(value, (int, str, Path)):
        raise _refuse(argument, value, DATASET_KINDS)
    return value


def _is_path(value) -> bool:
    return isinstance(value, (str, Path)) and len(Path(str(value)).expanduser().parts) > 1


def dataset_name_of(value, argument: str = "dataset") -> str:
    """``DatasetNNN_Name`` of a dataset given as the API takes it; one that nnU-Net plans, so in ``$nnUNet_raw``."""
    from kt_nnunet.nnunet.paths import raw_folder
    from kt_nnunet.nnunet.planning import dataset_name

    value = _labelled_folder(value, argument)
    if _is_path(value):
        path, raw = Path(value).expanduser().absolute(), raw_folder()
        if path.parent.resolve() != raw.resolve():
            raise ApiArgumentError(f"{argument}: {value} is not a dataset folder in nnUNet_raw ({raw}), and nnU-Net "
                                   f"plans and trains only those; move or link it there, or set nnUNet_raw to "
                                   f"{path.parent}")
        value = path.name
    return dataset_name(value)


def _dataset_folder(value, argument: str) -> Path:
    """The folder of a dataset given by id, name or path (any folder, not only one in ``$nnUNet_raw``)."""
    from kt_nnunet.nnunet.paths import describe_folder, find_raw_dataset
    from kt_nnunet.nnunet.raw_dataset import DatasetError

    value = _labelled_folder(value, argument)
    found = find_raw_dataset(value)
    if found is None:
        raise DatasetError(f"{argument}: {value} is no folder, and no dataset id or name in "
                           f"{describe_folder('nnUNet_raw')}; give a dataset folder, id or DatasetNNN_Name")
    return found.absolute()


def _architecture_of(model_folder: Path) -> str:
    from kt_nnunet.nnunet.model_folder import load_trained_model

    plans = json.loads((model_folder / "plans.json").read_text())
    planned = (plans.get("kt_nnunet") or {}).get("architecture")
    if planned:
        return planned
    model = load_trained_model(model_folder)  # not planned by kt-nnunet: name it by its network class
    return model.architecture.rsplit(".", 1)[-1]


def _result(model_folder: Path, fold, role: str, teachers: Sequence = ()) -> TrainedModelResult:
    model_folder = Path(model_folder).absolute()
    return TrainedModelResult(model_folder, fold, _architecture_of(model_folder), role,
                              tuple(_teacher_folder(t) for t in teachers))


def _device(device) -> str:
    from kt_nnunet.devices import parse_device

    return str(parse_device(device))


def _check_architecture(architecture) -> None:
    if not isinstance(architecture, str):
        raise _refuse("architecture", architecture, "a registered architecture name (kt_nnunet.list_architectures())")


def _budget(epochs, iterations, val_iterations, lr=None):
    from kt_nnunet.training.settings import Budget

    return Budget(epochs, iterations, val_iterations, lr)


def train(dataset, architecture: str, *, fold: int = 0, configuration: str = "2d", epochs: Optional[int] = None,
          iterations: Optional[int] = None, val_iterations: Optional[int] = None, tiny: bool = False,
          arch_kwargs: Optional[dict] = None, seed: Optional[int] = None, device="auto", force: bool = False,
          continue_training: bool = False, validate: bool = False, num_processes: int = 1,
          num_workers: Optional[int] = 0) -> TrainedModelResult:
    """Plan ``dataset`` for ``architecture`` (if not planned yet) and train one fold: a teacher, or any model.

    ``num_workers``: nnU-Net's augmentation processes (0: in this process, the only reproducible order).
    """
    from kt_nnunet.training.supervised import train_model

    _check_architecture(architecture)
    folder = train_model(dataset_name_of(dataset, "dataset"), architecture, fold=fold, configuration=configuration,
                         arch_kwargs=arch_kwargs, tiny=tiny, budget=_budget(epochs, iterations, val_iterations),
                         seed=seed, continue_training=continue_training, force=force, device=_device(device),
                         validate=validate, num_processes=num_processes, num_workers=num_workers)
    return _result(folder, fold, "teacher")


def label(teachers, images, out, *, fusion: str = "mean", weights: Optional[Sequence[float]] = None,
          min_confidence: Optional[float] = None, tta: bool = True, save_probabilities: bool = False, device="auto",
          force: bool = False, label_map=None, num_parts: int = 1, part_id: int = 0,
          checkpoint: str = DEFAULT_CHECKPOINT, tile_step_size: float = 0.5, copy_images: bool = False,
          progress: bool = True, distributed="auto"):
    """The teachers label the transferal ``images`` into the new dataset ``out`` (``DatasetNNN_Name``, in
    ``$nnUNet_raw`` unless a path); returns the ``LabellingResult`` (``.dataset``: the labelled dataset's folder).

    A teacher is a model (see ``train``) or, as a text, any kind ``kt-nnunet label --teacher`` takes
    (``"onnx:net.onnx"``, ``"predictions:DIR"``, ...; docs/teachers.md). ``label_map`` reconciles different
    teacher label sets; ``num_parts``/``part_id`` label one part of the cases (torchrun ranks are parts);
    ``checkpoint`` is the model folders' checkpoint file; ``tile_step_size`` the sliding window's step;
    ``copy_images`` copies instead of hard-linking. See ``kt_nnunet.labelling.label_dataset``.
    """
    from kt_nnunet.labelling.api import label_dataset
    from kt_nnunet.teachers.methods import FusionSettings

    images = _labelled_folder(images, "images")
    return label_dataset([_teacher_text(t) for t in _teachers(teachers)], images, out,
                         fusion=FusionSettings(fusion, weights, min_confidence, tta),
                         save_probabilities=save_probabilities,
                         device=_device(device), force=force, label_map=label_map, num_parts=num_parts,
                         part_id=part_id, checkpoint=checkpoint, tile_step_size=tile_step_size,
                         copy_images=copy_images, progress=progress, distributed=distributed)


def transfer(teachers, dataset, architecture: str, *, fold: int = 0, online: bool = False, soft: bool = False,
             temperature: float = 2.0, alpha: float = 0.5, fusion: str = "mean",
             weights: Optional[Sequence[float]] = None, min_confidence: Optional[float] = None,
             configuration: str = "2d", epochs: Optional[int] = None, iterations: Optional[int] = None,
             val_iterations: Optional[int] = None, tiny: bool = False, arch_kwargs: Optional[dict] = None,
             seed: Optional[int] = None, device="auto", force: bool = False, continue_training: bool = False,
             validate: bool = False, labelled_out: Optional[str] = None, reference_labels: Optional[str] = None,
             reference_images: Optional[str] = None, num_processes: int = 1,
             num_workers: Optional[int] = 0) -> TrainedModelResult:
    """Train a student of ``architecture`` from ``teachers`` on ``dataset``: offline (default; the teacher-labelled
    dataset, or an unlabelled transferal set labelled first into ``labelled_out``) or ``online``.

    ``soft`` also learns the teachers' probabilities (``temperature``, weight ``alpha``); ``fusion``,
    ``weights`` and ``min_confidence`` fuse the teachers (online, or when labelling here);
    ``reference_labels``/``reference_images`` add a real Dice to the offline validation.
    """
    from kt_nnunet.teachers.methods import FusionSettings
    from kt_nnunet.training.settings import TransferSettings
    from kt_nnunet.training.transferring import transfer as transfer_stage

    _check_architecture(architecture)
    teachers = _teachers(teachers)
    folder = transfer_stage(
        [_teacher_text(t) for t in teachers], dataset_name_of(dataset, "dataset"), architecture, fold=fold,
        transfer=TransferSettings("online" if online else "offline", soft, temperature, alpha),
        fusion=FusionSettings(fusion, weights, min_confidence), budget=_budget(epochs, iterations, val_iterations),
        configuration=configuration, tiny=tiny, arch_kwargs=arch_kwargs, seed=seed,
        reference_labels=reference_labels, reference_images=reference_images, labelled_out=labelled_out,
        continue_training=continue_training, force=force, device=_device(device), validate=validate,
        num_processes=num_processes, num_workers=num_workers)
    return _result(folder, fold, "multi_teacher_student" if len(teachers) > 1 else "student", teachers)


def finetune(model: ModelLike, dataset, *, fold: int = 0, epochs: Optional[int] = None,
             iterations: Optional[int] = None, val_iterations: Optional[int] = None, lr: Optional[float] = None,
             seed: Optional[int] = None, device="auto", force: bool = False, continue_training: bool = False,
             validate: bool = False, from_scratch: bool = False, checkpoint: str = DEFAULT_CHECKPOINT,
             source_fold: Optional[int] = None, num_processes: int = 1,
             num_workers: Optional[int] = 0) -> TrainedModelResult:
    """Continue ``model`` (a student) on the labelled ``dataset`` (same architecture and preprocessing); with
    ``from_scratch``, train its network there without its weights (the fine-tune-only baseline).

    The starting checkpoint is ``source_fold`` of the model, else the model's own fold (a bare folder: its first
    fold); ``checkpoint`` names the file. ``fold`` is the fold of ``dataset`` to train.
    """
    from kt_nnunet.training.finetuning import finetune as finetune_stage

    model_folder, trained_fold = _model(model, "model")
    if source_fold is None and trained_fold != "all":
        source_fold = trained_fold
    folder = finetune_stage(model_folder, dataset_name_of(dataset, "dataset"), fold=fold,
                            source_fold=source_fold, checkpoint=checkpoint,
                            budget=_budget(epochs, iterations, val_iterations, lr), seed=seed,
                            from_scratch=from_scratch, force=force, continue_training=continue_training,
                            device=_device(device), validate=validate, num_processes=num_processes,
                            num_workers=num_workers)
    teachers = model.teachers if isinstance(model, TrainedModelResult) else ()
    return _result(folder, fold, "finetune_only" if from_scratch else "kt_finetune", teachers)


def evaluate(model: ModelLike, test, out: Optional[str | Path] = None, *, fold: Optional[int] = None,
             split: str = "auto", name: Optional[str] = None, role: Optional[str] = None, mirroring: bool = True,
             force: bool = False, threads: Optional[int] = None, warmup: bool = True,
             checkpoint_name: str = DEFAULT_CHECKPOINT, progress=None):
    """Predict the labelled ``test`` set with ``model`` on the CPU and score it; returns the ``ModelEvaluation``
    (``dice_mean``, ``per_class``, ``hd95_mean``, ``seconds_per_case``, per-case records, ...).

    ``split``: ``auto`` (imagesTs/labelsTs when labelsTs exists, else imagesTr/labelsTr), ``test`` or ``train``.
    ``out`` (default: ``evaluation_<test dataset>`` in the model folder) receives the predictions,
    ``summary.json`` and ``evaluation.json``; an evaluation there with unchanged checkpoints and cases is reused
    unless ``force``. ``fold`` defaults to the trained fold of a ``TrainedModelResult``, else every fold found.
    ``threads`` caps torch's threads, ``warmup`` runs one untimed case first, ``progress`` receives a line per case.
    """
    from kt_nnunet.evaluation import ROLES, evaluate_model
    from kt_nnunet.nnunet.evaluation import load_test_set

    model_folder, trained_fold = _model(model, "model")
    if role is None:
        role = model.role if isinstance(model, TrainedModelResult) else "student"
    if role not in ROLES:
        raise ApiArgumentError(f"role: {role!r} is not one of {', '.join(ROLES)}; it names the model's part in the "
                               "protocol (in results and reports)")
    test_set = load_test_set(_dataset_folder(test, "test"), split)
    fold = trained_fold if fold is None else fold
    out = Path(out) if out is not None else model_folder / f"evaluation_{test_set.folder.name}"
    teachers = [str(t) for t in model.teachers] if isinstance(model, TrainedModelResult) else []
    return evaluate_model(model_folder, test_set, out, name=name or model_folder.name, role=role,
                          folds=None if fold is None else [fold], mirroring=mirroring, teachers=teachers,
                          force=force, threads=threads, warmup=warmup, checkpoint_name=checkpoint_name,
                          progress=progress)
