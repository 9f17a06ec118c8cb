"""The plugin module named by the ``kt_nnunet`` entry point."""
from kt_nnunet.architectures.spec import ArchitectureSpec
from kt_nnunet.plugins import hookimpl


@hookimpl
def register_architectures(register):
    from kt_nnunet_segresnet.network import SegResNet

    register(ArchitectureSpec(
        name="segresnet",
        network_class=SegResNet,
        dims=(2, 3),
        deep_supervision=True,
        description="SegResNet (Myronenko 2018): residual group-norm encoder, light decoder",
        default_kwargs={"base_features": 16},
        tiny_kwargs={"base_features": 4},
    ))
