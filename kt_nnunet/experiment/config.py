"""The experiment config (YAML or TOML), parsed into dataclasses; docs/experiment.md documents every key.

``load_config(path)`` reads a file, ``parse_config(mapping)`` a dict; both return an
:class:`ExperimentConfig` or raise one :class:`ExperimentConfigError` that names the file and the key
(``experiment.yaml: students[1].architecture: unknown architecture 'unett'; did you mean 'unet'?``).
Parsing checks structure, types, names and cross-references; whether datasets and model folders exist
is checked by :meth:`ExperimentConfig.check_inputs`, because a runner may build them first.
:meth:`ExperimentConfig.steps` (``kt_nnunet.experiment.steps``) turns a config into the ordered steps.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from kt_nnunet.errors import KtNnunetError
from kt_nnunet.experiment.executors.settings import ExecutorConfig
from kt_nnunet.experiment.schema import Context, ExperimentConfigError, Section, join_key
from kt_nnunet.teachers.methods import FusionSettings
from kt_nnunet.training.settings import TRANSFER_MODES, Budget, TransferSettings

MODES = ("single_teacher", "multi_teacher", "kt_finetune", "finetune_only")
MODE_ROLES = {"single_teacher": "student", "multi_teacher": "multi_teacher_student",
              "kt_finetune": "kt_finetune", "finetune_only": "finetune_only"}
DEVICES = ("cpu", "cuda")
SPLITS = ("auto", "test", "train")
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_\-]*"
NAME_HELP = "use letters, digits, '_' and '-' (it names folders and nnU-Net datasets)"
CONFIG_SUFFIXES = (".yaml", ".yml", ".toml", ".json")
TOP_LEVEL_KEYS = ("name", "description", "output", "seed", "repeats", "configuration", "fold", "device",
                  "derived_dataset_ids", "preprocessing_processes",
                  "budget", "source", "transferal", "test", "teachers", "students", "modes", "fusion", "transfer",
                  "finetune", "evaluation", "executor", "threads")


@dataclass(frozen=True)
class DatasetRef:
    """A dataset as written in the config: an id or ``DatasetNNN_Name`` (in ``nnUNet_raw``), or a folder."""

    key: str                      # the config key, for messages (``source``, ``teachers[1].source``)
    spec: Any                     # as written: 900, "Dataset900_Name" or "path/to/folder"
    path: Optional[Path] = None   # set when the spec is a folder path (resolved against the config's folder)

    @property
    def dataset_id(self) -> Optional[int]:
        if isinstance(self.spec, int):
            return self.spec
        match = re.fullmatch(r"Dataset(\d{3})_.+", str(self.spec)) or re.fullmatch(r"(\d{1,3})", str(self.spec))
        if match:
            return int(match[1])
        if self.path is not None:
            match = re.fullmatch(r"Dataset(\d{3})_.+", self.path.name)
            return int(match[1]) if match else None
        return None

    def resolve(self, source: str = "experiment config") -> Path:
        """The raw dataset folder; a missing dataset is an :class:`ExperimentConfigError` naming the key."""
        ctx = Context(source)
        if self.path is not None:
            if not self.path.is_dir():
                raise ctx.error(self.key, f"dataset folder {self.path} does not exist")
            return self.path
        from kt_nnunet.nnunet.paths import find_raw_dataset, nnunet_folder

        raw = nnunet_folder("nnUNet_raw", create=False)  # a refused config must leave no folder behind
        found = find_raw_dataset(self.spec)
        if found is None:
            raise ctx.error(self.key, f"dataset {self.spec!r} is not in nnUNet_raw ({raw}); build or import it "
                                      "first (`kt-nnunet data ...`), or give a folder path")
        return found

    def as_json(self) -> Any:
        return str(self.path) if self.path is not None else self.spec


# An experiment trains briefly unless its config says otherwise (nnU-Net's own 1000 epochs are days on a CPU).
EXPERIMENT_BUDGET = Budget(epochs=10, iterations_per_epoch=20, val_iterations_per_epoch=5)


@dataclass(frozen=True)
class TeacherConfig:
    """A teacher trained here (``architecture`` + ``source``) or an existing one of any kind (``path``: a model
    folder, an exported network, a predictions folder, ...; ``kind`` None: found from the path)."""

    name: str
    architecture: Optional[str] = None
    source: Optional[DatasetRef] = None
    budget: Optional[Budget] = None
    tiny: bool = False
    arch_kwargs: dict = field(default_factory=dict)
    path: Optional[Path] = None
    folds: Optional[tuple[int, ...]] = None
    checkpoint: str = "checkpoint_final.pth"
    configuration: Optional[str] = None  # a trained-here teacher's own nnU-Net configuration (default: the top one)
    kind: Optional[str] = None
    sidecar: Optional[Path] = None
    given_by: str = "model_folder"       # the config key that gave ``path`` (for messages)

    @property
    def trained_here(self) -> bool:
        return self.path is None

    @property
    def model_folder(self) -> Optional[Path]:
        """An existing teacher's nnU-Net model folder (None for a teacher of another kind)."""
        return self.path if self.kind == "nnunet" else None

    def spec(self):
        """The resolved :class:`~kt_nnunet.teachers.spec.TeacherSpec` of an existing teacher (its kind found from
        the path if the config does not name it)."""
        from kt_nnunet.teachers.kinds import resolve_kind
        from kt_nnunet.teachers.spec import TeacherSpec

        return resolve_kind(TeacherSpec(self.path, self.folds, self.checkpoint, kind=self.kind, sidecar=self.sidecar))


