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

from kt_nnunet.experiment.config import (EXPERIMENT_BUDGET, MODE_ROLES, DatasetRef, ExperimentConfig, TestConfig,
                                        derived_datasets_per_repeat)
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
    """Seconds per case of repeat 0's models, measured in interleaved rounds (``kt_nnunet.evaluation.timing``)."""

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


@dataclass
class _RepeatPlan:
    """One repeat's steps, appended in execution order; every model's ``Evaluate`` follows its training step."""

    config: ExperimentConfig
    repeat: int
    steps: list = field(default_factory=list)

    @property
    def seed(self) -> int:
        return self.config.seed + self.repeat

    @property
    def suffix(self) -> str:
        return repeat_suffix(self.repeat)

    @property
    def first_dataset_id(self) -> int:
        return self.config.derived_dataset_ids + self.repeat * derived_datasets_per_repeat(len(self.config.teachers))

    def dataset_name(self, what: str) -> str:
        return derived_dataset_name(self.config, what, self.repeat)

    def add_model(self, step: ModelStep) -> None:
        self.steps.append(step)
        self.steps.append(Evaluate(name=f"evaluate:{step.model}{self.suffix}", depends_on=(step.name,),
                                   model=step.model, role=step.role, test=self.config.test, repeat=self.repeat,
                                   seed=step.seed))


def _repeat_steps(config: ExperimentConfig, repeat: int) -> list[Step]:
    plan = _RepeatPlan(config, repeat)
    teacher_steps = _plan_teachers(plan)
    label_steps = _plan_labels(plan, teacher_steps)
    transfer_students = _plan_transfer_students(plan, label_steps)
    _plan_finetuning(plan, transfer_students)
    return plan.steps


def _plan_teachers(plan: _RepeatPlan) -> dict[str, str]:
    """Each teacher's step (trained in this repeat, or an existing one); returns teacher name -> step name."""
    teacher_steps = {}
    for teacher in plan.config.teachers:
        if teacher.trained_here:
            step = TrainTeacher(name=f"train_teacher:{teacher.name}{plan.suffix}", model=teacher.name, role="teacher",
                                architecture=teacher.architecture, repeat=plan.repeat, seed=plan.seed,
                                dataset=teacher.source, budget=teacher.budget, tiny=teacher.tiny,
                                arch_kwargs=teacher.arch_kwargs, configuration=teacher.configuration)
            plan.add_model(step)
        else:  # an existing teacher: the same in every repeat, loaded (and a model folder evaluated) once
            step = UseTeacher(name=f"use_teacher:{teacher.name}", model=teacher.name, role="teacher", repeat=0,
                              path=teacher.path, folds=teacher.folds, checkpoint=teacher.checkpoint,
                              kind=teacher.kind, sidecar=teacher.sidecar)
            if plan.repeat == 0 and step.scored:
                plan.add_model(step)
            elif plan.repeat == 0:
                plan.steps.append(step)
        teacher_steps[teacher.name] = step.name
    return teacher_steps


def _plan_labels(plan: _RepeatPlan, teacher_steps: dict[str, str]) -> dict[tuple[str, ...], LabelTransferal]:
    """The transferal set labelled by each teacher alone (single_teacher) and by all fused (multi_teacher)."""
    config, label_steps = plan.config, {}
    if "single_teacher" in config.modes:
        # Alone, a teacher has nothing to fuse: mean without weights passes its output through, while the
        # confidence threshold and mirroring still apply.
        alone = FusionSettings(method="mean", min_confidence=config.fusion.min_confidence, tta=config.fusion.tta)
        for index, teacher in enumerate(config.teachers):
            label_steps[(teacher.name,)] = LabelTransferal(
                name=f"label:{teacher.name}{plan.suffix}", depends_on=(teacher_steps[teacher.name],),
                teachers=(teacher.name,), repeat=plan.repeat, dataset=config.transferal, fusion=alone,
                output_id=plan.first_dataset_id + index, output_name=plan.dataset_name(f"labels_{teacher.name}"))
    if "multi_teacher" in config.modes:
        all_teachers = tuple(t.name for t in config.teachers)
        label_steps[all_teachers] = LabelTransferal(
            name=f"label:multi{plan.suffix}", depends_on=tuple(teacher_steps[t] for t in all_teachers),
            teachers=all_teachers, repeat=plan.repeat, dataset=config.transferal, fusion=config.fusion,
            output_id=plan.first_dataset_id + len(config.teachers), output_name=plan.dataset_name("labels_multi"))
    plan.steps.extend(label_steps.values())
    return label_steps


