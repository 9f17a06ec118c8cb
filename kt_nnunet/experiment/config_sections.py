"""The section parsers of the experiment config (``kt_nnunet.experiment.config.parse_config`` calls them).

Each takes the top-level :class:`~kt_nnunet.experiment.schema.Section` (or a value and its key) and
returns a config dataclass, or raises one ``ExperimentConfigError`` naming the key.
"""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any, Optional

from kt_nnunet.errors import KtNnunetError, closest
from kt_nnunet.experiment.config import (
    MODES,
    NAME_HELP,
    NAME_PATTERN,
    SPLITS,
    DatasetRef,
    EvaluationConfig,
    FinetuneConfig,
    StudentConfig,
    TeacherConfig,
    TestConfig,
    derived_datasets_per_repeat,
)
from kt_nnunet.experiment.schema import (
    Context,
    Section,
    check_choice,
    check_integer,
    check_number,
    describe,
    join_key,
)
from kt_nnunet.teachers.methods import FusionSettings
from kt_nnunet.training.settings import TRANSFER_MODES, Budget, TransferSettings


def resolve_path(value: str, base_dir: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base_dir / path)


def parse_dataset(value: Any, key: str, ctx: Context, base_dir: Path) -> DatasetRef:
    if isinstance(value, bool) or value is None:
        raise ctx.error(key, f"expected a dataset id, DatasetNNN_Name or folder path, got {describe(value)}")
    if isinstance(value, int):
        check_integer(value, key, ctx, 1, 999)
        return DatasetRef(key, value)
    if not isinstance(value, str) or not value:
        raise ctx.error(key, f"expected a dataset id, DatasetNNN_Name or folder path, got {describe(value)}")
    if re.fullmatch(r"\d{1,3}", value):
        return DatasetRef(key, int(value))
    if re.fullmatch(r"Dataset\d{3}_[A-Za-z0-9_\-]+", value):
        return DatasetRef(key, value)
    return DatasetRef(key, value, resolve_path(value, base_dir))


def parse_sources(top: Section, ctx: Context, base_dir: Path) -> tuple:
    """``source``: one dataset or a list of them (the teachers' training sets), each keyed by its place."""
    source_list = top.has("source") and isinstance(top.raw("source"), list)
    return tuple(parse_dataset(v, join_key("source", i) if source_list else "source", ctx, base_dir)
                 for i, v in enumerate(top.sequence("source", [], allow_single=True)))


def parse_transferal(top: Section, ctx: Context, base_dir: Path, modes: tuple) -> Optional[DatasetRef]:
    transferal = parse_dataset(top.raw("transferal"), "transferal", ctx, base_dir) if top.has("transferal") else None
    if transferal is None and {"single_teacher", "multi_teacher"} & set(modes):
        raise ctx.error("transferal", "is required: the teachers label the transferal dataset for the students")
    return transferal


def check_unique_names(ctx: Context, teachers: tuple, students: tuple) -> None:
    """Teacher and student names key folders and results, so each is used once across both lists."""
    seen = set()
    for i, name in enumerate([t.name for t in teachers] + [s.name for s in students]):
        if name in seen:
            key = f"teachers[{i}].name" if i < len(teachers) else f"students[{i - len(teachers)}].name"
            raise ctx.error(key, f"name {name!r} is used twice; give each teacher and student its own `name`")
        seen.add(name)


def parse_derived_dataset_ids(top: Section, ctx: Context, num_teachers: int) -> tuple[int, int]:
    """``(derived_dataset_ids, repeats)``: the first derived dataset id, checked to leave room for every repeat's
    derived datasets below nnU-Net's limit 999."""
    start = top.integer("derived_dataset_ids", 800, minimum=1, maximum=999)
    repeats = top.integer("repeats", 1, minimum=1)
    needed = repeats * derived_datasets_per_repeat(num_teachers)
    if start + needed - 1 > 999:
        raise ctx.error("derived_dataset_ids", f"{start} leaves no room for {needed} derived datasets "
                                               f"({repeats} repeat(s)) below nnU-Net's limit 999; choose a smaller "
                                               "first id")
    return start, repeats