@dataclass(frozen=True)
class StudentConfig:
    name: str
    architecture: str
    budget: Budget
    tiny: bool = False
    arch_kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TestConfig:
    dataset: DatasetRef
    split: str = "auto"


@dataclass(frozen=True)
class FinetuneConfig:
    dataset: DatasetRef
    cases: int
    budget: Budget
    split: str = "train"
    start: Optional[str] = None    # config key ``from``: multi_teacher / single_teacher students are fine-tuned
    learning_rate: Optional[float] = None


@dataclass(frozen=True)
class EvaluationConfig:
    mirroring: bool = True
    threads: Optional[int] = None
    warmup: bool = True
    overlay_cases: int = 3
    timing_rounds: int = 3        # interleaved rounds over the models; the median round gives s / case
    timing_cases: int = 3         # test cases predicted per model and round


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    output: Path
    teachers: tuple[TeacherConfig, ...]
    students: tuple[StudentConfig, ...]
    test: TestConfig
    modes: tuple[str, ...]
    budget: Budget = EXPERIMENT_BUDGET
    transferal: Optional[DatasetRef] = None
    sources: tuple[DatasetRef, ...] = ()
    fusion: FusionSettings = FusionSettings()
    transfer: TransferSettings = TransferSettings()
    finetune: Optional[FinetuneConfig] = None
    evaluation: EvaluationConfig = EvaluationConfig()
    seed: int = 0
    repeats: int = 1              # every model trained here is trained with seeds seed, seed + 1, ...
    configuration: str = "2d"
    fold: int | str = 0   # 0-4, or "all": nnU-Net's final model on every case (docs/experiment.md)
    device: str = "cpu"
    derived_dataset_ids: int = 800
    preprocessing_processes: int = 1   # nnU-Net's checks/fingerprint/preprocessing; 1: in process, no pools
    executor: ExecutorConfig = ExecutorConfig()   # how the steps run (serial unless the config says otherwise)
    threads: Optional[int] = None      # torch threads per step on the CPU; None: the cores the step may use
    description: str = ""
    source_file: Optional[Path] = None
    source_label: str = "experiment config"  # how messages name this config (the file name)

    @property
    def label(self) -> str:
        return self.source_label

    def teacher(self, name: str) -> TeacherConfig:
        return next(t for t in self.teachers if t.name == name)

    def steps(self) -> list:
        """The ordered steps a runner executes (see ``kt_nnunet.experiment.steps``)."""
        from kt_nnunet.experiment.steps import plan_steps

        return plan_steps(self)

    def check_inputs(self) -> dict[str, Path]:
        """Resolve every input dataset and model folder; the first missing one raises, naming its key."""
        found: dict[str, Path] = {}
        refs = [*self.sources, self.transferal, self.test.dataset,
                self.finetune.dataset if self.finetune else None,
                *(t.source for t in self.teachers)]
        for ref in refs:
            if ref is not None and ref.key not in found:
                found[ref.key] = ref.resolve(self.label)
        from kt_nnunet.experiment.config_sections import same_split_folders

        if self.finetune is not None and same_split_folders(
                found[self.finetune.dataset.key], self.finetune.split, found[self.test.dataset.key], self.test.split):
            # Parse time compares ids or paths only: a folder path and an id naming one dataset meet here.
            raise _finetune_is_test_set(Context(self.label))
        if self.finetune is not None:
            self._check_finetune_cases(found[self.finetune.dataset.key])
        for index, teacher in enumerate(self.teachers):
            if teacher.trained_here:
                continue
            key = f"teachers[{index}].{teacher.given_by}"
            if teacher.kind == "nnunet" and not (teacher.path / "plans.json").is_file():
                raise Context(self.label).error(key, f"{teacher.path} is not a trained model folder "
                                                     "(no plans.json); give nnUNet_results/DatasetX/TR__PLANS__CFG")
            try:
                spec = teacher.spec()
            except KtNnunetError as exc:
                raise Context(self.label).error(key, str(exc)) from exc
            if self.transfer.mode == "online" and spec.kind != "nnunet":
                raise Context(self.label).error(key, f"is a {spec.kind} teacher; online transfer runs the teachers' "
                                                     "networks inside the student's training and needs nnU-Net model "
                                                     "folders. Use `transfer: {mode: offline}`")
            found[key] = teacher.path
        return found

    def _check_finetune_cases(self, folder: Path) -> None:
        """The fine-tune subset is made after every transfer student is trained: too few cases must fail now."""
        from kt_nnunet.data.subset import labelled_cases
        from kt_nnunet.nnunet.raw_dataset import DatasetError

        ctx = Context(self.label)
        try:
            available = len(labelled_cases(folder, self.finetune.split))
        except DatasetError as exc:
            raise ctx.error("finetune.dataset", str(exc)) from exc
        if self.finetune.cases > available:
            raise ctx.error("finetune.cases", f"{self.finetune.cases} cases asked for, but {folder.name} has only "
                                              f"{available} labelled case(s) in its {self.finetune.split} split; "
                                              f"choose at most {available}, or another finetune.dataset")

    def as_dict(self) -> dict:
        """A JSON-ready echo of the parsed config (paths as strings), for results.json."""
        return _jsonable(self)


