"""SegResNet meets nnU-Net's network contract: kt-nnunet's conformance kit, used as any plugin package would."""
from kt_nnunet.testing import ArchitectureConformance


class TestSegResNet(ArchitectureConformance):
    architecture = "segresnet"
