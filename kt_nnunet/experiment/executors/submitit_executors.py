"""The ``slurm`` executor: submitit submits each step job, and keeps its pickled call, its stdout/stderr and its
pickled result in a folder of its own under ``<output>/jobs/``. (``local`` runs its steps in worker processes of
the orchestrator instead, ``local_pool.py``.)

A pickled call is code, so ``jobs/`` is created private to the user (mode 700), and every job starts through
``kt_nnunet.experiment.executors.job_guard``, which refuses a job folder that anyone else can write to before
submitit unpickles anything from it.

Whether a job has ended is read from its result file and from ``squeue`` (one call per poll for all
jobs; ``sacct`` needs an accounting database that small clusters do not run).
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from kt_nnunet.errors import KtNnunetError
from kt_nnunet.experiment.executors.jobs import StepJob, StepResult

JOBS_FOLDER = "jobs"
GUARD = "kt_nnunet.experiment.executors.job_guard"
SLURM_ALIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
               "RESIZING", "SUSPENDED", "STAGE_OUT", "SIGNALING", "STOPPED"}
MISSING_RESULT_POLLS = 3           # a job that left the queue may write its result a moment later (shared filesystems)


class ExecutorError(KtNnunetError):
    """An executor cannot run the experiment's steps as asked."""


@dataclass
class JobOutcome:
    result: Optional[StepResult] = None   # the job returned
    error: Optional[str] = None           # the job failed: its exception, or why it ended without a result


def jobs_folder(output: Path) -> Path:
    """``<output>/jobs``, private to the user (see the module docstring)."""
    folder = Path(output).absolute() / JOBS_FOLDER
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    return folder


def step_folder_name(step: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.@-]+", "_", step)


def read_outcome(result_pickle: Path) -> Optional[JobOutcome]:
    """A job's outcome from submitit's result file, or None while there is none."""
    if not result_pickle.is_file():
        return None
    from submitit.core.utils import pickle_load

    status, value = pickle_load(result_pickle)
    if status == "success":
        return JobOutcome(result=value)
    lines = [line for line in str(value).strip().splitlines() if line.strip()]
    return JobOutcome(error=lines[-1].strip() if lines else "the job failed")


class SubmittedJob:
    """One submitted step job; ``outcome()`` is None while it is queued or running."""

    def __init__(self, executor: "SubmititExecutor", step: str, kind: str, job_id: str, folder: Path,
                 slot: Optional[int] = None):
        self.executor, self.step, self.kind, self.job_id = executor, step, kind, str(job_id)
        self.folder, self.slot = Path(folder), slot
        self._missing = 0

    @property
    def result_pickle(self) -> Path:
        return self.folder / f"{self.job_id}_0_result.pkl"

    @property
    def stderr(self) -> Path:
        return self.folder / f"{self.job_id}_0_log.err"

    def describe(self) -> dict:
        return {"executor": self.executor.name, "job_id": self.job_id, "folder": str(self.folder), "kind": self.kind,
                "slot": self.slot}

    def label(self) -> str:
        return f"{self.executor.name} job {self.job_id}"

    def outcome(self) -> Optional[JobOutcome]:
        found = read_outcome(self.result_pickle)
        if found is not None:
            return found
        if self.executor.alive(self):
            self._missing = 0
            return None
        self._missing += 1
        if self._missing < MISSING_RESULT_POLLS:
            return None
        return JobOutcome(error=f"{self.label()} ended without a result ({self.executor.why_ended(self)}); its "
                                f"output is in {self.stderr}")


