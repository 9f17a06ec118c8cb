"""Runs an experiment's steps in order through the labelling, training and evaluation APIs, resumably.

What is done is judged from the files, never from memory: a model step is done when its fold holds
``checkpoint_final.pth``; a labelling step resumes inside ``label_dataset`` (finished cases are skipped);
an evaluation is reused when the checkpoint checksums and test cases are unchanged. ``state.json`` in the
experiment folder records each step's output and wall time (over all the runs that worked on it), for the
report and for the next run.

Models are trained without nnU-Net's final fold validation: the experiment scores every model on the
held-out test set instead, and the validation export costs a process pool per model on a CPU.
"""
from __future__ import annotations

import functools
import json
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

from kt_nnunet import progress
from kt_nnunet.experiment.console import ExperimentConsole, LineStream
from kt_nnunet.experiment.config import ExperimentConfig, load_config
from kt_nnunet.experiment.schema import ExperimentConfigError
from kt_nnunet.experiment.steps import (Evaluate, Finetune, LabelTransferal, MakeFinetuneSubset, ModelStep, Report,
                                        Step, TimeInference, TrainBaseline, TrainStudent, TrainTeacher, UseTeacher,
                                        plan_steps, repeat_suffix)
from kt_nnunet.nnunet.paths import NNUNET_FOLDER_VARIABLES, folder_if_set, nnunet_folder, nnunet_folders

STATE_FILE = "state.json"
RESULTS_FILE = "results.json"
TIMING_FILE = "inference_timing.json"
UNFINISHED_SAVE_INTERVAL_S = 15.0  # how often a running step's seconds so far are saved (on an epoch or a case)


def experiment_folders(output: Path, override: bool = False) -> dict:
    """nnU-Net's folder variables for an experiment in ``output``: their values where set, else folders in
    ``output`` (all of them in ``output`` with ``override``)."""
    return {variable: str(folder_if_set(variable) if folder_if_set(variable) and not override
                          else (output / variable).absolute()) for variable in NNUNET_FOLDER_VARIABLES}


def experiment_threads(threads: Optional[int]):
    """The config's ``threads`` for the steps run in this process (``kt_nnunet.devices.compute_threads``), set
    and restored like nnU-Net's folder variables."""
    from kt_nnunet.devices import THREADS_VARIABLE

    return nnunet_folders({THREADS_VARIABLE: threads} if threads else {})


def _in_experiment_folders(method):
    """Run a runner method with the experiment's nnU-Net folder variables, restored afterwards."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with nnunet_folders(self.folders):
            return method(self, *args, **kwargs)
    return wrapper


def _family(step: Step) -> str:
    """Steps that take comparable time, for the console's estimate: every training is one family."""
    return "training" if isinstance(step, ModelStep) and not isinstance(step, UseTeacher) else step.kind


def _finished(model_folder: Path, fold: int) -> bool:
    return (Path(model_folder) / f"fold_{fold}" / "checkpoint_final.pth").is_file()


