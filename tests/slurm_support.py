"""For tests that need a real SLURM cluster: whether one answers here, a marker that skips (saying why)
without one, and a wait for its queue to empty. CI starts a one-node cluster with
``scripts/local-slurm.sh start`` (as root) before the tests; see docs/installation.md."""
from __future__ import annotations

import functools
import shutil
import subprocess
import time

import pytest

# States in which a node runs jobs now or as soon as it is free again ("idle*" etc. mean not responding).
USABLE_STATES = {"idle", "mixed", "allocated", "completing"}


@functools.lru_cache(maxsize=None)
def slurm_skip_reason() -> str | None:
    """None when SLURM's commands are here and a node is up to run jobs, else why not, in one line."""
    for command in ("sbatch", "sinfo", "scontrol"):
        if shutil.which(command) is None:
            return f"no {command} on PATH"
    # `scontrol ping` fails at once where no controller runs; sinfo would retry for about 10 s.
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=5)
    except subprocess.TimeoutExpired:
        return "the cluster does not answer: scontrol ping took more than 5 s"
    if ping.returncode != 0:
        # Its last error line says most (the fatal one), or else the first line it prints ("... is DOWN").
        errors, printed = ping.stderr.strip().splitlines(), ping.stdout.strip().splitlines()
        message = errors[-1] if errors else printed[0] if printed else f"scontrol ping exited with {ping.returncode}"
        return f"the cluster does not answer: {message}"
    try:
        answer = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=5)
    except subprocess.TimeoutExpired:
        return "the cluster does not answer: sinfo took more than 5 s"
    if answer.returncode != 0:
        message = " ".join(answer.stderr.split()) or f"sinfo exited with {answer.returncode}"
        return f"the cluster does not answer: {message}"
    states = answer.stdout.split()
    if not USABLE_STATES.intersection(states):
        return f"no node is up: {', '.join(states) or 'no nodes'}"
    return None


def _marker_reason() -> str:
    return (f"no SLURM here: {slurm_skip_reason()} "
            "(CI starts one with scripts/local-slurm.sh start, as root)")


requires_slurm = pytest.mark.skipif(slurm_skip_reason() is not None, reason=_marker_reason())


def wait_for_queue_empty(timeout: float) -> bool:
    """Wait until ``squeue`` lists no pending, running or completing job; False when ``timeout`` s pass first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            queue = subprocess.run(["squeue", "-h"], capture_output=True, text=True, timeout=10)
            if queue.returncode == 0 and not queue.stdout.strip():
                return True
        except (OSError, subprocess.TimeoutExpired):
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)
