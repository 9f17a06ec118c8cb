"""kt-nnunet: network-agnostic knowledge transfer for medical image segmentation on nnU-Net v2.

Importing this package is cheap: torch, nnU-Net and plugins load only when an API that needs them is used.
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kt-nnunet")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

from kt_nnunet.errors import KtNnunetError  # noqa: E402  (no dependencies)
from kt_nnunet.registry import get_architecture, list_architectures  # noqa: E402  (lazy inside)

# For plugin authors; loaded on first access, because ArchitectureSpec needs torch.
_LAZY = {"hookimpl": "kt_nnunet.plugins", "ArchitectureSpec": "kt_nnunet.architectures.spec"}

__all__ = ["__version__", "ArchitectureSpec", "KtNnunetError", "get_architecture", "hookimpl", "list_architectures"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kt_nnunet' has no attribute {name!r}")