def _finetune_is_test_set(ctx: Context) -> ExperimentConfigError:
    return ctx.error("finetune.dataset", "is the test set (same dataset and split): fine-tuning on test cases "
                                         "leaks them; use another dataset or `split: train` with `test.split: test`")


def _jsonable(value: Any) -> Any:
    if isinstance(value, DatasetRef):
        return value.as_json()
    if dataclasses.is_dataclass(value):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def derived_datasets_per_repeat(num_teachers: int) -> int:
    """Each repeat's teacher labels (one per teacher, one fused), and its fine-tune subset."""
    return num_teachers + 2


# ------------------------------------------------------------------------------------------- loading
def load_config(path: str | Path) -> ExperimentConfig:
    """Read a ``.yaml``/``.yml``/``.toml``/``.json`` experiment config and parse it."""
    path = Path(path)
    ctx = Context(path.name)
    if not path.is_file():
        raise ExperimentConfigError(f"{path}: experiment config not found", source=path.name)
    suffix = path.suffix.lower()
    if suffix not in CONFIG_SUFFIXES:
        raise ctx.error("", f"unknown config format {suffix or '(none)'!r}; use one of {', '.join(CONFIG_SUFFIXES)}")
    text = path.read_text()
    if suffix == ".toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10
            try:
                import tomli as tomllib
            except ImportError:
                raise ctx.error("", "TOML configs need Python >= 3.11 or `pip install tomli`; or write the "
                                    "config as YAML") from None
    try:
        if suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix == ".json":
            import json

            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError
        detail = " ".join(str(exc).split())
        raise ctx.error("", f"cannot parse {suffix[1:].upper()}: {detail[:300]}") from exc
    return parse_config(data, source=path.name, base_dir=path.parent, source_file=path)


