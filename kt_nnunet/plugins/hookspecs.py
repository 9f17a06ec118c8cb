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


@hookspec
def register_teacher_kinds(register):
    """Register a kind of teacher: a way to get class probabilities or label maps on transferal images.

    Call ``register(kind)`` once per kind, where ``kind`` is a :class:`kt_nnunet.TeacherKind`
    (``kt_nnunet.teachers.kinds.TeacherKind``):

    * ``name``: what users write before the path, ``--teacher NAME:PATH`` (lower case, ``[a-z0-9_-]``;
      ``nnunet``, ``onnx``, ``torchscript`` and ``predictions`` are built in);
    * ``open(spec, options)``: returns a :class:`kt_nnunet.Teacher` for the
      :class:`~kt_nnunet.teachers.spec.TeacherSpec` (``spec.path``, ``spec.folds``) and the
      :class:`~kt_nnunet.teachers.base.TeacherOptions` (device, TTA, sliding-window step);
    * ``claims(path)`` (optional): True when a path given without ``NAME:`` is of this kind, so users may leave
      the prefix out; a path two kinds claim is refused as ambiguous, naming both;
    * ``description``: one line for messages and listings.

    Kind names are global: registering a name another plugin (or a built-in kind) already has is an error naming
    both plugins. A ``Teacher`` states its ``labels``, optionally its ``channel_names`` and ``reader_name``, and
    implements ``probabilities(case, image, properties)`` (float32 ``(K, *spatial)`` on the image's grid) and
    ``fingerprint()`` (what decides its outputs, with file checksums; a labelling resumes only while it is
    unchanged). ``kt_nnunet.testing.TeacherKindConformance`` checks a kind. Example::

        from kt_nnunet import TeacherKind, hookimpl

        @hookimpl
        def register_teacher_kinds(register):
            register(TeacherKind(name="my_tool", open=MyToolTeacher, claims=lambda path: path.suffix == ".mytool",
                                 description="segmentations from my tool"))
    """


@hookspec(warn_on_impl=DeprecationWarning("register_teacher_loaders is the old name of the kt-nnunet hook "
                                          "register_teacher_kinds; rename the function (it works the same)"))
def register_teacher_loaders(register):
    """Deprecated: the old name of :func:`register_teacher_kinds`, still collected exactly like it (a plugin
    implementing it gets a ``DeprecationWarning``); implement ``register_teacher_kinds`` instead."""