class ExperimentRunner:
    def __init__(self, config: ExperimentConfig, *, force: bool = False, console: Optional[ExperimentConsole] = None,
                 folders: Optional[dict] = None, keep_state: bool = True):
        """``keep_state=False``: never write ``state.json`` (a job running one step; its orchestrator keeps it)."""
        self.config = config
        self.keep_state = keep_state
        self.output = Path(config.output)
        self.folders = folders if folders is not None else experiment_folders(self.output)
        self.console = console if console is not None else ExperimentConsole(self.output)
        self.force = force
        self.state_path = self.output / STATE_FILE
        self.state = json.loads(self.state_path.read_text()) if self.state_path.is_file() else {"steps": {}}
        self.models: dict[tuple[str, int], Path] = {}   # (model name, repeat) -> model folder
        self.given_teachers: dict = {}           # (teacher name, 0) -> TeacherSpec of an existing teacher
        self.datasets: dict[str, str] = {}       # derived dataset output_name -> DatasetNNN_Name
        self.evaluations: dict[tuple[str, int], object] = {}
        self.inference_timing: dict = {}
        self.labelling: dict[str, dict] = {}      # label step name -> what the labelling summary says
        self.steps = plan_steps(config)
        self.model_steps = {s.key: s for s in self.steps if isinstance(s, ModelStep)}

    # -- bookkeeping --------------------------------------------------------------------------------
    def _save_state(self) -> None:
        from kt_nnunet.atomic_files import atomic_write_text

        if not self.keep_state:
            return
        atomic_write_text(self.state_path, json.dumps(self.state, indent=2))

    @_in_experiment_folders
    def check(self) -> None:
        """Everything that can refuse the config without running a step; it creates nothing."""
        self.config.check_inputs()
        check_derived_datasets(self.config, self.steps)

    @_in_experiment_folders
    def run(self, executor: Optional[str] = None) -> Path:
        """Run every step that is not done, with ``executor`` (default: the config's; see ``executors``)."""
        from kt_nnunet.experiment.executors import create_executor
        from kt_nnunet.experiment.lock import experiment_lock

        self.check()  # first: a refused config leaves no output folder behind
        self.output.mkdir(parents=True, exist_ok=True)
        for folder in self.folders.values():
            Path(folder).mkdir(parents=True, exist_ok=True)
        with experiment_lock(self.output), experiment_threads(self.config.threads):
            self.state = json.loads(self.state_path.read_text()) if self.state_path.is_file() else {"steps": {}}
            parallel = create_executor(executor or self.config.executor.name, self)
            if parallel is None:
                self._run_serially()
            else:
                from kt_nnunet.experiment.dispatch import Dispatcher

                Dispatcher(self, parallel).run()
        return self.output / RESULTS_FILE

    def _run_serially(self) -> None:
        steps = self.steps
        started = time.perf_counter()
        recorded = {name: r["seconds"] for name, r in self.state["steps"].items() if "seconds" in r}
        expected = recorded if self.force else {name: 0.0 for name in recorded if self.is_done(name)}
        self.console.start([(step.name, step.kind, _family(step)) for step in steps], expected,
                           worked_before=recorded)
        try:
            for index, step in enumerate(steps, start=1):
                self._run_step(index, step)
        finally:
            self.console.close()
        self.state["total_seconds_last_run"] = round(time.perf_counter() - started, 2)
        self._save_state()

    def run_single(self, step: Step) -> bool:
        """Run one step as a job does (its dependencies restored first); True when its result already existed."""
        with nnunet_folders(self.folders):
            self.console.start([(step.name, step.kind, _family(step))])
            try:
                return self._run_step(1, step)
            finally:
                self.console.close()

    def _run_step(self, index: int, step: Step) -> bool:
        """Run one step and record its seconds in the state.

        A step finished by an earlier run keeps that run's seconds. A step resumed from unfinished work adds what
        the interrupted runs spent on it (``unfinished_seconds``), which is saved while it runs too, so a kill -9
        loses only the time since the last epoch or case.
        """
        record = self.state["steps"].setdefault(step.name, {})
        if self.force:  # it starts over: the interrupted runs' work is discarded, and so is their time
            record.pop("unfinished_seconds", None)
        earlier = record.get("unfinished_seconds", 0.0)
        started = last_saved = time.perf_counter()

        def save_unfinished(event, fields):
            nonlocal last_saved
            now = time.perf_counter()
            if now - last_saved >= UNFINISHED_SAVE_INTERVAL_S:
                record["unfinished_seconds"] = round(earlier + now - started, 2)
                self._save_state()
                last_saved = now

        try:
            with progress.listening(save_unfinished), self.console.step(index, step.name) as outcome:
                outcome.reused = self.execute(step)
        except BaseException:
            record["unfinished_seconds"] = round(earlier + time.perf_counter() - started, 2)
            self._save_state()
            raise
        if not outcome.reused or "seconds" not in record:
            record["seconds"] = round(earlier + outcome.seconds, 2)
        record.pop("unfinished_seconds", None)
        record["finished"] = True
        self._save_state()
        return outcome.reused

    def is_done(self, name: str) -> bool:
        """Whether step ``name``'s result is on disk (a dry run's view: inputs are not re-checked)."""
        step = next((s for s in self.steps if s.name == name), None)
        record = self.state["steps"].get(name, {})
        if step is None or isinstance(step, Report):
            return False
        if isinstance(step, UseTeacher):
            return True
        if isinstance(step, ModelStep):
            return bool(record.get("model_folder")) and _finished(Path(record["model_folder"]), self.config.fold)
        if isinstance(step, (LabelTransferal, MakeFinetuneSubset)):
            from kt_nnunet.labelling.output import PROVENANCE_FILE

            dataset = nnunet_folder("nnUNet_raw", create=False) / f"Dataset{step.output_id:03d}_{step.output_name}"
            return (dataset / "dataset.json").is_file() and (
                isinstance(step, MakeFinetuneSubset) or (dataset / PROVENANCE_FILE).is_file())
        if isinstance(step, Evaluate):
            return (self._evaluation_folder(step) / "evaluation.json").is_file()
        if isinstance(step, TimeInference):
            return (self.output / "evaluations" / TIMING_FILE).is_file()
        return False

    def step_named(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)

    def reusable(self, step: Step) -> bool:
        """Whether a finished step can be skipped, its outputs restored from its state record and the files."""
        record = self.state["steps"].get(step.name, {})
        finished = record.get("finished") or isinstance(step, UseTeacher)
        return not self.force and finished and self.is_done(step.name) and self.restore(step)

    def restore_dependencies(self, step: Step) -> None:
        """Restore what ``step`` reads from the steps it depends on, directly or not (a job runs only ``step``)."""
        seen: set = set()
        wanted = list(step.depends_on)
        while wanted:
            name = wanted.pop()
            if name in seen:
                continue
            seen.add(name)
            dependency = self.step_named(name)
            if not self.restore(dependency):
                raise RuntimeError(f"{step.name} depends on {name}, whose outputs are not recorded as finished")
            wanted.extend(dependency.depends_on)

    def restore(self, step: Step) -> bool:
        """Put a finished step's outputs back into memory from its state record and files; False when missing."""
        record = self.state["steps"].get(step.name, {})
        if isinstance(step, UseTeacher):
            spec = self.config.teacher(step.model).spec()
            self.given_teachers[step.key] = spec
            if spec.kind == "nnunet":
                self.models[step.key] = Path(spec.path)
            return True
        if isinstance(step, ModelStep):
            if record.get("model_folder"):
                self.models[step.key] = Path(record["model_folder"])
            return bool(record.get("model_folder"))
        if isinstance(step, (LabelTransferal, MakeFinetuneSubset)):
            if isinstance(step, LabelTransferal) and "labelling" not in record:
                return False  # recorded by an older kt-nnunet: running the step again reuses its labels
            self.datasets[step.output_name] = f"Dataset{step.output_id:03d}_{step.output_name}"
            if isinstance(step, LabelTransferal):
                self.labelling[step.name] = record["labelling"]
            return True
        if isinstance(step, Evaluate):
            from kt_nnunet.evaluation.record import EVALUATION_FILE, ModelEvaluation

            path = self._evaluation_folder(step) / EVALUATION_FILE
            if path.is_file():
                self.evaluations[(step.model, step.repeat)] = ModelEvaluation.from_dict(json.loads(path.read_text()))
            return path.is_file()
        if isinstance(step, TimeInference):
            path = self.output / "evaluations" / TIMING_FILE
            if path.is_file():
                self.inference_timing = json.loads(path.read_text())
            return path.is_file()
        return False

    def _evaluation_folder(self, step: Evaluate) -> Path:
        return self.output / "evaluations" / f"{step.model}{repeat_suffix(step.repeat)}"

    @_in_experiment_folders
    def dry_run(self) -> list[tuple[str, bool]]:
        """Every step in order, with whether its result is already on disk; runs nothing."""
        return [(step.name, self.is_done(step.name)) for step in self.steps]

    def execute(self, step: Step) -> bool:
        """Run one step; True when its result already existed."""
        handler = {TrainTeacher: self._train_teacher, UseTeacher: self._use_teacher,
                   LabelTransferal: self._label, TrainStudent: self._train_student,
                   MakeFinetuneSubset: self._make_subset, Finetune: self._finetune, TrainBaseline: self._baseline,
                   Evaluate: self._evaluate, TimeInference: self._time_inference, Report: self._report}[type(step)]
        return handler(step)

    def _remember_model(self, step: ModelStep, folder: Path) -> None:
        self.models[step.key] = Path(folder)
        self.state["steps"].setdefault(step.name, {})["model_folder"] = str(folder)

    def model_folder(self, model: str, repeat: int) -> Path:
        """A model of ``repeat``; a model used as given (``model_folder`` teacher) is the same in every repeat."""
        return self.models.get((model, repeat)) or self.models[(model, 0)]

    def _train_or_reuse(self, step: ModelStep, plan) -> bool:
        """Reuse a finished fold of ``plan``; resume an unfinished one; otherwise train it. True when reused."""
        from kt_nnunet.training.training_plan import train_plan

        folder = plan.model_folder()
        if _finished(folder, self.config.fold) and not self.force:
            self._remember_model(step, folder)
            return True
        resume = (folder / f"fold_{self.config.fold}").is_dir() and not self.force
        model = train_plan(plan, fold=self.config.fold, device=self.config.device, continue_training=resume,
                           force=self.force, validate=False)
        self._remember_model(step, model)
        return False

    # -- steps --------------------------------------------------------------------------------------
    def _plain_training(self, step: ModelStep, dataset, budget, tiny, arch_kwargs,
                        configuration: Optional[str] = None) -> bool:
        """Plan ``dataset`` for the step's architecture and train it with the budget trainer, in ``configuration``
        (default: the experiment's)."""
        from kt_nnunet.training.supervised import prepare_training

        cfg = self.config
        plan = prepare_training(dataset, step.architecture, configuration=configuration or cfg.configuration,
                                arch_kwargs=dict(arch_kwargs) or None, tiny=tiny, budget=budget, seed=step.seed,
                                force=self.force, num_processes=cfg.preprocessing_processes)
        return self._train_or_reuse(step, plan)

    def _train_teacher(self, step: TrainTeacher) -> bool:
        return self._plain_training(step, step.dataset.resolve(self.config.label).name, step.budget, step.tiny,
                                    step.arch_kwargs, step.configuration)

    def _use_teacher(self, step: UseTeacher) -> bool:
        from kt_nnunet.teachers.base import TeacherOptions
        from kt_nnunet.teachers.kinds import open_teacher

        teacher = self.config.teacher(step.model)
        spec = teacher.spec()
        open_teacher(spec, TeacherOptions())  # refuses unsafe, broken or unreadable teachers now, not when labelling
        self.given_teachers[step.key] = spec
        if spec.kind == "nnunet":
            self._remember_model(step, spec.path)
        else:
            self.state["steps"].setdefault(step.name, {})["teacher"] = str(spec)
        return True

    def _teachers_of(self, names, repeat: int) -> list:
        """The teachers as labelling and transfer take them: model folders, or the spec of a given teacher."""
        return [self.given_teachers.get((name, 0)) or str(self.model_folder(name, repeat)) for name in names]

    def _label(self, step: LabelTransferal) -> bool:
        from kt_nnunet.labelling.api import label_dataset

        out = f"Dataset{step.output_id:03d}_{step.output_name}"
        target = nnunet_folder("nnUNet_raw", create=False) / out
        existed = (target / "dataset.json").is_file()
        fusion, transfer = step.fusion, self.config.transfer
        result = label_dataset(self._teachers_of(step.teachers, step.repeat),
                               step.dataset.resolve(self.config.label), out, fusion=fusion,
                               device=self.config.device, force=self.force, progress=False, save_probabilities=transfer.soft and not transfer.online)
        self.datasets[step.output_name] = out
        self.state["steps"].setdefault(step.name, {})["dataset"] = out
        self.labelling[step.name] = {"dataset": out, "repeat": step.repeat, "teachers": list(step.teachers),
                                     "fusion": fusion.method, "min_confidence": fusion.min_confidence,
                                     "provenance": str(result.provenance), **result.summary}
        self.state["steps"][step.name]["labelling"] = self.labelling[step.name]
        return existed

    def _train_student(self, step: TrainStudent) -> bool:
        from kt_nnunet.training.transferring import prepare_transfer

        cfg = self.config
        plan = prepare_transfer(self._teachers_of(step.teachers, step.repeat), self.datasets[step.labelled_dataset],
                                step.architecture, transfer=cfg.transfer, fusion=step.fusion, budget=step.budget,
                                configuration=cfg.configuration, tiny=step.tiny,
                                arch_kwargs=dict(step.arch_kwargs) or None, seed=step.seed, force=self.force,
                                device=cfg.device, num_processes=cfg.preprocessing_processes)
        return self._train_or_reuse(step, plan)

    def _make_subset(self, step: MakeFinetuneSubset) -> bool:
        from kt_nnunet.data.subset import make_subset

        out = f"Dataset{step.output_id:03d}_{step.output_name}"
        target = nnunet_folder("nnUNet_raw", create=False) / out
        self.datasets[step.output_name] = out
        if (target / "dataset.json").is_file() and not self.force:
            recorded = json.loads((target / "dataset.json").read_text()).get("kt_nnunet", {})
            if recorded.get("seed") == step.seed and len(recorded.get("cases", [])) == step.cases:
                return True
        make_subset(step.dataset.resolve(self.config.label), step.output_id, step.output_name, step.cases,
                    seed=step.seed, split=step.split, force=True)
        return False

    def _finetune(self, step: Finetune) -> bool:
        return self._train_from_student(step, step.base_model, step.learning_rate, from_scratch=False)

    def _train_from_student(self, step: ModelStep, student: str, learning_rate, from_scratch: bool) -> bool:
        """Fine-tune ``student`` on the step's subset, or train its network from scratch there (the baseline)."""
        from dataclasses import replace

        from kt_nnunet.training.finetuning import prepare_finetune

        plan = prepare_finetune(self.model_folder(student, step.repeat), self.datasets[step.dataset_name],
                                budget=replace(step.budget, initial_lr=learning_rate), seed=step.seed,
                                from_scratch=from_scratch, force=self.force,
                                num_processes=self.config.preprocessing_processes)
        return self._train_or_reuse(step, plan)

    def _baseline(self, step: TrainBaseline) -> bool:
        if step.network_from:  # the transfer student's own network and preprocessing, from scratch
            return self._train_from_student(step, step.network_from, None, from_scratch=True)
        return self._plain_training(step, self.datasets[step.dataset_name], step.budget, step.tiny, step.arch_kwargs)

    def _evaluate(self, step: Evaluate) -> bool:
        from kt_nnunet.evaluation.api import evaluate_model

        cfg = self.config
        model_step = self.model_steps[(step.model, step.repeat)]
        out = self._evaluation_folder(step)
        existed = (out / "evaluation.json").is_file()
        evaluation = evaluate_model(self.model_folder(step.model, step.repeat), step.test.dataset.resolve(cfg.label),
                                    out, name=step.model, role=step.role, folds=[cfg.fold],
                                    mirroring=cfg.evaluation.mirroring, threads=cfg.evaluation.threads,
                                    warmup=cfg.evaluation.warmup, teachers=list(model_step.teachers),
                                    extra={"registered_architecture": model_step.architecture,
                                           "repeat": step.repeat, "seed": step.seed}, force=self.force)
        self.evaluations[(step.model, step.repeat)] = evaluation
        return existed and not self.force

    def _time_inference(self, step: TimeInference) -> bool:
        from kt_nnunet.evaluation.timing import time_inference

        cfg = self.config
        out = self.output / "evaluations" / TIMING_FILE
        self.inference_timing, reused = time_inference(
            {name: self.model_folder(name, 0) for name in step.models}, cfg.test.dataset.resolve(cfg.label), out,
            folds=[cfg.fold], mirroring=cfg.evaluation.mirroring, threads=cfg.evaluation.threads,
            rounds=cfg.evaluation.timing_rounds, cases=cfg.evaluation.timing_cases, force=self.force)
        return reused

    def _report(self, step: Report) -> bool:
        from kt_nnunet.experiment.report import write_report
        from kt_nnunet.experiment.results import build_results, write_results

        cfg = self.config
        timings = {name: record.get("seconds") for name, record in self.state["steps"].items()}
        timings["total"] = round(sum(v for v in timings.values() if v), 2)
        evaluations = [self.evaluations[(s.model, s.repeat)] for s in self.steps if isinstance(s, Evaluate)]
        test_set = {"dataset": str(cfg.test.dataset.resolve(cfg.label)), "split": cfg.test.split,
                    "num_cases": len(evaluations[0].cases) if evaluations else None}
        unscored = [{"name": s.model, "kind": self.given_teachers[s.key].kind,
                     "path": str(self.given_teachers[s.key].path)}
                    for s in self.steps if isinstance(s, UseTeacher) and not s.scored and s.key in self.given_teachers]
        step_graph = [{"name": s.name, "depends_on": list(s.depends_on), "seconds": timings.get(s.name)}
                      for s in self.steps]
        results = build_results(evaluations, config=cfg, test_set=test_set, step_graph=step_graph,
                                timings=timings, name=cfg.name, output_folder=self.output,
                                inference_timing=self.inference_timing,
                                labelling=[self.labelling[s.name] for s in self.steps
                                           if isinstance(s, LabelTransferal) and s.name in self.labelling],
                                unscored_teachers=unscored)
        write_results(results, self.output / RESULTS_FILE)
        write_report(results, self.output, overlay_cases=cfg.evaluation.overlay_cases)
        return False


