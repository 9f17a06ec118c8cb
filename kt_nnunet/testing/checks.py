"""The network-contract checks the conformance kit runs on one registered architecture, in this process.

Each check raises :class:`~kt_nnunet.architectures.contract.NetworkContractError` (an ``AssertionError``, so
pytest reports it as a failure) whose message names the architecture, its plugin and the broken rule.
"""
from __future__ import annotations

import json
from typing import Optional, Union

import torch

from kt_nnunet.architectures.contract import (NetworkContractError, check_outputs, check_same_state_dict,
                                              construct_like_nnunet, set_deep_supervision, state_dict_signature)
from kt_nnunet.architectures.spec import ArchitectureSpec, PlanGeometry
from kt_nnunet.errors import KtNnunetError

# Isotropic and anisotropic plans in 2D and 3D, small enough to run the tiny networks on a CPU in seconds.
GEOMETRIES = {
    "2d": PlanGeometry.default((32, 32), 4),
    "2d_anisotropic": PlanGeometry.create((32, 64), [[1, 1], [1, 2], [2, 2], [2, 2]]),
    "3d": PlanGeometry.default((16, 16, 16), 3),
    "3d_anisotropic": PlanGeometry.create((8, 32, 32), [[1, 1, 1], [1, 2, 2], [2, 2, 2], [1, 2, 2]]),
}
# nnU-Net's default topology for a 64x64 (2D) or 32^3 (3D) dataset, at the architecture's normal size.
DEFAULT_SIZE_GEOMETRIES = {2: PlanGeometry.default((64, 64), 5), 3: PlanGeometry.default((32, 32, 32), 4)}
BATCH, CHANNELS, CLASSES = 2, 2, 3


def resolve(architecture: Union[str, ArchitectureSpec]) -> ArchitectureSpec:
    """The registered spec for a name (an unknown or broken one is a clear error), or the spec itself."""
    from kt_nnunet.registry import get_architecture

    return architecture if isinstance(architecture, ArchitectureSpec) else get_architecture(architecture)


def geometries_for(spec: ArchitectureSpec) -> dict[str, PlanGeometry]:
    return {key: geometry for key, geometry in GEOMETRIES.items() if geometry.dim in spec.dims}


def check_refused_plans(architecture: Union[str, ArchitectureSpec], replaced: set) -> None:
    """The kit plans an architecture cannot take are exactly ``replaced``, and each is refused the way
    ``kt-nnunet plan`` refuses it: by the spec's patch-size rule or the plan-time contract check, in one message."""
    from kt_nnunet.registry import check_contract

    spec = resolve(architecture)
    unknown = sorted(replaced - set(GEOMETRIES))
    if unknown:
        raise NetworkContractError(f"`plans` replaces {unknown}, which are not kit plans ({', '.join(GEOMETRIES)})")
    for key, geometry in geometries_for(spec).items():
        kwargs = spec.arch_kwargs(geometry, tiny=True)
        try:
            spec.check_patch_size(geometry, kwargs)
            check_contract(spec, geometry, CHANNELS, CLASSES, arch_kwargs=kwargs)
        except (ValueError, KtNnunetError) as exc:
            if key not in replaced:
                raise _fail(spec, geometry, f"kit plan {key!r} is refused ({exc}); if the architecture cannot take "
                                            f"it, give a plan it can take in the test class's `plans[{key!r}]`")
        else:
            if key in replaced:
                raise _fail(spec, geometry, f"kit plan {key!r} is taken, so the test class's `plans` must not "
                                            "replace it")


def _fail(spec: ArchitectureSpec, geometry: PlanGeometry, message: str) -> NetworkContractError:
    from kt_nnunet.plugins.manager import plugin_label

    strides = [list(s) for s in geometry.strides]
    return NetworkContractError(f"architecture {spec.name!r} from {plugin_label(spec.plugin)} at patch "
                                f"{list(geometry.patch_size)}, strides {strides}: {message}")


def _with_context(spec, geometry, check, *args):
    try:
        return check(*args)
    except NetworkContractError as exc:
        raise _fail(spec, geometry, str(exc)) from exc


def check_plan_contract(architecture, geometry: PlanGeometry, tiny: bool = False) -> None:
    """The check ``kt-nnunet plan`` runs: build, forward with deep supervision on and off, state dicts (meta device,
    so it costs about a second even at full size)."""
    from kt_nnunet.registry import check_contract

    spec = resolve(architecture)
    check_contract(spec, geometry, CHANNELS, CLASSES, arch_kwargs=spec.arch_kwargs(geometry, tiny=tiny))


def check_forward_backward(architecture, geometry: PlanGeometry) -> None:
    """A real forward and backward pass of the tiny network as the trainer runs it, then the predictor's forward:
    shapes, finite outputs, and a finite gradient for every parameter, some of them non-zero."""
    spec = resolve(architecture)
    torch.manual_seed(0)
    network = spec.build(CHANNELS, CLASSES, geometry, deep_supervision=True, tiny=True)
    _with_context(spec, geometry, set_deep_supervision, network, True)
    x = torch.randn(BATCH, CHANNELS, *geometry.patch_size)
    outputs = network(x)
    _with_context(spec, geometry, check_outputs, outputs, geometry, BATCH, CLASSES, True, spec.deep_supervision)
    sum(o.float().square().mean() for o in outputs).backward()
    missing = [name for name, p in network.named_parameters() if p.requires_grad and p.grad is None]
    if missing:
        raise _fail(spec, geometry, f"parameters get no gradient with deep supervision on: {', '.join(missing[:5])}"
                                    f"{' ...' if len(missing) > 5 else ''}")
    grads = [p.grad for p in network.parameters() if p.requires_grad]
    if not all(torch.isfinite(g).all() for g in grads):
        raise _fail(spec, geometry, "the gradients contain NaN or Inf")
    if not any(g.abs().sum() > 0 for g in grads):
        raise _fail(spec, geometry, "every gradient is zero")
    _with_context(spec, geometry, set_deep_supervision, network, False)
    with torch.no_grad():
        _with_context(spec, geometry, check_outputs, network(x), geometry, BATCH, CLASSES, False,
                      spec.deep_supervision)


