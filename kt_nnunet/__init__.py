"""kt-nnunet: network-agnostic knowledge transfer for medical image segmentation on nnU-Net v2.

Importing this package is cheap: torch, nnU-Net and plugins load only when an API that needs them is used.
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kt-nnunet")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

from kt_nnunet.registry import get_architecture, list_architectures  # noqa: E402  (lazy inside)

__all__ = ["__version__", "get_architecture", "list_architectures"]
