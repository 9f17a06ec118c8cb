"""The installed versions of the packages a result depends on, as provenance records them."""
from __future__ import annotations

from typing import Optional, Sequence


def installed_versions(packages: Sequence[str]) -> dict[str, Optional[str]]:
    """``{package: version}``; None for a package that is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, Optional[str]] = {}
    for package in packages:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return versions