def same_split(a: DatasetRef, split_a: str, b: DatasetRef, split_b: str) -> bool:
    same = (a.path is not None and a.path == b.path) or (
        a.path is None and b.path is None and a.dataset_id is not None and a.dataset_id == b.dataset_id)
    splits_differ = {split_a, split_b} == {"train", "test"}
    return same and not splits_differ


def same_split_folders(a: Path, split_a: str, b: Path, split_b: str) -> bool:
    """:func:`same_split` on resolved dataset folders (symlinks and ``..`` followed)."""
    return os.path.realpath(a) == os.path.realpath(b) and {split_a, split_b} != {"train", "test"}


def parse_budget(section: Section, name: str, default: Budget) -> Budget:
    if not section.has(name):
        return default
    sub = Section(section.raw(name), section.key_of(name), section.ctx,
                  ("epochs", "iterations_per_epoch", "val_iterations_per_epoch"))
    return Budget(sub.integer("epochs", default.epochs, minimum=1),
                  sub.integer("iterations_per_epoch", default.iterations_per_epoch, minimum=1),
                  sub.integer("val_iterations_per_epoch", default.val_iterations_per_epoch, minimum=1))


def parse_architecture(section: Section, name: str, dim: int) -> str:
    from kt_nnunet.registry import UnknownArchitectureError, get_architecture, list_architectures

    value = section.string(name)
    try:
        spec = get_architecture(value)
    except UnknownArchitectureError:
        available = [s.name for s in list_architectures()]
        match = closest(value, available)
        hint = f"; did you mean {match!r}?" if match else ";"
        raise section.error(name, f"unknown architecture {value!r}{hint} available: {', '.join(available)} "
                                  "(`kt-nnunet architectures` lists them)") from None
    if dim not in spec.dims:
        raise section.error(name, f"architecture {value!r} supports {'/'.join(map(str, spec.dims))}D only, but "
                                  f"`configuration` is {dim}D")
    return spec.name


def parse_fold(top: Section) -> int | str:
    """``fold``: one of nnU-Net's five folds (0-4), or ``all`` (train on every case, as nnU-Net's final models)."""
    if top.has("fold") and top.raw("fold") == "all":
        return "all"
    if top.has("fold") and isinstance(top.raw("fold"), str):
        raise top.error("fold", f"expected 0-4 or `all`, got {top.raw('fold')!r}")
    return top.integer("fold", 0, minimum=0, maximum=4)


def parse_arch_kwargs(section: Section, architecture: Optional[str]) -> dict:
    from kt_nnunet.architectures.spec import ArchitectureOptionError
    from kt_nnunet.registry import get_architecture

    kwargs = dict(section.mapping("arch_kwargs", {}))
    if architecture and kwargs:
        try:  # at parse time, not when the step that plans this model is reached
            get_architecture(architecture).check_options(kwargs)
        except ArchitectureOptionError as exc:
            raise section.error("arch_kwargs", str(exc).removeprefix("--arch-kwargs: ")) from exc
    return kwargs


CONFIGURATION_PATTERN = r"[23]d\w*"
CONFIGURATION_HELP = "an nnU-Net configuration such as 2d, 3d_fullres or 3d_lowres"


# An existing teacher is given by one of these keys: the kind it names (None: found from the path, or `kind`).
GIVEN_TEACHER_KEYS = {"model_folder": "nnunet", "onnx": "onnx", "torchscript": "torchscript",
                      "predictions": "predictions", "path": None}
GIVEN_TEACHER_HELP = "an existing teacher (`model_folder`, `onnx`, `torchscript`, `predictions`, or `path` with any kind)"


