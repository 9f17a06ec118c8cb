"""What an experiment shows on the console: its own progress, while nnU-Net's output goes to per-step logs.

nnU-Net prints whole plans dictionaries, every epoch, its citation banner and warnings; an experiment
runs dozens of such steps. Each step's output (Python's and the C level's: file descriptors 1 and 2,
which also catches subprocesses and native libraries) goes to ``logs/<step>.log`` in the experiment
folder instead, and the console shows:

* on a terminal, a live display (rich): step k of N with elapsed time and an estimate of what is left,
  and inside the step the epoch with its last train loss and pseudo Dice, or the cases done per second;
* elsewhere (CI, a pipe, a file), one plain line per finished step, nothing else;
* with ``verbose``, nnU-Net's output streams as well (it is still written to the logs) and the step
  lines are plain;
* on a failure, the failing step, its error, its log's path and the last lines of that log.

The estimate of what is left uses, per step, the seconds it took when an earlier run did it, else the
mean of this run's finished steps of its kind, else of its family (all trainings are one family); steps
of a kind and family not timed yet are counted and named as such, not guessed.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence, TextIO

from kt_nnunet import progress
from kt_nnunet.errors import mark_reported

LOGS_FOLDER = "logs"
FAILURE_TAIL_LINES = 20


def log_name(step_name: str) -> str:
    """A step's log file name: its name with anything but letters, digits, ``@ . _ -`` made ``_``."""
    return re.sub(r"[^A-Za-z0-9@._-]+", "_", step_name) + ".log"


def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _console_stream() -> TextIO:
    """Where kt-nnunet's own lines go while file descriptor 1 points at a log.

    When ``sys.stdout`` is the process's descriptor 1, a duplicate of it (taken before redirecting); when it
    is something else (click's test runner, pytest's capture), that object itself.
    """
    try:
        if sys.stdout.fileno() == 1:
            return os.fdopen(os.dup(1), "w", buffering=1, encoding=sys.stdout.encoding or "utf-8",
                             errors="replace")
    except (AttributeError, OSError, io.UnsupportedOperation, ValueError):
        pass
    return sys.stdout


@contextlib.contextmanager
def output_to_log(log_path: Path, echo: Optional[TextIO] = None) -> Iterator[None]:
    """Send descriptors 1 and 2, ``sys.stdout`` and ``sys.stderr`` to ``log_path`` (appending); with ``echo``,
    copy everything to that stream as well."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with open(log_path, "ab", buffering=0) as log:
        if echo is None:
            sink, reader = log.fileno(), None
        else:  # a pipe whose reader writes to the log and to the console
            read_end, sink = os.pipe()

            def copy():
                with os.fdopen(read_end, "rb", buffering=0) as pipe:
                    for chunk in iter(lambda: pipe.read(65536), b""):
                        log.write(chunk)
                        with contextlib.suppress(Exception):
                            echo.write(chunk.decode(errors="replace"))
                            echo.flush()

            reader = threading.Thread(target=copy, name="kt-nnunet-log-tee", daemon=True)
            reader.start()
        saved = [os.dup(1), os.dup(2)]
        text = open(sink, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
        try:
            os.dup2(sink, 1)
            os.dup2(sink, 2)
            with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
                yield
        finally:
            text.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            text.close()
            if reader is not None:
                os.close(sink)
                reader.join(timeout=10)


class LineStream(io.TextIOBase):
    """A text stream that hands each complete line to ``callback`` (for callers that collect the lines)."""

    def __init__(self, callback):
        super().__init__()
        self.callback = callback
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self.callback(line)
        return len(text)


@dataclass
class _StepProgress:
    """What the events of the running step said last."""

    epoch: Optional[dict] = None
    cases: Optional[dict] = None
    cases_started: Optional[float] = None

    def listen(self, event: str, fields: dict) -> None:
        if event == progress.EPOCH:
            self.epoch = fields
        elif event == progress.CASE:
            if self.cases_started is None or fields.get("done") == 0:
                self.cases_started = time.perf_counter()
            self.cases = fields

    def cases_per_second(self) -> Optional[float]:
        if not self.cases or self.cases_started is None or not self.cases.get("done"):
            return None
        elapsed = time.perf_counter() - self.cases_started
        return self.cases["done"] / elapsed if elapsed > 0 else None

    def summary(self) -> str:
        """The step's last event, e.g. ``epoch 20/20, loss -0.812, pseudo Dice 0.871``."""
        if self.epoch:
            e = self.epoch
            return (f"epoch {e['epoch']}/{e['epochs']}, loss {e['train_loss']:.3f}, "
                    f"pseudo Dice {e['pseudo_dice']:.3f}")
        if self.cases and self.cases.get("total"):
            rate = self.cases_per_second()
            return f"{self.cases['done']}/{self.cases['total']} cases" + (f", {rate:.2f} cases/s" if rate else "")
        return ""