def check_state_dict(architecture, geometry: PlanGeometry) -> None:
    """Deep supervision on and off give the same state_dict, a strict load works, and the loaded network predicts
    the same logits: inference builds with it off and loads the training checkpoint."""
    spec = resolve(architecture)
    torch.manual_seed(0)
    with_ds = spec.build(CHANNELS, CLASSES, geometry, deep_supervision=True, tiny=True)
    without_ds = spec.build(CHANNELS, CLASSES, geometry, deep_supervision=False, tiny=True)
    _with_context(spec, geometry, check_same_state_dict, with_ds, without_ds)
    without_ds.load_state_dict(with_ds.state_dict(), strict=True)
    x = torch.randn(1, CHANNELS, *geometry.patch_size)
    with_ds.eval(), without_ds.eval()
    _with_context(spec, geometry, set_deep_supervision, with_ds, False)
    with torch.no_grad():
        a, b = with_ds(x), without_ds(x)
    if not torch.allclose(a, b, rtol=1.3e-6, atol=1e-5):
        raise _fail(spec, geometry, "the network built with deep supervision off predicts other logits than the one "
                                    "trained with it on and then switched off, from the same weights")


def check_nnunet_builds_the_same(architecture) -> None:
    """What ``kt-nnunet plan`` writes is JSON, and nnU-Net's own ``get_network_from_plans`` builds the same module
    from it as kt-nnunet does."""
    from kt_nnunet.nnunet.model_folder import network_from_plans

    spec = resolve(architecture)
    geometry = GEOMETRIES["2d" if 2 in spec.dims else "3d"]
    try:
        arch_kwargs = json.loads(json.dumps(spec.arch_kwargs(geometry, tiny=True)))
    except TypeError as exc:
        raise _fail(spec, geometry, f"plan_kwargs returned arch_kwargs that are not JSON ({exc}); nnU-Net reads them "
                                    "from the plans file") from exc
    ours = construct_like_nnunet(spec.class_path, arch_kwargs, spec.kw_requires_import, 1, CLASSES, True)
    theirs = network_from_plans(spec.class_path, arch_kwargs, spec.kw_requires_import, 1, CLASSES,
                                deep_supervision=True)
    if type(ours) is not type(theirs) or state_dict_signature(ours) != state_dict_signature(theirs):
        raise _fail(spec, geometry, f"nnU-Net's get_network_from_plans builds {type(theirs).__name__} with another "
                                    f"state_dict than kt-nnunet's {type(ours).__name__} from the same plans")


def check_default_size(architecture) -> None:
    """The architecture builds at its normal size on nnU-Net's default topology, and refuses a patch the strides
    do not divide with a clear ValueError, not a shape error inside forward()."""
    spec = resolve(architecture)
    dim = 2 if 2 in spec.dims else 3
    geometry = DEFAULT_SIZE_GEOMETRIES[dim]
    network = spec.build(1, CLASSES, geometry)
    with torch.no_grad():
        _with_context(spec, geometry, check_outputs, network(torch.randn(2, 1, *geometry.patch_size)), geometry, 2,
                      CLASSES, False, spec.deep_supervision)
    bad = PlanGeometry.create((geometry.patch_size[0] - 4, *geometry.patch_size[1:]), geometry.strides)
    try:
        spec.build(1, CLASSES, bad, tiny=True)
    except ValueError as exc:
        if "not divisible" not in str(exc):
            raise _fail(spec, bad, f"an indivisible patch raised ValueError without saying so: {exc}") from exc
    else:
        raise _fail(spec, bad, "a patch size the strides do not divide was accepted; divisibility() must refuse it")


def check_architecture(architecture, train: bool = False, workdir=None, plans: Optional[dict] = None) -> None:
    """Every in-process check on every geometry the architecture supports; with ``train``, also the tiny real
    ``kt-nnunet plan`` + ``nnUNetv2_train`` + ``nnUNetv2_predict`` run in ``workdir`` (see :mod:`.training`).
    ``plans`` replaces kit plans the architecture cannot take (see ``ArchitectureConformance.plans``)."""
    spec = resolve(architecture)
    plans = dict(plans or {})
    check_refused_plans(spec, set(plans))
    for key, geometry in geometries_for(spec).items():
        geometry = plans.get(key, geometry)
        check_plan_contract(spec, geometry, tiny=True)
        check_forward_backward(spec, geometry)
        check_state_dict(spec, geometry)
    check_nnunet_builds_the_same(spec)
    check_default_size(spec)
    if train:
        from kt_nnunet.testing.training import train_step

        if workdir is None:
            raise ValueError("check_architecture(train=True) needs a workdir for nnU-Net's folders")
        train_step(spec.name, workdir)
