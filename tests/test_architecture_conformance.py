"""Every registered architecture meets nnU-Net's network contract, in 2D and (where declared) 3D."""
from __future__ import annotations

import pytest
import torch

from kt_nnunet.architectures.contract import (check_outputs, construct_like_nnunet, set_deep_supervision,
                                              state_dict_signature)
from kt_nnunet.architectures.spec import PlanGeometry
from kt_nnunet.registry import list_architectures

GEOMETRIES = {
    "2d": PlanGeometry.default((32, 32), 4),
    "2d_anisotropic": PlanGeometry.create((32, 64), [[1, 1], [1, 2], [2, 2], [2, 2]]),
    "3d": PlanGeometry.default((16, 16, 16), 3),
    "3d_anisotropic": PlanGeometry.create((8, 32, 32), [[1, 1, 1], [1, 2, 2], [2, 2, 2], [1, 2, 2]]),
}
SPECS = {spec.name: spec for spec in list_architectures()}
CASES = [pytest.param(name, g, id=f"{name}-{g}") for name, spec in SPECS.items() for g in GEOMETRIES
         if GEOMETRIES[g].dim in spec.dims]
BATCH, CHANNELS, CLASSES = 2, 2, 3


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


@pytest.mark.parametrize("name,geometry_key", CASES)
def test_forward_backward_and_deep_supervision(name, geometry_key):
    spec, geometry = SPECS[name], GEOMETRIES[geometry_key]
    network = spec.build(CHANNELS, CLASSES, geometry, deep_supervision=True, tiny=True)
    x = torch.randn(BATCH, CHANNELS, *geometry.patch_size)

    outputs = network(x)
    check_outputs(outputs, geometry, BATCH, CLASSES, True, spec.deep_supervision)
    sum(o.float().square().mean() for o in outputs).backward()
    grads = [p.grad for p in network.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads), "missing or non-finite gradients"
    assert any(g.abs().sum() > 0 for g in grads)

    set_deep_supervision(network, False)
    with torch.no_grad():
        check_outputs(network(x), geometry, BATCH, CLASSES, False, spec.deep_supervision)


@pytest.mark.parametrize("name,geometry_key", CASES)
def test_state_dict_is_independent_of_deep_supervision(name, geometry_key):
    spec, geometry = SPECS[name], GEOMETRIES[geometry_key]
    with_ds = spec.build(CHANNELS, CLASSES, geometry, deep_supervision=True, tiny=True)
    without_ds = spec.build(CHANNELS, CLASSES, geometry, deep_supervision=False, tiny=True)
    assert state_dict_signature(with_ds) == state_dict_signature(without_ds)
    without_ds.load_state_dict(with_ds.state_dict(), strict=True)
    x = torch.randn(1, CHANNELS, *geometry.patch_size)
    with_ds.eval(), without_ds.eval()
    set_deep_supervision(with_ds, False)
    with torch.no_grad():
        torch.testing.assert_close(with_ds(x), without_ds(x))


@pytest.mark.parametrize("name", sorted(SPECS))
def test_plans_kwargs_build_the_same_network_as_nnunet(name):
    """What `kt-nnunet plan` writes is JSON, and nnU-Net's own builder makes the same module from it."""
    import json

    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    spec = SPECS[name]
    geometry = GEOMETRIES["2d" if 2 in spec.dims else "3d"]
    arch_kwargs = json.loads(json.dumps(spec.arch_kwargs(geometry, tiny=True)))
    ours = construct_like_nnunet(spec.class_path, arch_kwargs, spec.kw_requires_import, 1, CLASSES, True)
    theirs = get_network_from_plans(spec.class_path, arch_kwargs, list(spec.kw_requires_import), 1, CLASSES,
                                    deep_supervision=True)
    assert type(ours) is type(theirs)
    assert state_dict_signature(ours) == state_dict_signature(theirs)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_default_size_builds_and_rejects_bad_patch(name):
    spec = SPECS[name]
    if 2 not in spec.dims:
        pytest.skip("3D-only architecture")
    geometry = PlanGeometry.default((64, 64), 5)
    network = spec.build(1, CLASSES, geometry)
    with torch.no_grad():
        assert network(torch.randn(1, 1, 64, 64)).shape == (1, CLASSES, 64, 64)
    with pytest.raises(ValueError, match="not divisible"):
        spec.build(1, CLASSES, PlanGeometry.create((60, 64), geometry.strides), tiny=True)


def test_at_least_eight_architectures_from_two_plugins():
    assert len(SPECS) >= 8
    assert len({spec.plugin for spec in SPECS.values()}) >= 2


def test_light_student_costs_at_most_a_fifth_of_nnunets_default_flops():
    from torch.utils.flop_counter import FlopCounterMode

    def flops(name):
        geometry = PlanGeometry.default((64, 64), 5)  # nnU-Net's default 2D topology for 64x64
        network = SPECS[name].build(1, CLASSES, geometry).eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            network(torch.randn(1, 1, *geometry.patch_size))
        return counter.get_total_flops()

    assert flops("light_unet") <= flops("nnunet_plain") / 5
