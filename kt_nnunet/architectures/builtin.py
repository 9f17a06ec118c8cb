"""The built-in plugin: registers kt-nnunet's own architectures through the public hook."""
from kt_nnunet.plugins import hookimpl


@hookimpl
def register_architectures(register):
    from kt_nnunet.architectures import (attention_unet, deeplabv3plus, light, nnunet_nets, transunet, unet,
                                         unetpp)

    for spec in (*nnunet_nets.SPECS, unet.SPEC, unetpp.SPEC, attention_unet.SPEC, deeplabv3plus.SPEC,
                 transunet.SPEC, light.SPEC):
        register(spec)
