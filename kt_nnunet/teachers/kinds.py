"""Kinds of teacher: the built-in ones and those plugins register through ``register_teacher_kinds``, which
kind a parsed :class:`~kt_nnunet.teachers.spec.TeacherSpec` is, and a teacher opened through its kind.

Built in:

* ``nnunet``: a trained nnU-Net model folder (``plans.json``, ``dataset.json``, ``fold_N/``);
* ``onnx`` / ``torchscript``: an exported network file with its JSON sidecar (what ``kt-nnunet export``
  writes, or a hand-written description of a network from elsewhere);
* ``predictions``: a folder of label maps or probability maps another tool wrote, one per transferal case.

``--teacher KIND:PATH`` names the kind; a bare ``PATH`` is given to the kind that claims it, found by
:func:`resolve_kind` where the teacher is opened (parsing reads the text only). A kind's ``open`` is called
only when a teacher of that kind is used, so a kind costs nothing until then. The plugins' kinds are collected
like their architectures (``plugins/collector.py``): a broken plugin is left out and reported.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional, Sequence

from kt_nnunet.errors import KtNnunetError
from kt_nnunet.nnunet.model_folder import ModelFolderError
from kt_nnunet.nnunet.paths import describe_folder, under_results
from kt_nnunet.plugins.collector import HookRegistry
from kt_nnunet.teachers.errors import TeacherKindError, TeacherMismatchError
from kt_nnunet.teachers.spec import MODEL_FOLDER_KIND, TeacherSpec

KIND_NAME = re.compile(r"^[a-z][a-z0-9_\-]*$")


@dataclass(frozen=True)
class TeacherKind:
    """One way to bring a teacher; see the ``register_teacher_kinds`` hook."""

    name: str
    open: Callable                                   # (TeacherSpec, TeacherOptions) -> Teacher
    claims: Optional[Callable[[Path], bool]] = None  # path given without KIND: -> is it this kind?
    description: str = ""
    plugin: str = "builtin"

    def __post_init__(self):
        if not isinstance(self.name, str) or not KIND_NAME.match(self.name):
            raise ValueError(f"teacher kind name {self.name!r} must be lower case letters, digits, '_' and '-'")
        if not callable(self.open):
            raise TypeError(f"teacher kind {self.name!r}: open must be callable (spec, options) -> Teacher")


def _open_model_folder(spec, options):
    from kt_nnunet.teachers.network_teachers import ModelFolderTeacher

    return ModelFolderTeacher(spec, options)


def _open_exported(spec, options):
    from kt_nnunet.teachers.network_teachers import ExportedNetworkTeacher

    return ExportedNetworkTeacher(spec, options)


def _open_predictions(spec, options):
    from kt_nnunet.teachers.predictions import PredictionsTeacher

    return PredictionsTeacher(spec, options)


def _claims_model_folder(path: Path) -> bool:
    if not path.is_dir():
        path = under_results(path)
    return path.is_dir() and (path / "plans.json").is_file() and (
        any(path.glob("fold_*")) or not _holds_predictions(path))


def _exported_format(path: Path) -> Optional[str]:
    from kt_nnunet.exported.sidecar import ExportedModelError, is_sidecar, read_sidecar, sidecar_of

    if path.is_file() and path.suffix not in (".onnx", ".pt", ".ts", ".json"):
        return None
    if path.is_dir() and not any(path.glob("*.json")):
        return None
    try:
        return read_sidecar(path).get("network_format")
    except ExportedModelError:
        # A file whose sidecar is there but wrong was meant as an exported network: that problem is the error.
        if path.is_file() and is_sidecar(sidecar_of(path)):
            raise
        return None
    except (OSError, ValueError, KeyError, AttributeError, TypeError):
        return None


def _holds_predictions(path: Path) -> bool:
    from kt_nnunet.teachers.predictions import prediction_files

    return path.is_dir() and not any(path.glob("fold_*")) and bool(prediction_files(path))


BUILTIN_KINDS = (
    TeacherKind("nnunet", _open_model_folder, _claims_model_folder,
                "trained nnU-Net model folder (plans.json, dataset.json, fold_N/)"),
    TeacherKind("onnx", _open_exported, lambda path: _exported_format(path) == "onnx",
                "exported ONNX network with its JSON sidecar"),
    TeacherKind("torchscript", _open_exported, lambda path: _exported_format(path) == "torchscript",
                "exported TorchScript network with its JSON sidecar"),
    TeacherKind("predictions", _open_predictions, _holds_predictions,
                "folder of label maps or probabilities (.npz, 4D NIfTI), one per transferal case"),
)

_TEACHER_KINDS = HookRegistry("teacher kind", ("register_teacher_kinds", "register_teacher_loaders"),
                              lambda: TeacherKind, TeacherKindError, builtin=BUILTIN_KINDS)


def list_kinds() -> list[TeacherKind]:
    """Built-in kinds, then the plugins' (collected again whenever the plugin manager was rebuilt)."""
    return list(_TEACHER_KINDS.collection().items.values())


