"""The hooks a kt-nnunet plugin can implement. Each docstring is also the hook's documentation."""
import pluggy

from kt_nnunet.plugins import PROJECT_NAME

hookspec = pluggy.HookspecMarker(PROJECT_NAME)


@hookspec
def register_architectures(register):
    """Register segmentation architectures usable as teachers and students.

    Call ``register(spec)`` once per architecture, where ``spec`` is a
    :class:`kt_nnunet.architectures.spec.ArchitectureSpec`. Its ``network_class`` must be importable by
    its dotted path in every process that trains or predicts (nnU-Net locates it from the plans file),
    and must meet nnU-Net's network contract (see ``docs/plugins.md``). Architecture names are global:
    registering a name another plugin already registered is an error naming both plugins.

    Example, with ``MyNet`` your ``nn.Module`` class defined at the top level of an installed module::

        from kt_nnunet import ArchitectureSpec, hookimpl

        @hookimpl
        def register_architectures(register):
            register(ArchitectureSpec(name="my_net", network_class=MyNet, dims=(2, 3),
                                      deep_supervision=False, description="my network, one line"))
    """
