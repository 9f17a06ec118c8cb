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