def parse_config(data: Any, *, source: str = "experiment config", base_dir: str | Path = ".",
                 source_file: Optional[Path] = None) -> ExperimentConfig:
    """Check ``data`` (a mapping as YAML/TOML give it) and build an :class:`ExperimentConfig`."""
    from kt_nnunet.experiment.config_sections import (
        CONFIGURATION_HELP,
        CONFIGURATION_PATTERN,
        check_unique_names,
        parse_budget,
        parse_derived_dataset_ids,
        parse_evaluation,
        parse_finetune,
        parse_fold,
        parse_fusion,
        parse_modes,
        parse_sources,
        parse_students,
        parse_teachers,
        parse_test,
        parse_transfer,
        parse_transferal,
        resolve_path,
        same_split,
    )

    ctx = Context(source)
    base_dir = Path(base_dir).resolve()
    if data is None:
        raise ctx.error("", "the config is empty; see docs/experiment.md for the keys")
    top = Section(data, "", ctx, TOP_LEVEL_KEYS)
    name = top.string("name", pattern=NAME_PATTERN, pattern_help=NAME_HELP)
    configuration = top.string("configuration", "2d", pattern=CONFIGURATION_PATTERN, pattern_help=CONFIGURATION_HELP)
    budget = parse_budget(top, "budget", EXPERIMENT_BUDGET)
    sources = parse_sources(top, ctx, base_dir)
    teachers = parse_teachers(top, ctx, base_dir, budget, sources, configuration)
    students = parse_students(top, ctx, budget, 2 if configuration.startswith("2d") else 3)
    fusion = parse_fusion(top, ctx, len(teachers))
    finetune = parse_finetune(top, ctx, base_dir, budget)
    modes, finetune = parse_modes(top, ctx, len(teachers), finetune)
    test = parse_test(top, ctx, base_dir)
    transferal = parse_transferal(top, ctx, base_dir, modes)
    if finetune and same_split(finetune.dataset, finetune.split, test.dataset, test.split):
        raise _finetune_is_test_set(ctx)
    check_unique_names(ctx, teachers, students)
    start, repeats = parse_derived_dataset_ids(top, ctx, len(teachers))
    transfer = parse_transfer(top, ctx, teachers)
    from kt_nnunet.experiment.executors import executor_names
    from kt_nnunet.experiment.executors.settings import parse_executor

    return ExperimentConfig(
        name=name, output=resolve_path(top.string("output"), base_dir), teachers=teachers, students=students, test=test,
        modes=modes, budget=budget, transferal=transferal, sources=sources, fusion=fusion, transfer=transfer,
        finetune=finetune, evaluation=parse_evaluation(top, ctx), seed=top.integer("seed", 0, minimum=0),
        repeats=repeats,
        configuration=configuration, fold=parse_fold(top),
        device=top.choice("device", DEVICES, "cpu"), derived_dataset_ids=start,
        preprocessing_processes=top.integer("preprocessing_processes", 1, minimum=1),
        executor=parse_executor(top, ctx, executor_names()), threads=top.integer("threads", None, minimum=1),
        description=top.string("description", ""), source_file=source_file, source_label=source)
