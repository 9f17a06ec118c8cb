"""Every registered architecture meets nnU-Net's network contract, in 2D and (where declared) 3D.

The checks are the conformance kit's (``kt_nnunet.testing``), the same ones plugin packages run in their own CI;
tests/test_testing_kit.py shows that they catch each kind of broken network.
"""
from __future__ import annotations

import torch

from kt_nnunet.architectures.spec import PlanGeometry
from kt_nnunet.registry import list_architectures
from kt_nnunet.testing import ArchitectureConformance

# plugins/kt-nnunet-monai runs the kit on its own architectures (on plans its fixed-topology networks can take,
# and with one real training run); running it here too would repeat about 20 s of checks and train each of them.
TESTED_BY_THEIR_PLUGIN = ("monai",)
SPECS = {spec.name: spec for spec in list_architectures() if spec.plugin not in TESTED_BY_THEIR_PLUGIN}
CLASSES = 3


# Trained for real elsewhere in the suite, so their stock nnUNetv2_train run here would only repeat it (about
# 27 s each on 2 cores): segresnet by its plugin's own kit tests and the round trip, light_unet and unet by the
# transfer, labelling and experiment tests.
TRAINED_ELSEWHERE = ("segresnet", "light_unet", "unet")


class TestEveryRegisteredArchitecture(ArchitectureConformance):
    architecture = sorted(name for name in SPECS if name not in TRAINED_ELSEWHERE)
    predict = False  # the printed predict command is run by the segresnet plugin's own kit tests and the round trip


class TestArchitecturesTrainedElsewhere(ArchitectureConformance):
    architecture = sorted(name for name in SPECS if name in TRAINED_ELSEWHERE)
    train = False


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
