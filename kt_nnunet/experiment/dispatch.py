"""Runs an experiment's steps as the jobs of a ``local`` or ``slurm`` executor (``kt_nnunet.experiment.executors``).

A step is submitted as soon as every step it depends on has finished, earliest planned first, as far as the
executor has room (``workers``, ``max_jobs``); the executor's engine (SLURM, or this machine's cores) decides
where and when it runs. Steps that take seconds (checking a given teacher, the fine-tune subset, the report) run
here. A failed step stops only the steps that depend on it; the others go on, and the run ends with one error
naming the failures. Running the same command again resumes: finished steps are judged from ``state.json`` and
the files, as the serial runner does, and jobs still queued or running are found again through
``jobs/jobs.json`` instead of being submitted twice.

A training stopped by SLURM's time-limit warning saves its checkpoint and returns (``kt_nnunet.interruption``);
its step is submitted again and resumes from that checkpoint.
"""
from __future__ import annotations

import datetime
import json
import time
from pathlib import Path

from kt_nnunet.errors import KtNnunetError
from kt_nnunet.experiment.console import clock, log_name
from kt_nnunet.experiment.executors.jobs import StepJob, job_kind
from kt_nnunet.experiment.steps import Step

BOOK_FILE = "jobs.json"
MAX_RESUBMISSIONS = 20   # a time limit shorter than one epoch would otherwise resubmit forever


class StepsFailed(KtNnunetError):
    """Steps of an experiment failed; the console showed each with its job, log and error."""


