"""nnU-Net's network contract, as one place that builds and checks a network the way nnU-Net uses it.

The contract (nnU-Net 2.8 ``get_network_from_plans`` and ``nnUNetTrainer``):

* constructor ``cls(input_channels=, num_classes=, deep_supervision=, **arch_kwargs)``;
* a ``.decoder`` attribute whose ``deep_supervision`` flag the trainer flips at run time;
* with deep supervision on, a list of logits, full resolution first; off, one logit tensor;
* the same ``state_dict`` either way, because inference builds with it off and loads strictly.

Every check raises :class:`NetworkContractError` whose message is the broken rule in the user's terms
("output has 3 channels, the plans ask for 4"), never a bare PyTorch error from deep inside nnU-Net.
"""
from __future__ import annotations

import pydoc
from typing import Sequence

import torch
import torch.nn as nn

from kt_nnunet.architectures.spec import PlanGeometry
from kt_nnunet.errors import KtNnunetError, one_line

CONSTRUCTOR = "cls(input_channels=, num_classes=, deep_supervision=, **arch_kwargs)"


class NetworkContractError(KtNnunetError, AssertionError):
    """A network does not behave the way nnU-Net's trainer and predictor require; the message names the rule."""


class NetworkCodeError(NetworkContractError):
    """The network's own constructor or forward() raised; on the meta device that may be the device's fault."""


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


def class_path_problem(class_path: str, network_class: type) -> str | None:
    """Why nnU-Net could not find ``network_class`` from the dotted path written into the plans, if it could not."""
    if "<locals>" in class_path:
        return (f"network class {class_path!r} is defined inside a function, so nnU-Net cannot import it by its "
                "dotted path from the plans file; define it at the top level of an installed module")
    try:
        found = pydoc.locate(class_path)
    except Exception as exc:  # pydoc.locate imports the plugin's module, which may raise anything
        return f"importing network class {class_path!r} raised {one_line(exc)}"
    if found is None:
        return (f"network class {class_path!r} cannot be imported by its dotted path, which is how nnU-Net finds it "
                "in every process that trains or predicts; define it in an installed module")
    if found is not network_class:
        return f"{class_path!r} imports as {found!r}, not the registered network class {network_class!r}"
    return None


def build_for_check(class_path: str, arch_kwargs: dict, kw_requires_import: Sequence[str], input_channels: int,
                    num_classes: int, deep_supervision: bool) -> nn.Module:
    """:func:`construct_like_nnunet`, with a failure reported as the contract rule it breaks."""
    try:
        return construct_like_nnunet(class_path, arch_kwargs, kw_requires_import, input_channels, num_classes,
                                     deep_supervision)
    except ImportError as exc:
        raise NetworkContractError(str(exc)) from exc
    except TypeError as exc:
        raise NetworkCodeError(
            f"the constructor failed: {one_line(exc)}. nnU-Net calls {CONSTRUCTOR} with arch_kwargs "
            f"{sorted(arch_kwargs)}; accept every name you use and ignore the others with **kwargs") from exc
    except Exception as exc:  # the plugin's own constructor: whatever it raises is the cause to report
        raise NetworkCodeError(f"the constructor failed with arch_kwargs {sorted(arch_kwargs)}: "
                               f"{one_line(exc)}") from exc


def set_deep_supervision(network: nn.Module, enabled: bool) -> None:
    """What ``nnUNetTrainer.set_deep_supervision_enabled`` does."""
    decoder = getattr(network, "decoder", None)
    if decoder is None:
        raise NetworkContractError(
            f"does not support deep supervision: {type(network).__name__} has no .decoder attribute, and nnU-Net's "
            "trainer sets network.decoder.deep_supervision before training and validation; give it a decoder "
            "module whose deep_supervision flag forward() reads (a network without deep supervision returns "
            "[logits] while the flag is on)")
    decoder.deep_supervision = enabled


def _check_one(output, expected: tuple[int, ...], what: str, full: bool) -> None:
    if not isinstance(output, torch.Tensor):
        raise NetworkContractError(f"{what} is a {type(output).__name__}, not a logits tensor")
    got = tuple(output.shape)
    if len(got) != len(expected):
        raise NetworkContractError(f"{what} has shape {list(got)}; nnU-Net expects (batch, classes, *patch) = "
                                   f"{list(expected)}")
    if got[0] != expected[0]:
        raise NetworkContractError(f"{what} has batch size {got[0]} for an input batch of {expected[0]}")
    if got[1] != expected[1]:
        raise NetworkContractError(f"{what} has {got[1]} channels, the plans ask for {expected[1]} "
                                   "(one logit map per segmentation head)")
    if got[2:] != expected[2:]:
        where = "the patch is" if full else "nnU-Net's deep-supervision target there is"
        raise NetworkContractError(f"{what} has spatial shape {list(got[2:])}, {where} {list(expected[2:])}")


