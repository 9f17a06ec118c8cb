"""nnU-Net's network contract, as one place that builds and checks a network the way nnU-Net uses it.

The contract (nnU-Net 2.8 ``get_network_from_plans`` and ``nnUNetTrainer``):

* constructor ``cls(input_channels=, num_classes=, deep_supervision=, **arch_kwargs)``;
* a ``.decoder`` attribute whose ``deep_supervision`` flag the trainer flips at run time;
* with deep supervision on, a list of logits, full resolution first; off, one logit tensor;
* the same ``state_dict`` either way, because inference builds with it off and loads strictly.
"""
from __future__ import annotations

import pydoc
from typing import Sequence

import torch
import torch.nn as nn

from kt_nnunet.architectures.spec import PlanGeometry


class NetworkContractError(AssertionError):
    """A network does not behave the way nnU-Net's trainer and predictor require."""


def construct_like_nnunet(class_path: str, arch_kwargs: dict, kw_requires_import: Sequence[str],
                          input_channels: int, num_classes: int, deep_supervision: bool) -> nn.Module:
    """Same steps as ``nnunetv2.utilities.get_network_from_plans`` (kept free of nnunetv2 imports)."""
    kwargs = dict(arch_kwargs)
    for key in kw_requires_import:
        if kwargs.get(key) is not None:
            kwargs[key] = pydoc.locate(kwargs[key])
    cls = pydoc.locate(class_path)
    if cls is None:
        raise ImportError(f"network class {class_path!r} cannot be imported; is its package installed?")
    network = cls(input_channels=input_channels, num_classes=num_classes, deep_supervision=deep_supervision,
                  **kwargs)
    if hasattr(network, "initialize"):
        network.apply(network.initialize)
    return network


def set_deep_supervision(network: nn.Module, enabled: bool) -> None:
    """What ``nnUNetTrainer.set_deep_supervision_enabled`` does."""
    if not hasattr(network, "decoder"):
        raise NetworkContractError(f"{type(network).__name__} has no .decoder attribute; nnU-Net sets "
                                   "network.decoder.deep_supervision during training and validation")
    network.decoder.deep_supervision = enabled


def check_outputs(output, geometry: PlanGeometry, batch: int, num_classes: int, deep_supervision: bool,
                  supports_deep_supervision: bool) -> None:
    """Check output type, shapes and finiteness for one forward pass on a full patch."""
    full = (batch, num_classes, *geometry.patch_size)
    if not deep_supervision:
        if not isinstance(output, torch.Tensor):
            raise NetworkContractError(f"with deep supervision off the output must be a tensor, got {type(output)}")
        outputs = [output]
        expected = [full]
    else:
        if not isinstance(output, (list, tuple)):
            raise NetworkContractError(f"with deep supervision on the output must be a list, got {type(output)}")
        outputs = list(output)
        scales = geometry.deep_supervision_shapes() if supports_deep_supervision else [geometry.patch_size]
        expected = [(batch, num_classes, *shape) for shape in scales]
    got = [tuple(o.shape) for o in outputs]
    if got != expected:
        raise NetworkContractError(f"output shapes {got} != expected {expected}")
    for o in outputs:
        if not torch.isfinite(o).all():
            raise NetworkContractError("output contains NaN or Inf")


def state_dict_signature(network: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in network.state_dict().items()}
