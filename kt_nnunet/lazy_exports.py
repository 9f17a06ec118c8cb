"""A package's public names imported on first use (a module ``__getattr__``, PEP 562), so that importing the
package stays cheap: torch, nnU-Net and plugins load only when a name that needs them is used."""
from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """The ``__getattr__`` of ``package`` that imports ``exports[name]`` (a module path) to return ``name``."""
    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
