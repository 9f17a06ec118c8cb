"""Executors: what runs an experiment's steps. ``serial`` runs them one after another in this process (the
default); ``local`` runs up to ``workers`` steps at once on this machine, each in its own process with its share
of the cores and its own GPU; ``slurm`` submits each step as a SLURM job with submitit. See docs/cluster.md.

An executor is found by name here, so one for another engine (Ray, Dask) can be added without touching the
runner: ``register_executor("ray", "my_package.ray_executor:RayExecutor", "...")``, with a class that implements
:class:`kt_nnunet.experiment.executors.base.Executor`. This module imports nothing heavy: configs are parsed
against :func:`executor_names` in every process.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Optional

from kt_nnunet.errors import KtNnunetError, closest


@dataclass(frozen=True)
class ExecutorEntry:
    name: str
    target: Optional[str]   # "module:Class" built with (config, runner); None: the runner's own serial loop
    description: str


_REGISTRY: dict[str, ExecutorEntry] = {}


def register_executor(name: str, target: Optional[str], description: str) -> None:
    """Make executor ``name`` available to configs and ``--executor``; a name is registered once."""
    if name in _REGISTRY and _REGISTRY[name].target != target:
        raise KtNnunetError(f"executor {name!r} is already registered ({_REGISTRY[name].target}); choose another "
                            "name")
    _REGISTRY[name] = ExecutorEntry(name, target, description)


def executor_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def executor_entry(name: str) -> ExecutorEntry:
    if name not in _REGISTRY:
        hint = closest(name, list(_REGISTRY))
        raise KtNnunetError(f"unknown executor {name!r}" + (f"; did you mean {hint!r}?" if hint else "") +
                            f" Known: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def create_executor(name: str, runner):
    """The executor ``name`` for ``runner``'s experiment, or None for the runner's own serial loop."""
    entry = executor_entry(name)
    if entry.target is None:
        return None
    module, _, attribute = entry.target.partition(":")
    return getattr(importlib.import_module(module), attribute)(runner)


register_executor("serial", None, "one step after another in this process (the default)")
register_executor("local", "kt_nnunet.experiment.executors.local_pool:LocalExecutor",
                  "up to `workers` steps at once on this machine, each with its share of the cores and its own GPU")
register_executor("slurm", "kt_nnunet.experiment.executors.submitit_executors:SlurmExecutor",
                  "every step a SLURM job, submitted with submitit (pip install 'kt-nnunet[slurm]')")
