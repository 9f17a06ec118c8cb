"""A request to stop long work at its next safe point: SLURM's warning signal before a job's time limit.

SLURM sends ``SIGUSR1`` a while before it ends a job (submitit asks for it with ``--signal=USR1@<delay>``). A
training that stops there would lose every epoch since nnU-Net's last periodic checkpoint, and one killed while
saving would lose more. So the signal only sets a flag (:func:`stop_on_signals`); the budget trainer looks at it
after each epoch, saves ``checkpoint_latest.pth`` with that epoch counted and raises :class:`StopRequested`, and
the job that ran the step tells its dispatcher to submit the step again, which resumes from the checkpoint.
Torch-free, so any module may import it.
"""
from __future__ import annotations

import contextlib
import os
import signal
from typing import Iterator, Optional, Sequence

from kt_nnunet.errors import KtNnunetError

_requested: Optional[str] = None


class StopRequested(KtNnunetError):
    """Work stopped at a safe point because it was asked to (its progress is saved; running it again resumes)."""


def request_stop(reason: str) -> None:
    global _requested
    _requested = reason


def stop_requested() -> Optional[str]:
    """Why a stop was requested, or None."""
    return _requested


def clear() -> None:
    global _requested
    _requested = None


@contextlib.contextmanager
def stop_on_signals(signals: Sequence[int] = (signal.SIGUSR1,)) -> Iterator[None]:
    """While the body runs, the given signals request a stop instead of doing what they did before (submitit's own
    handler requeues without a checkpoint); the previous handlers come back afterwards.

    Processes forked meanwhile (nnU-Net's worker pools) inherit the handler; it does nothing there, so a warning
    sent to every process of a job stops the training, not a pool's workers in the middle of a task.

    Never install a Python handler for SIGTERM around work that forks pools: a SIGTERM that reaches a worker right
    after its fork is dropped before Python runs the handler (CPython clears pending signals in a new child), so
    ``Pool.terminate`` waits forever for a worker that never died."""
    owner = os.getpid()

    def handler(signum, frame):
        if os.getpid() == owner:
            request_stop(f"signal {signal.Signals(signum).name}")

    previous = {number: signal.signal(number, handler) for number in signals}
    clear()
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
        clear()