def parse_teachers(top: Section, ctx: Context, base_dir: Path, budget: Budget, sources: tuple,
                   configuration: str) -> tuple:
    items = top.sequence("teachers")
    if not items:
        raise top.error("teachers", "needs at least one teacher")
    allowed = ("name", "architecture", "source", "budget", "tiny", "arch_kwargs", "folds", "checkpoint",
               "configuration", "kind", "sidecar", *GIVEN_TEACHER_KEYS)
    teachers = []
    for index, item in enumerate(items):
        key = join_key("teachers", index)
        if isinstance(item, str):  # shorthand, as for students: `teachers: [nnunet_plain, unet]`
            item = {"architecture": item}
        sub = Section(item, key, ctx, allowed)
        given = [k for k in GIVEN_TEACHER_KEYS if sub.has(k)]
        if sub.has("architecture") == bool(given):
            raise ctx.error(key, f"give either `architecture` (a teacher trained here on `source`) or {GIVEN_TEACHER_HELP}"
                                 ", not both" if sub.has("architecture")
                            else f"needs `architecture` (a teacher trained here on `source`) or {GIVEN_TEACHER_HELP}")
        if len(given) > 1:
            raise ctx.error(key, f"gives both `{given[0]}` and `{given[1]}`; an existing teacher is given by one of them")
        if given:
            teachers.append(_given_teacher(sub, given[0], base_dir, len(teachers)))
            continue
        for given_only in ("kind", "sidecar"):
            if sub.has(given_only):
                raise sub.error(given_only, "only applies to an existing teacher (`path`, `onnx`, `torchscript`)")
        own = sub.string("configuration", configuration, pattern=CONFIGURATION_PATTERN, pattern_help=CONFIGURATION_HELP)
        architecture = parse_architecture(sub, "architecture", 2 if own.startswith("2d") else 3)
        if sub.has("source"):
            source = parse_dataset(sub.raw("source"), sub.key_of("source"), ctx, base_dir)
        elif len(sources) == 1:
            source = sources[0]
        elif not sources:
            raise sub.error("source", "is required: set the top-level `source` dataset or this teacher's `source`")
        else:
            raise sub.error("source", f"is required because the top-level `source` lists {len(sources)} datasets; "
                                      "say which one this teacher trains on")
        teachers.append(TeacherConfig(
            name=sub.string("name", f"teacher_{architecture}", pattern=NAME_PATTERN, pattern_help=NAME_HELP),
            architecture=architecture, source=source, budget=parse_budget(sub, "budget", budget),
            tiny=sub.boolean("tiny", False), arch_kwargs=parse_arch_kwargs(sub, architecture),
            configuration=None if own == configuration else own))
    return tuple(teachers)


def _given_teacher(sub: Section, key: str, base_dir: Path, index: int) -> TeacherConfig:
    """An already trained or exported teacher, or a folder of predictions, used as given in every repeat."""
    for trained_only in ("source", "budget", "tiny", "arch_kwargs", "configuration"):
        if sub.has(trained_only):
            raise sub.error(trained_only, f"only applies to teachers trained here (with `architecture`), not to "
                                          f"`{key}`")
    kind = GIVEN_TEACHER_KEYS[key]
    if sub.has("kind") and key != "path":
        raise sub.error("kind", f"is given by `{key}` itself; `kind` goes with `path`")
    if key == "path" and sub.has("kind"):
        kind = sub.string("kind", pattern=r"[a-z][a-z0-9_\-]*", pattern_help="a teacher kind name such as onnx")
    if sub.has("sidecar") and key not in ("onnx", "torchscript", "path"):
        raise sub.error("sidecar", "describes an exported network; it goes with `onnx`, `torchscript` or `path`")
    if sub.has("checkpoint") and key not in ("model_folder", "path"):
        raise sub.error("checkpoint", "names a model folder's checkpoint file; it goes with `model_folder`")
    folds = sub.sequence("folds", None, allow_single=True)
    if folds is not None and key == "predictions":
        raise sub.error("folds", "does not apply to a predictions folder")
    folds = None if folds is None else tuple(check_integer(f, join_key(sub.key_of("folds"), i), sub.ctx, 0)
                                             for i, f in enumerate(folds))
    path = resolve_path(sub.string(key), base_dir)
    if kind is None and path.exists():  # the steps differ by kind (only networks are scored on the test set)
        from kt_nnunet.teachers.kinds import detect_kind

        try:
            kind = detect_kind(path).name
        except KtNnunetError:
            kind = None  # the late input checks say what is wrong with it
    return TeacherConfig(
        name=sub.string("name", f"teacher_{index}", pattern=NAME_PATTERN, pattern_help=NAME_HELP),
        path=path, kind=kind, given_by=key, folds=folds,
        sidecar=resolve_path(sub.string("sidecar"), base_dir) if sub.has("sidecar") else None,
        checkpoint=sub.string("checkpoint", "checkpoint_final.pth", pattern=r"[\w.\-]+\.pth",
                              pattern_help="a checkpoint file name such as checkpoint_final.pth"))


