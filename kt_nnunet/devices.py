"""``--device`` checked up front: torch would otherwise fail deep inside prediction or training."""
from __future__ import annotations

import torch

from kt_nnunet.errors import KtNnunetError


class DeviceError(KtNnunetError):
    pass


def parse_device(device) -> torch.device:
    """``auto`` (CUDA if available, else CPU), ``cpu``, ``cuda[:N]`` or ``mps``, each only where torch has it."""
    if isinstance(device, torch.device):
        return device
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise DeviceError(f"--device {device!r} is not a device; use cpu, cuda, cuda:N or mps") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {device}: torch sees no CUDA GPU on this machine; use --device cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {device}: there are only {torch.cuda.device_count()} CUDA GPU(s) "
                              f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    elif parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceError(f"--device {device}: MPS is not available on this machine; use --device cpu")
    elif parsed.type != "cpu":
        raise DeviceError(f"--device {device!r} is not supported; use cpu, cuda, cuda:N or mps")
    return parsed


def usable_cores() -> int:
    """The CPU cores this process may use: its affinity mask (a ``local`` executor worker is pinned to its share),
    capped by SLURM's ``SLURM_CPUS_PER_TASK`` (SLURM without a task plugin grants cores without pinning).

    ``os.cpu_count()`` counts the whole machine, and two processes that each take every core run many times
    slower than one (OpenMP threads spinning against each other), so every thread count starts here."""
    import os

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        cores = os.cpu_count() or 1
    granted = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if granted.isdigit() and int(granted) > 0:
        cores = min(cores, int(granted))
    return max(1, cores)


THREADS_VARIABLE = "KT_NNUNET_THREADS"


def compute_threads() -> int:
    """Torch threads for training and inference on the CPU: ``KT_NNUNET_THREADS`` (an experiment's ``threads``,
    set for its steps) or :func:`usable_cores`. CPU results depend on it in the last bits (a sum split over more
    threads is added in another order), so an experiment that fixes it gives the same numbers under every
    executor."""
    import os

    value = os.environ.get(THREADS_VARIABLE, "")
    return int(value) if value.isdigit() and int(value) > 0 else usable_cores()
