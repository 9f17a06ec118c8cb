"""Every registered architecture meets nnU-Net's network contract, in 2D and (where declared) 3D.

The checks are the conformance kit's (``kt_nnunet.testing``), the same ones plugin packages run in their own CI;
tests/test_testing_kit.py shows that they catch each kind of broken network.
"""
from __future__ import annotations

import pytest
import torch

from kt_nnunet.architectures.spec import PlanGeometry
from kt_nnunet.registry import list_architectures
from kt_nnunet.testing import ArchitectureConformance

# plugins/kt-nnunet-monai runs the kit on its own architectures (on plans its fixed-topology networks can take,
# and with one real training run); running it here too would repeat about 20 s of checks and train each of them.
TESTED_BY_THEIR_PLUGIN = ("monai",)
SPECS = {spec.name: spec for spec in list_architectures() if spec.plugin not in TESTED_BY_THEIR_PLUGIN}
CLASSES = 3


# The kit's stock `nnUNetv2_train` run in fresh processes costs 20-80 s per architecture on 2 cores, most of it
# starting processes; it runs for the third-party path (segresnet's and MONAI's plugin tests) and for stock
# commands elsewhere. Each built-in is trained here instead by nnU-Net's own trainer in this process, all on one
# planned dataset: the same plans, network build (by the dotted class path) and training loop, in seconds.
class TestEveryRegisteredArchitecture(ArchitectureConformance):
    architecture = sorted(SPECS)
    train = False


@pytest.mark.slow
def test_every_architecture_trains_a_planned_epoch_in_nnunets_trainer(nnunet_env, tmp_path):
    from kt_nnunet.nnunet.model_folder import load_checkpoint_safely
    from kt_nnunet.testing.training import tiny_raw_dataset
    from kt_nnunet.training.settings import Budget
    from kt_nnunet.training.supervised import prepare_training
    from kt_nnunet.training.training_plan import train_plan

    dataset, configuration = tiny_raw_dataset(2, nnunet_env["nnUNet_raw"])
    trained = {}
    for name in sorted(n for n, spec in SPECS.items() if 2 in spec.dims):
        plan = prepare_training(dataset, name, configuration=configuration, tiny=True, budget=Budget(1, 2, 1))
        folder = train_plan(plan, device="cpu", validate=False)
        checkpoint = load_checkpoint_safely(folder / "fold_0" / "checkpoint_final.pth")
        logs = "".join(p.read_text() for p in (folder / "fold_0").glob("training_log_*.txt"))
        trained[name] = (checkpoint["current_epoch"], checkpoint["trainer_name"], "Epoch 0" in logs,
                         "Epoch 1" in logs)
    assert trained == {name: (1, "nnUNetTrainer", True, False) for name in trained}, trained
    assert len(trained) >= 8


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