def parse_students(top: Section, ctx: Context, budget: Budget, dim: int) -> tuple:
    items = top.sequence("students")
    if not items:
        raise top.error("students", "needs at least one student architecture")
    students = []
    for index, item in enumerate(items):
        if isinstance(item, str):  # shorthand: `students: [light_unet, unet]`
            item = {"architecture": item}
        sub = Section(item, join_key("students", index), ctx, ("name", "architecture", "budget", "tiny", "arch_kwargs"))
        architecture = parse_architecture(sub, "architecture", dim)
        students.append(StudentConfig(
            name=sub.string("name", architecture, pattern=NAME_PATTERN, pattern_help=NAME_HELP),
            architecture=architecture, budget=parse_budget(sub, "budget", budget), tiny=sub.boolean("tiny", False),
            arch_kwargs=parse_arch_kwargs(sub, architecture)))
    return tuple(students)


def parse_fusion(top: Section, ctx: Context, num_teachers: int) -> FusionSettings:
    from kt_nnunet.teachers.methods import FUSION_METHODS

    if not top.has("fusion"):
        return FusionSettings()
    value = top.raw("fusion")
    if isinstance(value, str):
        return FusionSettings(check_choice(value, "fusion", ctx, FUSION_METHODS))
    sub = Section(value, "fusion", ctx, ("method", "weights", "min_confidence", "tta"))
    method = sub.choice("method", FUSION_METHODS, "mean")
    weights = sub.sequence("weights", None)
    if weights is not None:
        if method != "weighted":
            raise sub.error("weights", f"only applies to `method: weighted`, not {method!r}")
        weights = tuple(check_number(w, join_key("fusion.weights", i), ctx, 0.0) for i, w in enumerate(weights))
        if len(weights) != num_teachers:
            raise sub.error("weights", f"has {len(weights)} weight(s) for {num_teachers} teacher(s); give one per "
                                       "teacher, in the order of `teachers`")
        if sum(weights) <= 0:
            raise sub.error("weights", "must not all be zero")
    elif method == "weighted":
        raise sub.error("weights", "is required with `method: weighted` (one weight per teacher)")
    return FusionSettings(method, weights, sub.number("min_confidence", None, minimum=0.0, maximum=1.0),
                        sub.boolean("tta", True))


def parse_transfer(top: Section, ctx: Context, teachers: tuple) -> TransferSettings:
    if not top.has("transfer"):
        return TransferSettings()
    sub = Section(top.raw("transfer"), "transfer", ctx, ("mode", "soft", "temperature", "alpha"))
    mode = sub.choice("mode", TRANSFER_MODES, "offline")
    other_kinds = [i for i, t in enumerate(teachers) if t.kind not in (None, "nnunet")]
    if mode == "online" and other_kinds:
        i = other_kinds[0]
        raise sub.error("mode", f"online transfer runs the teachers' networks inside the student's training, so they "
                                f"must be nnU-Net model folders; teachers[{i}] is a {teachers[i].kind} teacher. Use "
                                "`mode: offline` (the teachers label the transferal images first)")
    own = [i for i, t in enumerate(teachers) if t.configuration is not None]
    if mode == "online" and own:
        raise sub.error("mode", f"online transfer runs the teachers on the student's own batches, so they need the "
                                f"student's configuration; teachers[{own[0]}].configuration differs. Use "
                                "`mode: offline` (teachers of any configuration label the images on their grid)")
    soft = sub.boolean("soft", False)  # offline: the labelling keeps the fused probabilities for the students
    return TransferSettings(mode, soft, sub.number("temperature", 2.0, minimum=1e-6),
                          sub.number("alpha", 0.5, minimum=0.0, maximum=1.0))