def problems() -> list[str]:
    """One line per plugin or teacher kind left out because it is broken, naming the plugin and the cause."""
    return _TEACHER_KINDS.problems()


def get_kind(name: str) -> TeacherKind:
    found = _TEACHER_KINDS.collection()
    if name in found.items:
        return found.items[name]
    close = found.closest_name(name)
    hint = f" (did you mean {close!r}?)" if close else ""
    broken = found.broken_plugins()
    left_out = f"; left out because broken: {' | '.join(broken)}" if broken else ""
    raise TeacherKindError(f"unknown teacher kind {name!r}{hint}; known kinds: {_listing()}{left_out}")


def detect_kind(path: Path) -> TeacherKind:
    """The one kind that claims ``path``; none or several is one error saying how to name the kind."""
    claimed = []
    for kind in list_kinds():
        try:
            if kind.claims is not None and kind.claims(path):
                claimed.append(kind)
        except KtNnunetError:
            raise
        except Exception:  # noqa: BLE001 - a plugin's claims() that fails on a path does not claim it
            continue
    if len(claimed) == 1:
        return claimed[0]
    if len(claimed) > 1:
        names = [k.name for k in claimed]
        raise TeacherKindError(f"teacher {path} could be a {' or a '.join(names)} teacher; say which, e.g. "
                               f"--teacher {names[0]}:{path} (in a config: {{{names[0]}: {path}}})")
    if path.is_file():
        raise TeacherKindError(f"teacher {path} is a file, not a model folder, and no teacher kind reads it; give "
                               "the model folder holding plans.json, dataset.json and fold_N/, or an exported "
                               f"network with its JSON sidecar beside it (same name, .json). Known kinds: {_listing()}")
    if path.is_dir():
        raise TeacherKindError(f"teacher {path} is neither a model folder (plans.json, fold_N/) nor a folder of "
                               f"predictions; give KIND:{path} with one of: {_listing()}")
    return get_kind(MODEL_FOLDER_KIND)  # a name under $nnUNet_results, or nothing: the model-folder error explains


def resolve_kind(spec: TeacherSpec) -> TeacherSpec:
    """``spec`` with its kind (the one it names, else the one that claims its path) and its absolute path (a model
    folder also relative to ``$nnUNet_results``). An unknown kind, a path no kind or several kinds claim, or a
    path that does not exist is one error."""
    kind = get_kind(spec.kind) if spec.kind is not None else detect_kind(spec.path)
    if kind.name == MODEL_FOLDER_KIND:
        path = _model_folder(spec.path)
    elif not spec.path.exists():
        raise ModelFolderError(f"{kind.name} teacher {spec.path} does not exist")
    else:
        path = spec.path.absolute()
    return replace(spec, kind=kind.name, path=path)


def _model_folder(path: Path) -> Path:
    """The absolute model folder ``path`` names (a path, or one relative to ``$nnUNet_results``)."""
    if path.is_file():
        raise ModelFolderError(f"teacher {path} is a file, not a model folder; give the folder holding plans.json, "
                               "dataset.json and fold_N/ (nnUNet_results/DatasetX/TRAINER__PLANS__CFG), or an "
                               "exported network as onnx:FILE / torchscript:FILE with its JSON sidecar")
    if not path.is_dir():
        path = under_results(path)
    if not path.is_dir():
        raise ModelFolderError(f"teacher model folder {path} does not exist (also not under "
                               f"{describe_folder('nnUNet_results')}); give the folder holding plans.json, "
                               "dataset.json and fold_N/")
    return path.absolute()


def open_teacher(spec: TeacherSpec, options):
    """A :class:`~kt_nnunet.teachers.base.Teacher` of ``spec``'s kind (built in or a plugin's), its kind resolved."""
    from kt_nnunet.teachers.base import Teacher

    spec = resolve_kind(spec)
    kind = get_kind(spec.kind)
    teacher = kind.open(spec, options)
    if not isinstance(teacher, Teacher):
        raise TeacherKindError(f"teacher kind {kind.name!r} from plugin {kind.plugin!r} returned "
                               f"{type(teacher).__name__}, not a kt_nnunet.teachers.base.Teacher")
    return teacher


def open_teachers(specs: Sequence[TeacherSpec], options) -> list:
    if not specs:
        raise TeacherMismatchError("no teacher given; pass --teacher MODEL_FOLDER (or KIND:PATH) at least once")
    return [open_teacher(spec, options) for spec in specs]


def _listing() -> str:
    return "; ".join(f"{k.name} ({k.description})" if k.description else k.name for k in list_kinds())