@dataclass
class _Estimates:
    """Seconds expected for the steps not yet run (see the module docstring)."""

    previous: dict            # step name -> seconds expected from an earlier run (0 for a finished step)
    kinds: dict               # step name -> (kind, family), e.g. ("TrainStudent", "training")
    done: dict = field(default_factory=dict)  # step name -> seconds in this run (steps that did work)
    worked_before: dict = field(default_factory=dict)  # step name -> seconds its work took in an earlier run

    def left(self, remaining: Sequence[str]) -> tuple[float, int]:
        """(seconds expected for ``remaining``, how many of them nothing is known about yet)."""
        timed: dict[str, list[float]] = {}
        for name, seconds in {**self.worked_before, **self.done}.items():
            for group in self.kinds.get(name, ()):
                timed.setdefault(group, []).append(seconds)
        total, untimed = 0.0, 0
        for name in remaining:
            known = [timed[g] for g in self.kinds.get(name, ()) if timed.get(g)]
            if name in self.previous:
                total += self.previous[name]
            elif known:
                total += sum(known[0]) / len(known[0])
            else:
                untimed += 1
        return total, untimed


class ExperimentConsole:
    """The console of one experiment run; see the module docstring.

    ``interactive`` defaults to whether the console stream is a terminal. Use :meth:`start`, then
    :meth:`step` around each step, then :meth:`close`; :meth:`say` prints a line of kt-nnunet's own.
    """

    def __init__(self, folder: Path, *, verbose: bool = False, interactive: Optional[bool] = None,
                 stream: Optional[TextIO] = None):
        self.logs = Path(folder) / LOGS_FOLDER
        self.verbose = verbose
        self.stream = stream if stream is not None else _console_stream()
        if interactive is None:
            interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interactive = interactive and not verbose
        self.names: list[str] = []
        self.estimates = _Estimates({}, {})
        self.started = time.perf_counter()
        self._live = None

    # -- plain output ------------------------------------------------------------------------------
    def say(self, line: str = "") -> None:
        if self._live is not None:
            self._live.console.print(line, markup=False, highlight=False, emoji=False, soft_wrap=True)
        else:
            self.stream.write(line + "\n")
            self.stream.flush()

    # -- the run -----------------------------------------------------------------------------------
    def start(self, steps: Sequence[tuple[str, str, str]], previous_seconds: Optional[dict] = None,
              worked_before: Optional[dict] = None) -> None:
        """``steps``: (name, kind, family) in order, where steps of one family (e.g. all trainings) take
        comparable time; ``previous_seconds``: step name -> seconds it is expected to take, from an earlier
        run; ``worked_before``: step name -> seconds its work took in an earlier run (so a resumed run
        estimates its other steps of that kind)."""
        self.names = [name for name, *_ in steps]
        self.estimates = _Estimates(dict(previous_seconds or {}), {name: tuple(groups) for name, *groups in steps},
                                    worked_before=dict(worked_before or {}))
        self.started = time.perf_counter()
        if self.interactive:
            self._start_live()

    def _start_live(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        console = Console(file=self.stream, force_terminal=True, emoji=False, highlight=False)
        self._live = Progress(TextColumn("{task.description}", markup=False), BarColumn(bar_width=24),
                              MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[note]}", markup=False), console=console,
                              transient=False, refresh_per_second=4)
        self._overall = self._live.add_task("steps", total=len(self.names), note="")
        self._inner = self._live.add_task("", total=None, visible=False, note="")
        self._live.start()

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _left_text(self, index: int) -> str:
        remaining = self.names[index:]
        seconds, untimed = self.estimates.left(remaining)
        if untimed == len(remaining):
            return ""
        to_work = [name for name in remaining if self.estimates.previous.get(name) != 0.0]  # not finished before
        if untimed and untimed == len(to_work):  # only reused steps are timed: "about 0:00 left" would mislead
            return f"{untimed} step(s) not timed yet"
        return f"about {clock(seconds)} left" + (f" + {untimed} step(s) not timed yet" if untimed else "")

    @contextlib.contextmanager
    def capture(self, name: str) -> Iterator[Path]:
        """Output of work outside the steps (e.g. building datasets) into ``logs/<name>.log``."""
        log = self.logs / log_name(name)
        with output_to_log(log, echo=self.stream if self.verbose else None):
            yield log

    @contextlib.contextmanager
    def step(self, index: int, name: str) -> Iterator["StepOutcome"]:
        """Run the body as step ``index`` (1-based) with its output in its log; set ``outcome.reused``."""
        total = len(self.names)
        outcome = StepOutcome(self.logs / log_name(name))
        outcome.log_offset = outcome.log.stat().st_size if outcome.log.is_file() else 0
        watched = _StepProgress()
        if self._live is not None:
            self._live.update(self._overall, description=f"[{index}/{total}] {name}", completed=index - 1,
                              note=self._left_text(index - 1))
            self._live.update(self._inner, visible=False, total=None, completed=0, description="", note="")

        def listen(event, fields):
            watched.listen(event, fields)
            if self._live is not None:
                self._show_inner(watched)

        started = time.perf_counter()
        try:
            with output_to_log(outcome.log, echo=self.stream if self.verbose else None):
                print(f"===== kt-nnunet step {name} ({time.strftime('%Y-%m-%d %H:%M:%S')}) =====", flush=True)
                try:
                    with progress.listening(listen):
                        progress.announce(progress.STEP, index=index, total=total, name=name)
                        yield outcome
                except BaseException:
                    traceback.print_exc()
                    raise
        except BaseException as exc:
            outcome.seconds = time.perf_counter() - started
            self._report_failure(index, name, outcome, exc)
            raise
        outcome.seconds = time.perf_counter() - started
        if not outcome.reused:
            self.estimates.done[name] = outcome.seconds
        self.estimates.previous.pop(name, None)
        detail = watched.summary()
        line = (f"[{index}/{total}] {name}: {'already done' if outcome.reused else 'done'} in "
                f"{outcome.seconds:.1f} s" + (f" ({detail})" if detail and not outcome.reused else "")
                + f" · elapsed {clock(time.perf_counter() - self.started)}")
        left = self._left_text(index)
        if index < total and left:
            line += f" · {left}"
        if self._live is not None:
            self._live.update(self._overall, completed=index, note=left)
            self._live.update(self._inner, visible=False)
        self.say(line)

    def _show_inner(self, watched: _StepProgress) -> None:
        if watched.epoch:
            e = watched.epoch
            self._live.update(self._inner, visible=True, total=e["epochs"], completed=e["epoch"],
                              description="  epoch",
                              note=f"loss {e['train_loss']:.3f} · pseudo Dice {e['pseudo_dice']:.3f}")
        elif watched.cases and watched.cases.get("total"):
            rate = watched.cases_per_second()
            self._live.update(self._inner, visible=True, total=watched.cases["total"],
                              completed=watched.cases["done"], description="  cases",
                              note=f"{rate:.2f} cases/s" if rate else "")

    def _report_failure(self, index: int, name: str, outcome: "StepOutcome", exc: BaseException) -> None:
        self.close()
        message = str(exc).strip() or type(exc).__name__
        self.say_failure(f"[{index}/{len(self.names)}] {name}: FAILED after {outcome.seconds:.1f} s: "
                         f"{type(exc).__name__}: {message}", outcome.log, outcome.log_offset)
        mark_reported(exc)

    def say_failure(self, headline: str, log: Path, log_offset: int = 0, extra: Sequence[str] = ()) -> None:
        """A failed step: ``headline``, where its log is, and (unless the log is echoed) the log's tail from
        ``log_offset`` on, where this run's part of the appended log starts."""
        lines = [headline, f"log: {log}", *extra]
        if not self.verbose:
            tail = []
            if log.is_file():
                with open(log, "rb") as handle:
                    handle.seek(log_offset)
                    tail = handle.read().decode(errors="replace").splitlines()[-FAILURE_TAIL_LINES:]
            if tail:
                lines.append(f"last {len(tail)} lines of the log:")
                lines += [f"  | {line}" for line in tail]
        for line in lines:
            self.say(line)


@dataclass
class StepOutcome:
    log: Path
    reused: bool = False
    seconds: float = 0.0
    log_offset: int = 0  # where this run's part of the (appended) log starts