def check_derived_datasets(config: ExperimentConfig, steps: list[Step]) -> None:
    """The datasets the experiment makes get fixed ids (``derived_dataset_ids``); an id that an input or another
    dataset already has, or a same-named folder kt-nnunet did not write, would stop the run at its first label
    step, after the teachers were trained."""
    from kt_nnunet.data.atomic import written_by_kt_nnunet
    from kt_nnunet.experiment.schema import Context

    ctx = Context(config.label)
    derived = {s.output_id: f"Dataset{s.output_id:03d}_{s.output_name}" for s in steps
               if isinstance(s, (LabelTransferal, MakeFinetuneSubset))}
    if not derived:
        return
    free = f"choose derived_dataset_ids so that ids {min(derived)}-{max(derived)} are free"
    inputs = [*config.sources, config.transferal, config.test.dataset,
              config.finetune.dataset if config.finetune else None, *(t.source for t in config.teachers)]
    for ref in inputs:
        if ref is not None and ref.dataset_id in derived:
            raise ctx.error("derived_dataset_ids", f"{config.derived_dataset_ids} gives the derived dataset "
                                                   f"{derived[ref.dataset_id]} id {ref.dataset_id}, which {ref.key} "
                                                   f"({ref.as_json()}) has; {free}")
    for variable in NNUNET_FOLDER_VARIABLES:
        root = nnunet_folder(variable, create=False)
        for dataset_id, name in derived.items():
            other = next((p for p in sorted(root.glob(f"Dataset{dataset_id:03d}_*")) if p.name != name), None)
            if other is not None:
                raise ctx.error("derived_dataset_ids", f"{other} already has id {dataset_id}, which the derived "
                                                       f"dataset {name} needs (nnU-Net ids are unique); {free}, or "
                                                       "remove that dataset")
    raw = nnunet_folder("nnUNet_raw", create=False)
    for name in derived.values():
        if (raw / name).exists() and not written_by_kt_nnunet(raw / name):
            raise ctx.error("derived_dataset_ids", f"{raw / name} exists but kt-nnunet did not write it, and the "
                                                   f"experiment would replace it; move it elsewhere, or {free}")


