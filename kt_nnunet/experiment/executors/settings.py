"""The ``executor:`` section of an experiment config: which executor runs the steps, and what a SLURM job gets.

    executor:
      name: slurm            # serial (default) | local | slurm (``--executor`` on the command line wins)
      workers: 8             # local: steps at once on this machine; slurm: jobs queued or running at once
      slurm:                 # what every job gets ...
        partition: gpu
        account: my_lab
        training:   {gpus: 1, cpus: 8, mem_gb: 32, time_min: 1440, max_jobs: 8}   # ... unless its kind says otherwise
        evaluation: {gpus: 0, cpus: 4}

Steps come in three job kinds (``JOB_KINDS``): trainings, labellings (teachers labelling the transferal set) and
evaluations (test-set scoring and the inference timing). Checking a given teacher, drawing a fine-tune subset and
writing the report take seconds and run in the orchestrating process.

Defaults fit a CPU-only node of any cluster, so ``--executor slurm`` works on a fresh cluster with no settings:
the cluster's default partition, 2 CPUs, 8 GB, 24 h for a training and 4 h for the rest, and one GPU for
trainings and labellings when the experiment's ``device`` is ``cuda`` (evaluations run on the CPU).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Optional

from kt_nnunet.experiment.schema import Context, Section, describe

JOB_KINDS = ("training", "labelling", "evaluation")
JOB_KEYS = ("partition", "gpus", "cpus", "mem_gb", "time_min", "account", "qos", "sbatch", "max_jobs",
            "signal_delay_s")
DEFAULT_TIME_MIN = {"training": 24 * 60, "labelling": 4 * 60, "evaluation": 4 * 60}
# SLURM warns a job this long before its time limit (SIGUSR1); the training in it then finishes its epoch and
# saves a checkpoint, so this must exceed one epoch plus a checkpoint write.
DEFAULT_SIGNAL_DELAY_S = 300


@dataclass(frozen=True)
class SlurmJobSettings:
    """What one SLURM job of a kind asks for; None: the default (see the module docstring)."""

    partition: Optional[str] = None
    gpus: Optional[int] = None
    cpus: Optional[int] = None
    mem_gb: Optional[float] = None
    time_min: Optional[int] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    sbatch: dict = field(default_factory=dict)   # further sbatch options, e.g. {constraint: a100}
    max_jobs: Optional[int] = None               # jobs of this kind queued or running at once
    signal_delay_s: Optional[int] = None

    def over(self, base: "SlurmJobSettings") -> "SlurmJobSettings":
        """These settings, with ``base``'s where these have none."""
        merged = {f.name: getattr(self, f.name) if getattr(self, f.name) not in (None, {}) else getattr(base, f.name)
                  for f in fields(self)}
        merged["sbatch"] = {**base.sbatch, **self.sbatch}
        return SlurmJobSettings(**merged)

    def resolved(self, kind: str, device: str) -> "SlurmJobSettings":
        """Every default filled in, for a job of ``kind`` in an experiment on ``device``."""
        return replace(self, gpus=self.gpus if self.gpus is not None else
                       (1 if device.startswith("cuda") and kind != "evaluation" else 0),
                       cpus=self.cpus or 2, mem_gb=self.mem_gb or 8.0,
                       time_min=self.time_min or DEFAULT_TIME_MIN[kind],
                       signal_delay_s=self.signal_delay_s or DEFAULT_SIGNAL_DELAY_S)


@dataclass(frozen=True)
class ExecutorConfig:
    name: str = "serial"
    workers: Optional[int] = None                 # None: local, one per GPU (or 2 on a CPU); slurm, unlimited
    poll_seconds: float = 5.0                     # how often the orchestrator looks at its jobs
    slurm: tuple = ()                             # ((kind, SlurmJobSettings), ...) as written, before defaults

    def job_settings(self, kind: str, device: str) -> SlurmJobSettings:
        own = dict(self.slurm)
        return own.get(kind, SlurmJobSettings()).over(own.get("", SlurmJobSettings())).resolved(kind, device)


def _job_settings(section: Section) -> SlurmJobSettings:
    sbatch = section.mapping("sbatch", {})
    for key, value in sbatch.items():
        if not isinstance(value, (str, int, float, bool)):
            raise section.error("sbatch", f"option {key!r}: expected a string or number, got {describe(value)}")
    return SlurmJobSettings(
        partition=section.string("partition", None), gpus=section.integer("gpus", None, minimum=0),
        cpus=section.integer("cpus", None, minimum=1), mem_gb=section.number("mem_gb", None, minimum=0.1),
        time_min=section.integer("time_min", None, minimum=1), account=section.string("account", None),
        qos=section.string("qos", None), sbatch={str(k): v for k, v in sbatch.items()},
        max_jobs=section.integer("max_jobs", None, minimum=1),
        signal_delay_s=section.integer("signal_delay_s", None, minimum=10))


def parse_executor(top: Section, ctx: Context, names: tuple) -> ExecutorConfig:
    """The ``executor`` section; ``names``: the registered executors."""
    if not top.has("executor"):
        return ExecutorConfig()
    raw: Any = top.raw("executor")
    if isinstance(raw, str):  # `executor: local` is short for `executor: {name: local}`
        raw = {"name": raw}
    sub = Section(raw, "executor", ctx, ("name", "workers", "poll_seconds", "slurm"))
    slurm: list = []
    if sub.has("slurm"):
        section = Section(sub.mapping("slurm"), "executor.slurm", ctx, JOB_KEYS + JOB_KINDS)
        slurm.append(("", _job_settings(section)))
        for kind in JOB_KINDS:
            if section.has(kind):
                slurm.append((kind, _job_settings(Section(section.mapping(kind), f"executor.slurm.{kind}", ctx,
                                                          JOB_KEYS))))
    return ExecutorConfig(name=sub.choice("name", names, "serial"), workers=sub.integer("workers", None, minimum=1),
                          poll_seconds=sub.number("poll_seconds", 5.0, minimum=0.1), slurm=tuple(slurm))
