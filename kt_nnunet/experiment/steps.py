"""The experiment as an ordered list of steps, each a small frozen dataclass a runner dispatches on.

``plan_steps(config)`` is pure: it touches no file. Step names are stable (``train_teacher:teacher_unet``,
``train_teacher:teacher_unet@r1`` for repeat 1), so a runner can record finished steps and resume; model
names are stable too and key the results (all repeats of a model share its name).

With ``repeats: N`` every step is planned N times, repeat ``k`` with seed ``seed + k``: its teachers, its
teacher labels, its students (which learn from repeat ``k``'s teachers, so each chain stays paired), its
fine-tune subset (cases chosen with ``seed + k``) and its fine-tuned and baseline models. Existing teachers
(``model_folder``, ``onnx``, ...) are used in every repeat; model folders are evaluated once, teachers of
other kinds not at all (a predictions folder has nothing for the test set; an exported network has no model
folder to score). Derived datasets get fixed ids from
``derived_dataset_ids``: repeat ``k`` starts at ``start + k * (len(teachers) + 2)``; within it teacher
``i``'s labels are ``+ i``, the multi-teacher labels ``+ len(teachers)``, the fine-tune subset
``+ len(teachers) + 1``. So switching modes on or off, or raising ``repeats``, never renumbers a dataset.

Order: repeat 0's teachers → teacher labels → transfer students → fine-tune subset → fine-tuned students and
the fine-tune-only baselines; then repeat 1's, and so on; then the interleaved inference timing and the
report. Each model's ``Evaluate`` step follows its training step.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from kt_nnunet.experiment.config import EXPERIMENT_BUDGET, DatasetRef, ExperimentConfig, TestConfig, derived_datasets_per_repeat
from kt_nnunet.experiment.schema import Context
from kt_nnunet.teachers.methods import FusionSettings
from kt_nnunet.training.settings import Budget, TransferSettings


@dataclass(frozen=True)
class Step:
    name: str
    depends_on: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        return type(self).__name__


@dataclass(frozen=True)
class ModelStep(Step):
    """A step whose outcome is a model folder; ``model`` names it in results.json."""

    model: str = ""
    role: str = ""
    architecture: Optional[str] = None
    teachers: tuple[str, ...] = ()
    repeat: int = 0
    seed: Optional[int] = None

    @property
    def key(self) -> tuple[str, int]:
        """The model in one repeat (model names are shared by the repeats)."""
        return self.model, self.repeat


@dataclass(frozen=True)
class UseTeacher(ModelStep):
    """An existing teacher of any kind (``kind`` None: found from ``path``); a runner only checks it opens."""

    path: Optional[Path] = None
    folds: Optional[tuple[int, ...]] = None
    checkpoint: str = "checkpoint_final.pth"
    kind: Optional[str] = None
    sidecar: Optional[Path] = None

    @property
    def scored(self) -> bool:
        """Whether it is evaluated on the test set: only nnU-Net model folders are."""
        return self.kind in (None, "nnunet")


@dataclass(frozen=True)
class TrainTeacher(ModelStep):
    dataset: Optional[DatasetRef] = None
    budget: Budget = EXPERIMENT_BUDGET
    tiny: bool = False
    arch_kwargs: dict = field(default_factory=dict)
    configuration: Optional[str] = None  # its own nnU-Net configuration; None: the experiment's


@dataclass(frozen=True)
class LabelTransferal(Step):
    """The teachers (of ``repeat``) annotate the transferal set into the new raw dataset ``output_name``."""

    teachers: tuple[str, ...] = ()
    repeat: int = 0
    dataset: Optional[DatasetRef] = None
    fusion: FusionSettings = FusionSettings()
    output_id: int = 0
    output_name: str = ""


@dataclass(frozen=True)
class TrainStudent(ModelStep):
    """A student trained on teacher labels (offline) or with the teachers in the loop (online)."""

    labelled_dataset: str = ""  # output_name of the LabelTransferal step
    transferal: Optional[DatasetRef] = None
    transfer: TransferSettings = TransferSettings()
    fusion: FusionSettings = FusionSettings()
    budget: Budget = EXPERIMENT_BUDGET
    tiny: bool = False
    arch_kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class MakeFinetuneSubset(Step):
    """``cases`` labelled cases of ``dataset`` (chosen with ``seed``) as the raw dataset ``output_name``."""

    dataset: Optional[DatasetRef] = None
    split: str = "train"
    cases: int = 0
    seed: int = 0
    output_id: int = 0
    output_name: str = ""


@dataclass(frozen=True)
class Finetune(ModelStep):
    """Continue the transfer student ``base_model`` on the fine-tune subset (nnU-Net's pretrained weights)."""

    base_model: str = ""
    dataset_name: str = ""
    budget: Budget = EXPERIMENT_BUDGET
    learning_rate: Optional[float] = None


@dataclass(frozen=True)
class TrainBaseline(ModelStep):
    """The student's network trained from scratch on the fine-tune subset only.

    With ``network_from`` (a transfer student of the same repeat) it uses that student's plans, so it is the
    very network the transfer + fine-tune model has; without one it is planned on the subset.
    """

    dataset_name: str = ""
    network_from: str = ""
    budget: Budget = EXPERIMENT_BUDGET
    tiny: bool = False
    arch_kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Evaluate(Step):
    model: str = ""
    role: str = ""
    test: Optional[TestConfig] = None
    repeat: int = 0
    seed: Optional[int] = None


@dataclass(frozen=True)
class TimeInference(Step):
    """Seconds per case of repeat 0's models, measured in interleaved rounds (see ``timing.py``)."""

    models: tuple[str, ...] = ()


@dataclass(frozen=True)
class Report(Step):
    pass


def derived_dataset_name(config: ExperimentConfig, what: str, repeat: int = 0) -> str:
    return f"{config.name}_{what}" + (f"_r{repeat}" if repeat else "")


def repeat_suffix(repeat: int) -> str:
    return f"@r{repeat}" if repeat else ""


def plan_steps(config: ExperimentConfig) -> list[Step]:
    """Every step of ``config`` in execution order (dependencies always come first)."""
    steps: list[Step] = []
    for repeat in range(config.repeats):
        steps.extend(_repeat_steps(config, repeat))
    models = tuple(dict.fromkeys(s.model for s in steps if isinstance(s, Evaluate)))
    steps.append(TimeInference("time_inference", tuple(s.name for s in steps if isinstance(s, Evaluate)), models))
    steps.append(Report("report", tuple(s.name for s in steps if isinstance(s, (Evaluate, TimeInference)))))
    seen: set = set()
    for step in model_steps_of(steps):
        if step.key in seen:
            raise Context(config.label).error("students", f"two models would both be named {step.model!r}; rename "
                                                          "a teacher or student (`name:`)")
        seen.add(step.key)
    return steps


def _repeat_steps(config: ExperimentConfig, repeat: int) -> list[Step]:
    steps: list[Step] = []
    seed = config.seed + repeat
    suffix = repeat_suffix(repeat)

    def add_model(step: ModelStep) -> None:
        steps.append(step)
        steps.append(Evaluate(f"evaluate:{step.model}{suffix}", (step.name,), step.model, step.role, config.test,
                              repeat, step.seed))

    teacher_step = {}
    for teacher in config.teachers:
        if teacher.trained_here:
            step = TrainTeacher(f"train_teacher:{teacher.name}{suffix}", (), teacher.name, "teacher",
                                teacher.architecture, (), repeat, seed, dataset=teacher.source,
                                budget=teacher.budget, tiny=teacher.tiny, arch_kwargs=teacher.arch_kwargs,
                                configuration=teacher.configuration)
            add_model(step)
        else:  # an existing teacher: the same in every repeat, loaded (and a model folder evaluated) once
            step = UseTeacher(f"use_teacher:{teacher.name}", (), teacher.name, "teacher", None, (), 0, None,
                              path=teacher.path, folds=teacher.folds, checkpoint=teacher.checkpoint,
                              kind=teacher.kind, sidecar=teacher.sidecar)
            if repeat == 0 and step.scored:
                add_model(step)
            elif repeat == 0:
                steps.append(step)
        teacher_step[teacher.name] = step.name

    n = len(config.teachers)
    start = config.derived_dataset_ids + repeat * derived_datasets_per_repeat(n)
    label_steps: dict[tuple[str, ...], LabelTransferal] = {}
    if "single_teacher" in config.modes:
        for index, teacher in enumerate(config.teachers):
            label_steps[(teacher.name,)] = LabelTransferal(
                f"label:{teacher.name}{suffix}", (teacher_step[teacher.name],), (teacher.name,), repeat,
                config.transferal, FusionSettings("mean", None, config.fusion.min_confidence, config.fusion.tta),
                start + index, derived_dataset_name(config, f"labels_{teacher.name}", repeat))
    all_teachers = tuple(t.name for t in config.teachers)
    if "multi_teacher" in config.modes:
        label_steps[all_teachers] = LabelTransferal(
            f"label:multi{suffix}", tuple(teacher_step[t] for t in all_teachers), all_teachers, repeat,
            config.transferal, config.fusion, start + n, derived_dataset_name(config, "labels_multi", repeat))
    steps.extend(label_steps.values())

    transfer_students: dict[str, list[TrainStudent]] = {"single_teacher": [], "multi_teacher": []}
    student_config_of: dict[str, str] = {}   # transfer student model -> its `students` entry
    for mode in ("single_teacher", "multi_teacher"):
        if mode not in config.modes:
            continue
        groups = [(t.name,) for t in config.teachers] if mode == "single_teacher" else [all_teachers]
        for student in config.students:
            for group in groups:
                label = label_steps[group]
                model = f"{student.name}_from_{group[0]}" if mode == "single_teacher" else f"{student.name}_multi"
                step = TrainStudent(f"train_student:{model}{suffix}", (label.name,), model,
                                    "student" if mode == "single_teacher" else "multi_teacher_student",
                                    student.architecture, group, repeat, seed, labelled_dataset=label.output_name,
                                    transferal=config.transferal, transfer=config.transfer, fusion=label.fusion,
                                    budget=student.budget, tiny=student.tiny, arch_kwargs=student.arch_kwargs)
                transfer_students[mode].append(step)
                student_config_of[step.model] = student.name
                add_model(step)

    finetune = config.finetune
    fine_modes = {"kt_finetune", "finetune_only"} & set(config.modes)
    if finetune is not None and fine_modes:
        subset = MakeFinetuneSubset(f"finetune_subset{suffix}", (), finetune.dataset, finetune.split, finetune.cases,
                                    seed, start + n + 1,
                                    derived_dataset_name(config, f"finetune{finetune.cases}", repeat))
        steps.append(subset)
        bases = transfer_students.get(finetune.start or "", [])
        if "kt_finetune" in config.modes:
            for base in bases:
                model = f"{base.model}_ft{finetune.cases}"
                add_model(Finetune(f"finetune:{model}{suffix}", (base.name, subset.name), model, "kt_finetune",
                                   base.architecture, base.teachers, repeat, seed, base_model=base.model,
                                   dataset_name=subset.output_name, budget=finetune.budget,
                                   learning_rate=finetune.learning_rate))
        if "finetune_only" in config.modes:
            for student in config.students:
                model = f"{student.name}_ft{finetune.cases}_only"
                same_network = next((b for b in bases if student_config_of[b.model] == student.name), None)
                depends = (subset.name,) + ((same_network.name,) if same_network else ())
                add_model(TrainBaseline(f"train_baseline:{model}{suffix}", depends, model, "finetune_only",
                                        student.architecture, (), repeat, seed, dataset_name=subset.output_name,
                                        network_from=same_network.model if same_network else "",
                                        budget=finetune.budget, tiny=student.tiny, arch_kwargs=student.arch_kwargs))
    return steps


def model_steps_of(steps: list[Step]) -> list[ModelStep]:
    """The steps that produce a model, in results order (teachers first)."""
    return [s for s in steps if isinstance(s, ModelStep)]
