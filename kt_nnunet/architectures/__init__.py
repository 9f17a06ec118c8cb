"""Segmentation architectures: the spec, nnU-Net's network contract, and the built-in networks."""
from kt_nnunet.architectures.spec import ArchitectureSpec, PlanGeometry

__all__ = ["ArchitectureSpec", "PlanGeometry"]