def check_output_folder(config: ExperimentConfig) -> None:
    """The experiment writes everything under ``output``: a file there or no write access fails at once, and
    without creating the folder (that waits until the config's inputs are checked too)."""
    from kt_nnunet.experiment.schema import Context

    output = Path(config.output).absolute()
    if output.exists() and not output.is_dir():
        raise Context(config.label).error("output", f"{output} is a file, not a folder; choose another output "
                                                    "folder or move the file")
    existing = output
    while not existing.exists():
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(f"{existing} is a file")
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise Context(config.label).error("output", f"cannot write to {output} ({exc.strerror or exc}); choose a "
                                                    "folder you can write to") from exc


def experiment_runner(config: ExperimentConfig | str | Path, *, force: bool = False, verbose: bool = False,
                      progress: Optional[Callable[[str], None]] = None, own_nnunet_folders: bool = False,
                      executor: Optional[str] = None, workers: Optional[int] = None) -> ExperimentRunner:
    """A runner for ``config`` with nnU-Net's folder variables set (see :func:`run_experiment`)."""
    if not isinstance(config, ExperimentConfig):
        config = load_config(config)
    config = with_executor(config, executor, workers)
    check_output_folder(config)
    console = ExperimentConsole(Path(config.output), verbose=verbose,
                                stream=None if progress is None else LineStream(progress))
    return ExperimentRunner(config, force=force, console=console,
                            folders=experiment_folders(Path(config.output), override=own_nnunet_folders))


