"""Plugin system: pluggy hook specifications (hookspecs.py), the plugin manager (manager.py) and the collector both
registries read their hook through (collector.py)."""
import pluggy

PROJECT_NAME = "kt_nnunet"
ENTRY_POINT_GROUP = "kt_nnunet"

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Decorator for plugin hook implementations: ``@hookimpl def register_architectures(register): ...``."""

__all__ = ["hookimpl", "PROJECT_NAME", "ENTRY_POINT_GROUP"]
