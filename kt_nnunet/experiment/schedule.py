"""How long a finished experiment would take with more workers: a schedule simulation over its step graph.

A step is ``(name, seconds, depends_on)``, in plan order (``steps.plan_steps``). :func:`simulate` replays
the recorded seconds with list scheduling in plan order: whenever a worker is free it starts the
earliest-planned step whose dependencies have all finished. That is what the dispatcher does (a step is
submitted as soon as its dependencies finish, earliest planned first), so the simulated wall time is the
one a run with that many workers would see, not a lower bound such as ``serial / workers``. With unlimited
workers every step starts when its last dependency finishes, so the wall time is the critical (longest)
path. Queue wait and per-job start-up (a scheduler's pending time, loading nnU-Net and the data) are not
modelled: each step takes exactly its recorded seconds.
"""
from __future__ import annotations

import heapq
import math
from typing import Optional, Sequence

DEFAULT_WORKER_COUNTS = (4, 8, 16)
StepTime = tuple[str, Optional[float], Sequence[str]]  # (name, seconds or None when unknown, depends_on)


def _checked(steps: Sequence[StepTime]) -> tuple[list[str], list[float], list[list[int]], list[int]]:
    """Names, seconds (None as 0), dependency indices and a topological order; ValueError on a duplicate
    name, an unknown dependency, a negative or infinite time, or a cycle."""
    names = [str(step[0]) for step in steps]
    index = {}
    for position, name in enumerate(names):
        if name in index:
            raise ValueError(f"step {name!r} appears twice")
        index[name] = position
    seconds, depends = [], []
    for name, value, depends_on in steps:
        value = 0.0 if value is None else float(value)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"step {name!r}: seconds must be a finite number ≥ 0, got {value!r}")
        unknown = [d for d in depends_on if d not in index]
        if unknown:
            raise ValueError(f"step {name!r} depends on unknown step(s) {', '.join(map(repr, unknown))}")
        seconds.append(value)
        depends.append([index[d] for d in depends_on])
    return names, seconds, depends, _topological_order(names, depends)


def _topological_order(names: list[str], depends: list[list[int]]) -> list[int]:
    """Kahn's algorithm; a caller's order need not be topological, and a cycle is an error."""
    waiting = [len(set(d)) for d in depends]
    dependants: list[list[int]] = [[] for _ in names]
    for step, deps in enumerate(depends):
        for dep in set(deps):
            dependants[dep].append(step)
    ready = [step for step, count in enumerate(waiting) if count == 0]
    order = []
    while ready:
        step = ready.pop()
        order.append(step)
        for after in dependants[step]:
            waiting[after] -= 1
            if not waiting[after]:
                ready.append(after)
    if len(order) < len(names):
        stuck = [names[step] for step, count in enumerate(waiting) if count]
        raise ValueError(f"the steps depend on each other in a cycle (among {', '.join(map(repr, stuck))})")
    return order


def simulate(steps: Sequence[StepTime], workers: Optional[int]) -> float:
    """The makespan of list scheduling ``steps`` in plan order on ``workers`` workers (None: unlimited)."""
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1 or None (unlimited), got {workers!r}")
    names, seconds, depends, _ = _checked(steps)
    free = len(names) if workers is None else workers
    finished = [False] * len(names)
    started = [False] * len(names)
    running: list[tuple[float, int]] = []  # (finish time, step)
    now = 0.0
    while True:  # ends: each round finishes a step, and without a cycle some step is always ready or running
        for step in range(len(names)):  # earliest planned first
            if free and not started[step] and all(finished[d] for d in depends[step]):
                started[step] = True
                free -= 1
                heapq.heappush(running, (now + seconds[step], step))
        if not running:
            break
        # finish everything that ends at the same moment before choosing what starts next, so the plan order
        # decides among all the steps that moment releases
        now = running[0][0]
        while running and running[0][0] == now:
            finished[heapq.heappop(running)[1]] = True
            free += 1
    return now


def critical_path(steps: Sequence[StepTime]) -> tuple[float, list[str]]:
    """The longest path through the step graph: its seconds and its step names, first to last.

    Ties go to the later-planned step, which is usually the dependant (a 0-second ``report`` after the
    evaluations), so the path names the step that really ends the experiment.
    """
    names, seconds, depends, order = _checked(steps)
    if not names:
        return 0.0, []
    finish: list[float] = [0.0] * len(names)
    before: list[Optional[int]] = [None] * len(names)
    for step in order:
        before[step] = max(depends[step], key=lambda d: (finish[d], d), default=None)
        finish[step] = (0.0 if before[step] is None else finish[before[step]]) + seconds[step]
    end = max(range(len(names)), key=lambda step: (finish[step], step))
    path = [end]
    while before[path[-1]] is not None:
        path.append(before[path[-1]])
    return finish[end], [names[step] for step in reversed(path)]


def schedule_summary(steps: Sequence[StepTime], worker_counts: Sequence[int] = DEFAULT_WORKER_COUNTS) -> dict:
    """JSON-ready: serial and unlimited-worker seconds, the critical path, the wall time per worker count
    (keys are strings: ``"1"``, ``"4"``, ...) and the steps without a recorded time (counted as 0 s)."""
    steps = [(name, seconds, tuple(depends_on)) for name, seconds, depends_on in steps]
    longest, path = critical_path(steps)
    counts = sorted({1, *worker_counts})
    return {"serial_seconds": round(sum(s or 0.0 for _, s, _ in steps), 3),
            "unlimited_seconds": round(longest, 3),
            "critical_path": path,
            "workers": {str(count): round(simulate(steps, count), 3) for count in counts},
            "untimed": [name for name, seconds, _ in steps if seconds is None],
            "note": "list scheduling in plan order over the recorded step seconds (a free worker starts the "
                    "earliest-planned step whose dependencies have finished); queue wait and per-job start-up "
                    "are not counted"}