def check_outputs(output, geometry: PlanGeometry, batch: int, num_classes: int, deep_supervision: bool,
                  supports_deep_supervision: bool, check_finite: bool = True) -> None:
    """Check output type, shapes and (unless ``check_finite`` is off, as on the meta device) finiteness."""
    full = (batch, num_classes, *geometry.patch_size)
    if not deep_supervision:
        if isinstance(output, (list, tuple)):
            raise NetworkContractError(
                f"with deep supervision off, forward() returned a {type(output).__name__} of {len(output)}, not one "
                "logits tensor; nnU-Net turns it off through network.decoder.deep_supervision, which forward() "
                "must read at run time")
        _check_one(output, full, "the output", full=True)
        outputs = [output]
    else:
        if not isinstance(output, (list, tuple)):
            raise NetworkContractError(
                f"with deep supervision on, forward() returned a {type(output).__name__}, not a list of logit maps "
                "(full resolution first); read network.decoder.deep_supervision at run time, and return [logits] "
                "if the architecture has no deep supervision")
        outputs = list(output)
        if supports_deep_supervision:
            scales = geometry.deep_supervision_shapes()
            if len(outputs) != len(scales):
                raise NetworkContractError(
                    f"with deep supervision on, forward() returned {len(outputs)} outputs; the plans' "
                    f"{geometry.n_stages} stages ask for {len(scales)}, one per scale {[list(s) for s in scales]}, "
                    "full resolution first (or declare deep_supervision=False and return [logits])")
        else:
            scales = [geometry.patch_size]
            if len(outputs) != 1:
                raise NetworkContractError(
                    f"with deep supervision on, forward() returned {len(outputs)} outputs, but the spec declares "
                    "deep_supervision=False, which means one: [logits] at full resolution")
        for i, (o, shape) in enumerate(zip(outputs, scales)):
            what = "the output" if i == 0 and len(scales) == 1 else f"deep-supervision output {i}"
            _check_one(o, (batch, num_classes, *shape), what, full=i == 0)
    if check_finite:
        for o in outputs:
            if not torch.isfinite(o).all():
                raise NetworkContractError("the output contains NaN or Inf")


def state_dict_signature(network: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in network.state_dict().items()}


def check_same_state_dict(with_ds: nn.Module, without_ds: nn.Module) -> None:
    """Inference builds with deep supervision off and loads the training checkpoint strictly."""
    a, b = state_dict_signature(with_ds), state_dict_signature(without_ds)
    if a == b:
        return
    only_on, only_off = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    shapes = sorted(k for k in set(a) & set(b) if a[k] != b[k])
    detail = "; ".join(f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}" for label, keys in (
        ("only with it on", only_on), ("only with it off", only_off), ("other shapes", shapes)) if keys)
    raise NetworkContractError(
        f"the state_dict differs with deep supervision on and off ({detail}); nnU-Net predicts with it off and "
        "loads the checkpoint strictly, so create every head always and only choose in forward() what to return")


def _forward(network: nn.Module, x: torch.Tensor, what: str):
    try:
        return network(x)
    except NetworkContractError:
        raise
    except Exception as exc:  # the plugin's forward(): report its error as the broken rule
        raise NetworkCodeError(f"forward() {what} failed on a {list(x.shape)} input: "
                               f"{one_line(exc)}") from exc


def check_network(class_path: str, arch_kwargs: dict, kw_requires_import: Sequence[str], geometry: PlanGeometry,
                  input_channels: int, num_classes: int, supports_deep_supervision: bool,
                  device: str = "meta", batch: int = 2) -> nn.Module:
    """The quick contract check at a plan's geometry: build as nnU-Net does, forward with deep supervision on (as
    the trainer) and off (as validation and the predictor), and compare the state dicts; returns the network.

    On the ``meta`` device nothing is computed or allocated, so a full-size 3D network takes well under a second.
    Shapes there are exact, so a broken shape rule is final; an error the network's own code raises is checked again
    on the CPU, because an operator without a meta kernel, or a CPU tensor the code makes itself, fails only on meta.
    """
    if arch_kwargs.get("strides") is None:
        raise NetworkContractError("the plans' arch_kwargs have no 'strides', which nnU-Net's trainer reads to make "
                                   "the deep-supervision targets; keep the plan's strides in plan_kwargs")
    try:
        # The trainer makes its deep-supervision targets from these strides, whatever the planner chose.
        geometry = PlanGeometry.create(geometry.patch_size, arch_kwargs["strides"], geometry.kernel_sizes)
    except (TypeError, ValueError) as exc:
        raise NetworkContractError(f"the plans' arch_kwargs strides {arch_kwargs['strides']} do not fit the patch "
                                   f"{list(geometry.patch_size)}: {exc}") from exc
    try:
        with torch.device(device):
            network = build_for_check(class_path, arch_kwargs, kw_requires_import, input_channels, num_classes, True)
            set_deep_supervision(network, True)  # the trainer's first touch, before any forward pass
            x = torch.zeros(batch, input_channels, *geometry.patch_size)
            network.train()
            check_outputs(_forward(network, x, "with deep supervision on"), geometry, batch, num_classes, True,
                          supports_deep_supervision, check_finite=device != "meta")
            set_deep_supervision(network, False)
            network.eval()
            with torch.no_grad():
                check_outputs(_forward(network, x, "with deep supervision off"), geometry, batch, num_classes, False,
                              supports_deep_supervision, check_finite=device != "meta")
            check_same_state_dict(network, build_for_check(class_path, arch_kwargs, kw_requires_import,
                                                           input_channels, num_classes, False))
    except NetworkCodeError:
        if device != "meta":
            raise
        return check_network(class_path, arch_kwargs, kw_requires_import, geometry, input_channels, num_classes,
                             supports_deep_supervision, device="cpu", batch=batch)
    return network
