"""The ``local`` executor: up to ``workers`` steps at once on this machine, in worker processes that live as long as
the orchestrator.

Each worker is one process of its own ``concurrent.futures.ProcessPoolExecutor`` (started with ``spawn``, so no
torch state is forked), pinned to its share of the cores (and a GPU) once, when it starts. It imports torch and
nnU-Net once and then runs step after step, as the serial runner does in its one process: a fresh process per step
cost 3.5 s on a 2-core CPU (4-5 s with CUDA), more than many steps take. Jobs travel through the pool's pipe, not
through files, so no pickle is left where someone else could replace it.

The workers end with the orchestrator (the kernel kills them when it dies, even by ``kill -9``), so a running step
is never left behind to be started a second time: the next run finds no job of an earlier one to wait for, and
submits the unfinished steps again, which resume from their files (a training from its latest checkpoint, a
labelling from its finished cases). Each worker's own output (imports, warnings) goes to
``<output>/jobs/local-worker<k>.log``; a step's output goes to its ``logs/<step>.log`` as everywhere.
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Optional

from kt_nnunet.experiment.executors.jobs import StepJob, confine
from kt_nnunet.experiment.executors.submitit_executors import JobOutcome, jobs_folder

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def start_worker(cores: Optional[tuple], gpu: Optional[str], threads: Optional[int], log: str) -> None:
    """A worker's set-up: die with the orchestrator, write its own output to ``log``, take its cores and GPU."""
    prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)  # Linux only; elsewhere workers may outlive it
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the orchestrator died before the line above took effect
        os._exit(1)
    descriptor = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(descriptor, 1)
    os.dup2(descriptor, 2)
    os.close(descriptor)
    confine(cores, gpu, threads)


def run_job(job: StepJob):
    return job()


class PooledJob:
    """One step running in a worker; ``outcome()`` is None while it runs."""

    def __init__(self, executor: "LocalExecutor", step: str, kind: str, future: Future, slot: int):
        self.executor, self.step, self.kind, self.future, self.slot = executor, step, kind, future, slot
        self.job_id = f"{os.getpid()}-{slot}-{step}"

    @property
    def stderr(self) -> Path:
        return self.executor.worker_log(self.slot)

    def describe(self) -> dict:
        return {"executor": self.executor.name, "job_id": self.job_id, "kind": self.kind, "slot": self.slot,
                "orchestrator": os.getpid()}

    def label(self) -> str:
        return f"local worker {self.slot + 1}"

    def outcome(self) -> Optional[JobOutcome]:
        if not self.future.done():
            return None
        error = self.future.exception()
        if error is None:
            return JobOutcome(result=self.future.result())
        lines = [line for line in str(error).strip().splitlines() if line.strip()]
        return JobOutcome(error=f"{type(error).__name__}: {lines[-1].strip()}" if lines else type(error).__name__)


class LocalExecutor:
    """Up to ``workers`` steps at once on this machine, each worker pinned to its share of the cores (and a GPU)."""

    name = "local"
    jobs_outlive_the_orchestrator = False

    def __init__(self, runner):
        from kt_nnunet.devices import usable_cores

        self.config, self.settings = runner.config, runner.config.executor
        self.folder = jobs_folder(runner.output)
        cores = sorted(os.sched_getaffinity(0))
        gpus = self._gpus()
        self.workers = self.settings.workers or (len(gpus) if gpus else 2)
        share = self.config.threads or max(1, usable_cores() // self.workers)
        self.slots = [(tuple(cores[(i * share) % len(cores):(i * share) % len(cores) + share]),
                       gpus[i % len(gpus)] if gpus else None) for i in range(self.workers)]
        self.pools: dict[int, ProcessPoolExecutor] = {}
        self.running: list[PooledJob] = []

    def _gpus(self) -> list:
        if not self.config.device.startswith("cuda"):
            return []
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]

    def worker_log(self, slot: int) -> Path:
        return self.folder / f"local-worker{slot + 1}.log"

    def _free_slot(self) -> Optional[int]:
        taken = {h.slot for h in self.running}
        return next((i for i in range(self.workers) if i not in taken), None)

    def _pool(self, slot: int) -> ProcessPoolExecutor:
        pool = self.pools.get(slot)
        if pool is None or getattr(pool, "_broken", False):  # a worker killed mid-step breaks its pool
            cores, gpu = self.slots[slot]
            pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=start_worker,
                                       initargs=(cores, gpu, self.config.threads, str(self.worker_log(slot))))
            self.pools[slot] = pool
        return pool

    def can_submit(self, kind: str) -> bool:
        return self._free_slot() is not None

    def submit(self, job: StepJob, kind: str) -> PooledJob:
        from dataclasses import replace

        slot = self._free_slot()
        cores, gpu = self.slots[slot]
        future = self._pool(slot).submit(run_job, replace(job, cores=cores, gpu=gpu))
        handle = PooledJob(self, job.step, kind, future, slot)
        self.running.append(handle)
        return handle

    def reattach(self, record: dict) -> None:
        """Nothing to find again: an earlier orchestrator's workers ended with it."""
        return None

    def refresh(self) -> None:
        """Futures know when they are done; nothing to ask."""

    def release(self, handle: PooledJob) -> None:
        self.running.remove(handle)

    def close(self) -> None:
        """The orchestrator stops: its workers stop with it (a restart resubmits what they were running)."""
        for pool in self.pools.values():
            if self.running:  # interrupted: the steps they run stop now, and resume on the next run
                for process in list((getattr(pool, "_processes", None) or {}).values()):
                    process.kill()
            pool.shutdown(wait=not self.running, cancel_futures=True)
        self.pools.clear()