class JobBook:
    """``<output>/jobs/jobs.json``: each step's job now queued or running, and every submission so far."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / BOOK_FILE
        data = json.loads(self.path.read_text()) if self.path.is_file() else {}
        self.active: dict[str, dict] = data.get("active", {})
        self.submissions: list[dict] = data.get("submissions", [])

    def submitted(self, step: str, record: dict, attempt: int) -> None:
        self.active[step] = {**record, "step": step, "attempt": attempt}
        self.submissions.append({**record, "step": step, "attempt": attempt,
                                 "submitted": datetime.datetime.now().isoformat(timespec="seconds")})
        self.save()

    def ended(self, step: str) -> None:
        self.active.pop(step, None)
        self.save()

    def save(self) -> None:
        from kt_nnunet.atomic_files import atomic_write_text

        atomic_write_text(self.path, json.dumps({"active": self.active, "submissions": self.submissions}, indent=1))


class Dispatcher:
    def __init__(self, runner, executor):
        self.runner, self.executor = runner, executor
        self.console = runner.console
        self.steps: list[Step] = runner.steps
        self.index = {step.name: i for i, step in enumerate(self.steps, start=1)}
        self.book = JobBook(executor.folder)
        self.done: set[str] = set()
        self.failed: dict[str, str] = {}
        self.blocked: set[str] = set()
        self.running: dict[str, object] = {}
        self.log_offsets: dict[str, int] = {}
        self.started = time.perf_counter()

    def line(self, step: str, text: str) -> None:
        counts = (f"{len(self.done)} done, {len(self.running)} running, "
                  f"{len(self.steps) - len(self.done) - len(self.failed) - len(self.blocked)} to go")
        self.console.say(f"[{self.index[step]}/{len(self.steps)}] {step}: {text} · {counts} · elapsed "
                         f"{clock(time.perf_counter() - self.started)}")

    def run(self) -> None:
        self.console.interactive = False  # steps finish out of order: one line each, no progress bar
        self.console.start([(s.name, s.kind, s.kind) for s in self.steps])
        self.done = {step.name for step in self.steps if self.runner.reusable(step)}
        self.console.say(f"{self.runner.config.name}: {len(self.steps)} steps, {len(self.done)} already done; "
                         f"the {self.executor.name} executor runs the rest (jobs in {self.executor.folder})")
        self._reattach()
        try:
            while self._advance():
                pass
        except KeyboardInterrupt:
            if self.running and self.executor.jobs_outlive_the_orchestrator:
                self.console.say(f"stopped; {len(self.running)} job(s) go on running. Run the same command again "
                                 "to wait for them (they are found again, not submitted twice).")
            elif self.running:
                self.console.say(f"stopped, and {len(self.running)} running step(s) with it. Run the same command "
                                 "again to resume them (finished work is kept).")
            raise
        finally:
            self.executor.close()
            self.runner.state["total_seconds_last_run"] = round(time.perf_counter() - self.started, 2)
            self.runner._save_state()
        if self.failed:
            names = ", ".join(self.failed)
            raise StepsFailed(f"{len(self.failed)} step(s) failed ({names}); {len(self.blocked)} step(s) that "
                              "depend on them did not run. Each failure is shown above with its log; fix the cause "
                              "and run the same command again (finished steps are kept)")

    def _reattach(self) -> None:
        for name, record in list(self.book.active.items()):
            if name in self.done or name not in self.index:
                self.book.ended(name)
                continue
            handle = self.executor.reattach(record)
            if handle is None:
                self.book.ended(name)
                continue
            self.running[name] = handle
            self.log_offsets[name] = 0
            self.line(name, f"found its {handle.label()} from an earlier run")

    def _advance(self) -> bool:
        """One round: collect ended jobs, start what is ready; False when nothing is left to wait for."""
        progressed = self._collect()
        for step in self.steps:
            name = step.name
            if name in self.done or name in self.failed or name in self.blocked or name in self.running:
                continue
            if any(d in self.failed or d in self.blocked for d in step.depends_on):
                self.blocked.add(name)
                continue
            if not all(d in self.done for d in step.depends_on):
                continue
            kind = job_kind(step)
            if kind is None:
                self._run_here(step)
                progressed = True
            elif self.executor.can_submit(kind):
                self._submit(step, kind)
                progressed = True
        if not self.running and not progressed:
            return False
        if not progressed:
            time.sleep(self.runner.config.executor.poll_seconds)
        return True

    def _run_here(self, step: Step) -> None:
        try:
            self.runner._run_step(self.index[step.name], step)
        except Exception as exc:  # the console showed it; the steps that do not depend on it go on
            self.failed[step.name] = str(exc)
            return
        self.done.add(step.name)

    def _submit(self, step: Step, kind: str) -> None:
        finished = {name: self.runner.state["steps"][name] for name in self.done
                    if name in self.runner.state["steps"]}
        job = StepJob(self.runner.config, step.name, dict(self.runner.folders), self.runner.force, finished)
        log = self.console.logs / log_name(step.name)
        self.log_offsets[step.name] = log.stat().st_size if log.is_file() else 0
        attempt = sum(1 for s in self.book.submissions if s["step"] == step.name) + 1
        try:
            handle = self.executor.submit(job, kind)
        except Exception as exc:  # sbatch refused it (a partition or option the cluster does not have)
            message = " ".join(str(exc).split())[:500] or type(exc).__name__
            self.failed[step.name] = message
            self.console.say(f"[{self.index[step.name]}/{len(self.steps)}] {step.name}: could not be submitted "
                             f"({self.executor.name}): {type(exc).__name__}: {message}")
            return
        self.running[step.name] = handle
        self.book.submitted(step.name, handle.describe(), attempt)
        self.line(step.name, f"submitted as {handle.label()}")

    def _collect(self) -> bool:
        if not self.running:
            return False
        self.executor.refresh()
        progressed = False
        for name, handle in list(self.running.items()):
            outcome = handle.outcome()
            if outcome is None:
                continue
            progressed = True
            self.executor.release(handle)
            del self.running[name]
            self.book.ended(name)
            self._settle(self.runner.step_named(name), handle, outcome)
        return progressed

    def _settle(self, step: Step, handle, outcome) -> None:
        name, result = step.name, outcome.result
        if result is not None and result.interrupted:
            attempts = sum(1 for s in self.book.submissions if s["step"] == name)
            if attempts <= MAX_RESUBMISSIONS:
                self.line(name, f"{handle.label()} stopped at a safe point (a time-limit or preemption warning); "
                                "submitting it again, to resume from its checkpoint")
                return
            outcome.error = (f"stopped by {attempts} time-limit warnings without finishing; give its jobs more "
                             "time (executor.slurm.*.time_min)")
            result = None
        if result is None:
            self.failed[name] = outcome.error or "failed"
            log, offset = self.console.logs / log_name(name), self.log_offsets.get(name, 0)
            if not log.is_file() or log.stat().st_size <= offset:  # it never started the step: show the job's own
                log, offset = handle.stderr, 0
            self.console.say_failure(f"[{self.index[name]}/{len(self.steps)}] {name}: FAILED on {handle.label()}: "
                                     f"{outcome.error}", log, offset, extra=[f"job output: {handle.stderr}"])
            return
        self.runner.state["steps"][name] = result.record
        self.runner._save_state()
        self.runner.restore(step)
        self.done.add(name)
        where = f"{handle.label()} on {result.host}" if result.host else handle.label()
        self.line(name, "already done" if result.reused else f"done in {result.seconds:.1f} s ({where})")

