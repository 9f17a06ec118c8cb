"""The experiment as an ordered list of steps, each a small frozen dataclass a runner dispatches on.

``plan_steps(config)`` is pure: it touches no file. Step names are stable (``train_teacher:teacher_unet``),
so a runner can record finished steps and resume; model names are stable too and key the results.
Derived datasets get fixed ids from ``derived_dataset_ids`` (teacher ``i``'s labels: ``start + i``; the
multi-teacher labels: ``start + len(teachers)``; the fine-tune subset: ``start + len(teachers) + 1``),
so switching modes on or off between runs never renumbers a dataset.

Order: teachers → teacher labels → transfer students → fine-tune subset → fine-tuned students and the
fine-tune-only baselines → report. Each model's ``Evaluate`` step follows its training step.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from kt_nnunet.experiment.config import Budget, DatasetRef, ExperimentConfig, FusionConfig, TestConfig, TransferConfig
from kt_nnunet.experiment.schema import Context


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


@dataclass(frozen=True)
class UseTeacher(ModelStep):
    """An existing teacher model folder; a runner only checks it loads."""

    model_folder: Optional[Path] = None
    folds: Optional[tuple[int, ...]] = None
    checkpoint: str = "checkpoint_final.pth"


@dataclass(frozen=True)
class TrainTeacher(ModelStep):
    dataset: Optional[DatasetRef] = None
    budget: Budget = Budget()
    tiny: bool = False
    arch_kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class LabelTransferal(Step):
    """The teachers annotate the transferal set into the new raw dataset ``output_name``."""

    teachers: tuple[str, ...] = ()
    dataset: Optional[DatasetRef] = None
    fusion: FusionConfig = FusionConfig()
    output_id: int = 0
    output_name: str = ""


@dataclass(frozen=True)
class TrainStudent(ModelStep):
    """A student trained on teacher labels (offline) or with the teachers in the loop (online)."""

    labelled_dataset: str = ""  # output_name of the LabelTransferal step
    transferal: Optional[DatasetRef] = None
    transfer: TransferConfig = TransferConfig()
    fusion: FusionConfig = FusionConfig()
    budget: Budget = Budget()
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
    budget: Budget = Budget()
    learning_rate: Optional[float] = None


@dataclass(frozen=True)
class TrainBaseline(ModelStep):
    """The same student architecture trained from scratch on the fine-tune subset only."""

    dataset_name: str = ""
    budget: Budget = Budget()
    tiny: bool = False
    arch_kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Evaluate(Step):
    model: str = ""
    role: str = ""
    test: Optional[TestConfig] = None


@dataclass(frozen=True)
class Report(Step):
    pass


def derived_dataset_name(config: ExperimentConfig, what: str) -> str:
    return f"{config.name}_{what}"


def plan_steps(config: ExperimentConfig) -> list[Step]:
    """Every step of ``config`` in execution order (dependencies always come first)."""
    steps: list[Step] = []
    model_steps: list[ModelStep] = []

    def add_model(step: ModelStep) -> None:
        steps.append(step)
        model_steps.append(step)
        steps.append(Evaluate(f"evaluate:{step.model}", (step.name,), step.model, step.role, config.test))

    teacher_step = {}
    for teacher in config.teachers:
        if teacher.trained_here:
            step = TrainTeacher(f"train_teacher:{teacher.name}", (), teacher.name, "teacher", teacher.architecture,
                                (), dataset=teacher.source, budget=teacher.budget, tiny=teacher.tiny,
                                arch_kwargs=teacher.arch_kwargs)
        else:
            step = UseTeacher(f"use_teacher:{teacher.name}", (), teacher.name, "teacher", None, (),
                              model_folder=teacher.model_folder, folds=teacher.folds, checkpoint=teacher.checkpoint)
        teacher_step[teacher.name] = step.name
        add_model(step)

    start, n = config.derived_dataset_ids, len(config.teachers)
    label_steps: dict[tuple[str, ...], LabelTransferal] = {}
    if "single_teacher" in config.modes:
        for index, teacher in enumerate(config.teachers):
            label_steps[(teacher.name,)] = LabelTransferal(
                f"label:{teacher.name}", (teacher_step[teacher.name],), (teacher.name,), config.transferal,
                FusionConfig("mean", None, config.fusion.min_confidence, config.fusion.tta), start + index,
                derived_dataset_name(config, f"labels_{teacher.name}"))
    all_teachers = tuple(t.name for t in config.teachers)
    if "multi_teacher" in config.modes:
        label_steps[all_teachers] = LabelTransferal(
            "label:multi", tuple(teacher_step[t] for t in all_teachers), all_teachers, config.transferal,
            config.fusion, start + n, derived_dataset_name(config, "labels_multi"))
    steps.extend(label_steps.values())

    transfer_students: dict[str, list[TrainStudent]] = {"single_teacher": [], "multi_teacher": []}
    for mode in ("single_teacher", "multi_teacher"):
        if mode not in config.modes:
            continue
        groups = [(t.name,) for t in config.teachers] if mode == "single_teacher" else [all_teachers]
        for student in config.students:
            for group in groups:
                label = label_steps[group]
                model = f"{student.name}_from_{group[0]}" if mode == "single_teacher" else f"{student.name}_multi"
                step = TrainStudent(f"train_student:{model}", (label.name,), model,
                                    "student" if mode == "single_teacher" else "multi_teacher_student",
                                    student.architecture, group, labelled_dataset=label.output_name,
                                    transferal=config.transferal, transfer=config.transfer, fusion=label.fusion,
                                    budget=student.budget, tiny=student.tiny, arch_kwargs=student.arch_kwargs)
                transfer_students[mode].append(step)
                add_model(step)

    finetune = config.finetune
    fine_modes = {"kt_finetune", "finetune_only"} & set(config.modes)
    if finetune is not None and fine_modes:
        subset = MakeFinetuneSubset("finetune_subset", (), finetune.dataset, finetune.split, finetune.cases,
                                    config.seed, start + n + 1,
                                    derived_dataset_name(config, f"finetune{finetune.cases}"))
        steps.append(subset)
        if "kt_finetune" in config.modes:
            for base in transfer_students[finetune.start]:
                model = f"{base.model}_ft{finetune.cases}"
                add_model(Finetune(f"finetune:{model}", (base.name, subset.name), model, "kt_finetune",
                                   base.architecture, base.teachers, base_model=base.model,
                                   dataset_name=subset.output_name, budget=finetune.budget,
                                   learning_rate=finetune.learning_rate))
        if "finetune_only" in config.modes:
            for student in config.students:
                model = f"{student.name}_ft{finetune.cases}_only"
                add_model(TrainBaseline(f"train_baseline:{model}", (subset.name,), model, "finetune_only",
                                        student.architecture, (), dataset_name=subset.output_name,
                                        budget=finetune.budget, tiny=student.tiny, arch_kwargs=student.arch_kwargs))

    steps.append(Report("report", tuple(s.name for s in steps if isinstance(s, Evaluate))))
    seen: set = set()
    for step in model_steps_of(steps):
        if step.model in seen:
            raise Context(config.label).error("students", f"two models would both be named {step.model!r}; rename "
                                                          "a teacher or student (`name:`)")
        seen.add(step.model)
    return steps


def model_steps_of(steps: list[Step]) -> list[ModelStep]:
    """The steps that produce a model, in results order (teachers first)."""
    return [s for s in steps if isinstance(s, ModelStep)]
