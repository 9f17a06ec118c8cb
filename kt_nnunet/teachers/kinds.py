"""Kinds of teacher: the built-in ones and those plugins register through ``register_teacher_loaders``.

Built in:

* ``nnunet``: a trained nnU-Net model folder (``plans.json``, ``dataset.json``, ``fold_N/``);
* ``onnx`` / ``torchscript``: an exported network file with its JSON sidecar (what ``kt-nnunet export``
  writes, or a hand-written description of a network from elsewhere);
* ``predictions``: a folder of label maps or probability maps another tool wrote, one per transferal case.

``--teacher KIND:PATH`` names the kind; a bare ``PATH`` is given to the kind that claims it. A kind's
``open`` is called only when a teacher of that kind is used, so a kind costs nothing until then.
"""
from __future__ import annotations

import difflib
import re
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional

from kt_nnunet.errors import KtNnunetError, KtNnunetWarning, one_line
from kt_nnunet.teachers.errors import TeacherKindError

_NAME = re.compile(r"^[a-z][a-z0-9_\-]*$")


@dataclass(frozen=True)
class TeacherKind:
    """One way to bring a teacher; see the ``register_teacher_loaders`` hook."""

    name: str
    open: Callable                                   # (TeacherSpec, TeacherOptions) -> Teacher
    claims: Optional[Callable[[Path], bool]] = None  # path given without KIND: -> is it this kind?
    description: str = ""
    plugin: str = "builtin"

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME.match(self.name):
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
    from kt_nnunet.nnunet.paths import under_results

    if not path.is_dir():
        path = under_results(path)
    return path.is_dir() and (path / "plans.json").is_file() and (
        any(path.glob("fold_*")) or not _holds_predictions(path))


def _exported_format(path: Path) -> Optional[str]:
    from kt_nnunet.nnunet.exported_sidecar import ExportedModelError, is_sidecar, read_sidecar, sidecar_of

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

_kinds: tuple = (None, {})  # (the plugin manager they were collected from, {name: kind})


def _collect() -> dict:
    from kt_nnunet.plugins.manager import get_plugin_manager, plugin_label

    found = {kind.name: kind for kind in BUILTIN_KINDS}
    pm = get_plugin_manager()
    for impl in pm.hook.register_teacher_loaders.get_hookimpls():
        plugin_name, mine = impl.plugin_name, {}

        def register(kind, _plugin=plugin_name, _mine=mine):
            if not isinstance(kind, TeacherKind):
                raise TypeError(f"registered {kind!r}, which is not a TeacherKind")
            owner = found.get(kind.name) or _mine.get(kind.name)
            if owner is not None:
                raise TeacherKindError(f"teacher kind {kind.name!r} is registered by both {owner.plugin!r} and "
                                       f"plugin {_plugin!r}; uninstall one of them or load only one "
                                       "(KT_NNUNET_PLUGINS=<names>)")
            _mine[kind.name] = replace(kind, plugin=_plugin)

        try:
            impl.function(register=register)
        except TeacherKindError:
            raise
        except Exception as exc:  # third-party code: a broken plugin leaves its kinds out, not the others
            warnings.warn(f"{plugin_label(plugin_name)} failed in register_teacher_loaders: {one_line(exc)}; its "
                          "teacher kinds are left out", KtNnunetWarning, stacklevel=3)
            continue
        found.update(mine)
    return found


def list_kinds() -> list[TeacherKind]:
    """Built-in kinds, then the plugins' (collected again whenever the plugin manager was rebuilt)."""
    from kt_nnunet.plugins.manager import get_plugin_manager

    global _kinds
    pm = get_plugin_manager()
    if _kinds[0] is not pm:
        _kinds = (pm, _collect())
    return list(_kinds[1].values())


def get_kind(name: str) -> TeacherKind:
    kinds = {kind.name: kind for kind in list_kinds()}
    if name in kinds:
        return kinds[name]
    close = difflib.get_close_matches(name, list(kinds), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise TeacherKindError(f"unknown teacher kind {name!r}{hint}; known kinds: {_listing()}")


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
    return get_kind("nnunet")  # a name under $nnUNet_results, or nothing: the model-folder error explains


def _listing() -> str:
    return "; ".join(f"{k.name} ({k.description})" if k.description else k.name for k in list_kinds())
