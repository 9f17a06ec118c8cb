"""The JSON beside an exported network: everything needed to predict without the model folder.

``format`` is the version of this layout; readers refuse versions they do not know. Network files are
stored relative to the sidecar, so an export folder can be moved or copied as a whole.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from kt_nnunet.errors import KtNnunetError

SIDECAR_FORMAT = 1
SIDECAR_KIND = "kt-nnunet-export"
NETWORK_SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}


class ExportedModelError(KtNnunetError):
    """An exported model (network file or its JSON sidecar) is missing, unreadable or from another version."""


def sidecar_of(path: str | Path) -> Path:
    """The sidecar for ``--model PATH``: the JSON itself, ``NAME.json`` beside ``NAME[_fold<K>].onnx``, a folder's."""
    path = Path(path)
    if path.suffix == ".json":
        return path
    if path.is_dir():
        found = [p for p in sorted(path.glob("*.json")) if _is_sidecar(p)]
        if len(found) != 1:
            raise ExportedModelError(f"{path} holds {len(found)} kt-nnunet export sidecars; pass the .json or the "
                                     "network file itself")
        return found[0]
    own = path.with_suffix(".json")
    fold = re.fullmatch(r"(?P<stem>.+)_fold\d+", path.stem)
    if not own.is_file() and fold:  # NAME_fold<K>.onnx belongs to NAME.json
        return path.with_name(fold["stem"] + ".json")
    return own


def _is_sidecar(path: Path) -> bool:
    try:
        return json.loads(path.read_text()).get("kind") == SIDECAR_KIND
    except (OSError, ValueError, AttributeError):
        return False


def network_file(sidecar: Path, format: str, fold: int, num_folds: int) -> Path:
    """``NAME.onnx`` for one fold, ``NAME_fold<K>.onnx`` for each of several."""
    stem = sidecar.with_suffix("").name
    suffix = NETWORK_SUFFIXES[format]
    return sidecar.with_name(f"{stem}{suffix}" if num_folds == 1 else f"{stem}_fold{fold}{suffix}")


def read_sidecar(path: str | Path) -> dict:
    path = sidecar_of(path)
    if not path.is_file():
        raise ExportedModelError(f"{path} is missing: an exported network needs the JSON that `kt-nnunet export` "
                                 "writes beside it (same name, .json); export the model folder again")
    try:
        sidecar = json.loads(path.read_text())
    except ValueError as exc:
        raise ExportedModelError(f"{path} is not valid JSON ({exc}); export the model folder again") from exc
    if not isinstance(sidecar, dict) or sidecar.get("kind") != SIDECAR_KIND:
        raise ExportedModelError(f"{path} is not a kt-nnunet export sidecar (no \"kind\": \"{SIDECAR_KIND}\")")
    if sidecar.get("format") != SIDECAR_FORMAT:
        raise ExportedModelError(f"{path} has sidecar format {sidecar.get('format')!r}; this kt-nnunet reads format "
                                 f"{SIDECAR_FORMAT}. Export the model folder again with this version")
    for fold, name in sidecar["networks"].items():
        if not (path.parent / name).is_file():
            raise ExportedModelError(f"{path.parent / name} (fold {fold}) is missing; copy the whole export folder "
                                     "or export the model folder again")
    sidecar["_path"] = str(path)
    return sidecar
