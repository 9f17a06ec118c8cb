"""One experiment step as a job: a small picklable object that runs the step in another process (a ``local``
worker or a SLURM node) from nothing but itself, the installed package and the shared filesystem.

A job carries the parsed config, the step's name, nnU-Net's folder variables, the state records of the steps it
may read from (model folders, dataset names, labelling summaries) and how many cores and which GPU it may use. It
returns the step's state record; only the orchestrator writes ``state.json``. A training asked to stop (SLURM's
warning signal, see ``kt_nnunet.interruption``) saves its checkpoint and returns ``interrupted``, and the
orchestrator submits the step again, which resumes it.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from kt_nnunet.experiment.steps import Evaluate, LabelTransferal, Step, TimeInference

# Work that takes seconds runs in the orchestrating process: a job would cost more in queueing than it saves.
IN_PROCESS_KINDS = ("UseTeacher", "MakeFinetuneSubset", "Report")
# Thread-pool sizes that torch, OpenMP, BLAS and nnU-Net read from the environment.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "nnUNet_def_n_proc")


def job_kind(step: Step) -> Optional[str]:
    """``training``, ``labelling`` or ``evaluation`` (see ``settings.JOB_KINDS``); None for in-process steps."""
    if step.kind in IN_PROCESS_KINDS:
        return None
    if isinstance(step, LabelTransferal):
        return "labelling"
    if isinstance(step, (Evaluate, TimeInference)):
        return "evaluation"
    return "training"


@dataclass(frozen=True)
class StepResult:
    step: str
    record: dict                  # the step's entry in state.json
    reused: bool = False          # its result existed already
    seconds: float = 0.0
    interrupted: bool = False     # stopped at a safe point; submitting it again resumes it
    host: str = ""


@dataclass(frozen=True)
class StepJob:
    config: object                # ExperimentConfig
    step: str
    folders: dict                 # nnU-Net's folder variables
    force: bool = False
    finished: dict = field(default_factory=dict)   # step name -> state record, for the steps it reads from
    cores: Optional[tuple] = None  # CPU cores to pin this job to (local workers); None: as the process has them
    gpu: Optional[str] = None      # CUDA_VISIBLE_DEVICES for this job (local workers on a machine with GPUs)

    def __call__(self) -> StepResult:
        confine(self.cores, self.gpu, self.config.threads)
        # submitit ignores SIGTERM in its jobs; nnU-Net's short-lived worker pools end their workers with it, and a
        # worker forked with a Python handler in place can miss it and hang the pool (see interruption.py).
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        from kt_nnunet.experiment.console import ExperimentConsole
        from kt_nnunet.experiment.runner import ExperimentRunner
        from kt_nnunet.interruption import StopRequested, stop_on_signals

        output = Path(self.config.output)
        console = ExperimentConsole(output, interactive=False, stream=sys.stdout)
        runner = ExperimentRunner(self.config, force=self.force, console=console, folders=self.folders,
                                  keep_state=False)
        runner.state["steps"].update(self.finished)
        step = runner.step_named(self.step)
        runner.restore_dependencies(step)
        started = time.perf_counter()
        try:
            with stop_on_signals():
                reused = runner.run_single(step)
        except StopRequested:
            return StepResult(self.step, runner.state["steps"].get(self.step, {}), False,
                              time.perf_counter() - started, interrupted=True, host=os.uname().nodename)
        record = runner.state["steps"][self.step]
        return StepResult(self.step, record, reused, record.get("seconds", 0.0), host=os.uname().nodename)


def confine(cores: Optional[tuple], gpu: Optional[str], threads: Optional[int] = None) -> int:
    """Pin this process to ``cores`` (and ``gpu``) and size every thread pool to ``threads`` (the experiment's
    ``threads``), else to the cores it may use.

    Two processes that each use every core of a small machine run many times slower than one (their OpenMP
    threads spin against each other), so a worker takes only its share. Call it before CUDA is first used."""
    from kt_nnunet.devices import THREADS_VARIABLE, usable_cores

    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    if cores:
        os.sched_setaffinity(0, set(cores))
    threads = threads or usable_cores()
    os.environ[THREADS_VARIABLE] = str(threads)
    for variable in THREAD_VARIABLES:
        os.environ[variable] = str(threads)
    import torch

    torch.set_num_threads(threads)
    return threads