_STUDENT_MODES = ("single_teacher", "multi_teacher")  # the modes whose students learn from teacher labels


def _plan_transfer_students(plan: _RepeatPlan, label_steps: dict) -> dict[str, list[tuple[TrainStudent, str]]]:
    """Every student learning from each label set; returns mode -> [(its student step, its `students` name)]."""
    config = plan.config
    transfer_students: dict[str, list[tuple[TrainStudent, str]]] = {mode: [] for mode in _STUDENT_MODES}
    for mode in _STUDENT_MODES:
        if mode not in config.modes:
            continue
        groups = [(t.name,) for t in config.teachers] if mode == "single_teacher" else \
            [tuple(t.name for t in config.teachers)]
        for student in config.students:
            for group in groups:
                label = label_steps[group]
                model = f"{student.name}_from_{group[0]}" if mode == "single_teacher" else f"{student.name}_multi"
                step = TrainStudent(name=f"train_student:{model}{plan.suffix}", depends_on=(label.name,), model=model,
                                    role=MODE_ROLES[mode], architecture=student.architecture, teachers=group,
                                    repeat=plan.repeat, seed=plan.seed, labelled_dataset=label.output_name,
                                    transferal=config.transferal, transfer=config.transfer, fusion=label.fusion,
                                    budget=student.budget, tiny=student.tiny, arch_kwargs=student.arch_kwargs)
                transfer_students[mode].append((step, student.name))
                plan.add_model(step)
    return transfer_students


def _plan_finetuning(plan: _RepeatPlan, transfer_students: dict[str, list[tuple[TrainStudent, str]]]) -> None:
    """The fine-tune subset, the transfer students fine-tuned on it and the baselines trained on it alone."""
    config, finetune = plan.config, plan.config.finetune
    if finetune is None or not {"kt_finetune", "finetune_only"} & set(config.modes):
        return
    subset = MakeFinetuneSubset(name=f"finetune_subset{plan.suffix}", dataset=finetune.dataset, split=finetune.split,
                                cases=finetune.cases, seed=plan.seed,
                                output_id=plan.first_dataset_id + len(config.teachers) + 1,
                                output_name=plan.dataset_name(f"finetune{finetune.cases}"))
    plan.steps.append(subset)
    bases = transfer_students.get(finetune.start or "", [])
    if "kt_finetune" in config.modes:
        for base, _ in bases:
            model = f"{base.model}_ft{finetune.cases}"
            plan.add_model(Finetune(name=f"finetune:{model}{plan.suffix}", depends_on=(base.name, subset.name),
                                    model=model, role="kt_finetune", architecture=base.architecture,
                                    teachers=base.teachers, repeat=plan.repeat, seed=plan.seed, base_model=base.model,
                                    dataset_name=subset.output_name, budget=finetune.budget,
                                    learning_rate=finetune.learning_rate))
    if "finetune_only" in config.modes:
        for student in config.students:
            model = f"{student.name}_ft{finetune.cases}_only"
            same_network = next((base for base, entry in bases if entry == student.name), None)
            depends = (subset.name,) + ((same_network.name,) if same_network else ())
            plan.add_model(TrainBaseline(name=f"train_baseline:{model}{plan.suffix}", depends_on=depends, model=model,
                                         role="finetune_only", architecture=student.architecture,
                                         repeat=plan.repeat, seed=plan.seed, dataset_name=subset.output_name,
                                         network_from=same_network.model if same_network else "",
                                         budget=finetune.budget, tiny=student.tiny, arch_kwargs=student.arch_kwargs))


def model_steps_of(steps: list[Step]) -> list[ModelStep]:
    """The steps that produce a model, in results order (teachers first)."""
    return [s for s in steps if isinstance(s, ModelStep)]