def parse_test(top: Section, ctx: Context, base_dir: Path) -> TestConfig:
    value = top.raw("test")
    if isinstance(value, dict):
        sub = Section(value, "test", ctx, ("dataset", "split"))
        return TestConfig(parse_dataset(sub.raw("dataset"), "test.dataset", ctx, base_dir),
                          sub.choice("split", SPLITS, "auto"))
    return TestConfig(parse_dataset(value, "test", ctx, base_dir))


def parse_finetune(top: Section, ctx: Context, base_dir: Path, budget: Budget) -> Optional[FinetuneConfig]:
    if not top.has("finetune"):
        return None
    sub = Section(top.raw("finetune"), "finetune", ctx,
                  ("dataset", "split", "cases", "from", "budget", "learning_rate"))
    return FinetuneConfig(
        dataset=parse_dataset(sub.raw("dataset"), "finetune.dataset", ctx, base_dir),
        cases=sub.integer("cases", minimum=1),
        budget=parse_budget(sub, "budget", budget), split=sub.choice("split", ("train", "test"), "train"),
        start=sub.choice("from", ("multi_teacher", "single_teacher"), None),
        learning_rate=sub.number("learning_rate", None, minimum=0.0))


def parse_modes(top: Section, ctx: Context, num_teachers: int,
           finetune: Optional[FinetuneConfig]) -> tuple[tuple, Optional[FinetuneConfig]]:
    if not top.has("modes"):  # default: everything this config can run
        modes = ["single_teacher"] + (["multi_teacher"] if num_teachers > 1 else [])
        modes += ["kt_finetune", "finetune_only"] if finetune else []
    else:
        modes = [check_choice(m, join_key("modes", i), ctx, MODES)
                 for i, m in enumerate(top.sequence("modes", allow_single=True))]
        if not modes:
            raise top.error("modes", f"is empty; list one or more of {', '.join(MODES)}")
    for i, mode in enumerate(modes):
        if mode in modes[:i]:
            raise ctx.error(join_key("modes", i), f"{mode!r} is listed twice")
    if "multi_teacher" in modes and num_teachers < 2:
        raise top.error("modes", f"multi_teacher needs at least 2 teachers; `teachers` has {num_teachers}")
    if {"kt_finetune", "finetune_only"} & set(modes) and finetune is None:
        raise top.error("finetune", "is required by modes kt_finetune / finetune_only: give the labelled dataset "
                                    "and the number of cases (`finetune: {dataset: ..., cases: N}`)")
    if finetune is not None:
        start = finetune.start or ("multi_teacher" if "multi_teacher" in modes else "single_teacher")
        if "kt_finetune" in modes and start not in modes:
            key = "finetune.from" if finetune.start else "modes"
            raise ctx.error(key, f"kt_finetune fine-tunes the {start} students, but mode {start!r} is not in "
                                 "`modes`; add it")
        finetune = dataclasses.replace(finetune, start=start)
    return tuple(modes), finetune


def parse_evaluation(top: Section, ctx: Context) -> EvaluationConfig:
    if not top.has("evaluation"):
        return EvaluationConfig()
    sub = Section(top.raw("evaluation"), "evaluation", ctx,
                  ("mirroring", "threads", "warmup", "overlay_cases", "timing_rounds", "timing_cases"))
    return EvaluationConfig(sub.boolean("mirroring", True), sub.integer("threads", None, minimum=1),
                            sub.boolean("warmup", True), sub.integer("overlay_cases", 3, minimum=0),
                            sub.integer("timing_rounds", 3, minimum=1), sub.integer("timing_cases", 3, minimum=1))