class SubmititExecutor:
    """A submitit engine's executor: job folders, submission, re-attaching to recorded jobs."""

    name = ""
    jobs_outlive_the_orchestrator = True

    def __init__(self, runner):
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise ExecutorError(f"--executor {self.name} submits its jobs with submitit: pip install "
                                "'kt-nnunet[slurm]'") from None
        self.runner = runner
        self.config = runner.config
        self.settings = runner.config.executor
        self.folder = jobs_folder(runner.output)
        self.running: list[SubmittedJob] = []

    def python_command(self) -> str:
        return f"{shlex.quote(sys.executable)} -m {GUARD}"

    def can_submit(self, kind: str) -> bool:
        raise NotImplementedError

    def prepare(self, job: StepJob, kind: str) -> tuple[StepJob, Optional[int]]:
        """The job as it will run (its cores and GPU), and the worker slot it takes."""
        return job, None

    def submitit_executor(self, folder: Path, kind: str):
        raise NotImplementedError

    def submit(self, job: StepJob, kind: str) -> SubmittedJob:
        job, slot = self.prepare(job, kind)
        folder = self.folder / step_folder_name(job.step)
        folder.mkdir(mode=0o700, exist_ok=True)
        submitted = self.submitit_executor(folder, kind).submit(job)
        handle = SubmittedJob(self, job.step, kind, submitted.job_id, folder, slot)
        self.running.append(handle)
        return handle

    def reattach(self, record: dict) -> Optional[SubmittedJob]:
        """The recorded job of an earlier orchestrator, if it still runs or has left a result; else None."""
        if record.get("executor") != self.name:
            return None
        handle = SubmittedJob(self, record.get("step", ""), record["kind"], record["job_id"], Path(record["folder"]),
                              record.get("slot"))
        self.running.append(handle)
        self.refresh()
        if read_outcome(handle.result_pickle) is None and not self.alive(handle):
            self.running.remove(handle)
            return None
        return handle

    def release(self, handle: SubmittedJob) -> None:
        self.running.remove(handle)

    def refresh(self) -> None:
        """Called once per poll before the jobs' outcomes are read."""

    def alive(self, handle: SubmittedJob) -> bool:
        raise NotImplementedError

    def why_ended(self, handle: SubmittedJob) -> str:
        return "it was killed"

    def close(self) -> None:
        """The orchestrator stops (a failure or Ctrl-C): jobs go on and are found again by the next run."""


class SlurmExecutor(SubmititExecutor):
    """Every step a SLURM job; resources per job kind from ``executor.slurm`` (``settings.py``)."""

    name = "slurm"

    def __init__(self, runner):
        super().__init__(runner)
        if not _command_works(["sinfo", "--version"]):
            raise ExecutorError("--executor slurm: SLURM's commands (sinfo, sbatch, squeue) are not on this "
                                "machine's PATH; run on a SLURM login node, or use --executor local")
        self.queue: dict[str, tuple[str, str]] = {}

    def can_submit(self, kind: str) -> bool:
        limit = self.config.executor.job_settings(kind, self.config.device).max_jobs
        same_kind = sum(1 for h in self.running if h.kind == kind)
        total = self.settings.workers
        return (limit is None or same_kind < limit) and (total is None or len(self.running) < total)

    def submitit_executor(self, folder: Path, kind: str):
        import submitit

        wanted = self.settings.job_settings(kind, self.config.device)
        executor = submitit.SlurmExecutor(folder=folder, python=self.python_command())
        extra = dict(wanted.sbatch)
        parameters = dict(job_name=f"kt-{self.config.name}-{kind}", time=wanted.time_min,
                          cpus_per_task=wanted.cpus, mem=f"{int(wanted.mem_gb * 1024)}MB",
                          signal_delay_s=wanted.signal_delay_s, stderr_to_stdout=False)
        if wanted.gpus:
            parameters["gpus_per_node"] = wanted.gpus
        for key in ("partition", "account", "qos"):
            if getattr(wanted, key):
                parameters[key] = getattr(wanted, key)
        if extra:
            parameters["additional_parameters"] = extra
        executor.update_parameters(**parameters)
        return executor

    def submit(self, job: StepJob, kind: str) -> SubmittedJob:
        handle = super().submit(job, kind)
        self.queue[handle.job_id] = ("PENDING", "")
        return handle

    def refresh(self) -> None:
        """One ``squeue`` for every job of this user that SLURM still knows (finished ones for ``MinJobAge``)."""
        if not self.running:
            return
        try:
            out = subprocess.run(["squeue", "-h", "-t", "all", "-u", _user(), "-o", "%i|%T|%r"],
                                 capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return  # the controller is busy: keep the last view and look again next poll
        if out.returncode != 0:
            return
        self.queue = {}
        for line in out.stdout.splitlines():
            job_id, _, rest = line.partition("|")
            state, _, reason = rest.partition("|")
            self.queue[job_id.strip()] = (state.strip(), reason.strip())

    def alive(self, handle: SubmittedJob) -> bool:
        state = self.queue.get(handle.job_id, ("", ""))[0]
        return state in SLURM_ALIVE

    def why_ended(self, handle: SubmittedJob) -> str:
        state, reason = self.queue.get(handle.job_id, ("", ""))
        if not state:
            return "SLURM no longer lists it"
        return f"SLURM state {state}" + (f", reason {reason}" if reason and reason != "None" else "")


def _user() -> str:
    import getpass

    return getpass.getuser()


def _command_works(command: list) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