def with_executor(config: ExperimentConfig, executor: Optional[str] = None,
                  workers: Optional[int] = None) -> ExperimentConfig:
    """``config`` with the command line's ``--executor`` / ``--workers``, which win over its ``executor:``."""
    import dataclasses

    from kt_nnunet.experiment.executors import executor_entry

    if executor is None and workers is None:
        return config
    if executor is not None:
        executor_entry(executor)  # an unknown name fails here, with the known ones
    if workers is not None and workers < 1:
        raise ExperimentConfigError(f"--workers {workers}: give 1 or more")
    settings = dataclasses.replace(config.executor, name=executor or config.executor.name,
                                   workers=workers or config.executor.workers)
    return dataclasses.replace(config, executor=settings)


def run_experiment(config: ExperimentConfig | str | Path, *, force: bool = False, verbose: bool = False,
                   progress: Optional[Callable[[str], None]] = None, own_nnunet_folders: bool = False,
                   executor: Optional[str] = None, workers: Optional[int] = None) -> Path:
    """Run (or resume) the experiment; returns the path of ``results.json``.

    nnU-Net's folder variables keep their values when set; unset ones (or all, with ``own_nnunet_folders``)
    point into the experiment's output folder while it runs, and are restored afterwards. nnU-Net's output goes to ``logs/<step>.log`` there (also to
    the console with ``verbose``); kt-nnunet's own progress lines go to standard output, or to ``progress``
    one line at a time (see ``kt_nnunet.experiment.console``). ``executor`` (``serial``, ``local``, ``slurm``)
    and ``workers`` override the config's ``executor:`` section (docs/cluster.md).
    """
    return experiment_runner(config, force=force, verbose=verbose, progress=progress,
                             own_nnunet_folders=own_nnunet_folders, executor=executor, workers=workers).run()
