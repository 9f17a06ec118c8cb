"""Where a teacher lives and what kind it is: ``[KIND:]PATH[:FOLDS]``, parsed once for every stage.

A teacher is anything that gives class probabilities or label maps on the transferal images (see
``kinds.py``): a trained nnU-Net model folder (stock or kt-nnunet, any architecture, also relative to
``$nnUNet_results``), an exported ONNX / TorchScript network with its JSON sidecar, a folder of
predictions another tool wrote, or a kind a plugin adds.

Parsing reads the text only, never the disk or the plugins, so a spec can be parsed anywhere (a config, a
command line, the plans of an online student). Without ``KIND:`` its kind is ``None`` until
:func:`kt_nnunet.teachers.kinds.resolve_kind` finds the kind that claims the path and makes the path absolute,
as opening a teacher does; a resolved spec means the same from any working directory.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from kt_nnunet.nnunet.model_folder import DEFAULT_CHECKPOINT

MODEL_FOLDER_KIND = "nnunet"
_FOLDS_SUFFIX = re.compile(r"^(?P<path>.+):(?P<folds>\d+(?:,\d+)*|all)$")
_KIND_PREFIX = re.compile(r"^(?P<kind>[a-z][a-z0-9_\-]*):(?P<rest>.+)$")


@dataclass(frozen=True)
class TeacherSpec:
    """A teacher's path and kind (None: not resolved yet, the kind that claims the path), the folds to use (None:
    all it holds), the checkpoint file of a model folder, the checkpoints' sha256 when recorded (then a changed
    file is refused at load), and an explicit sidecar for an exported network (None: the one beside it)."""

    path: Path
    folds: Optional[tuple] = None
    checkpoint: str = DEFAULT_CHECKPOINT
    checkpoint_sha256: Optional[dict] = None
    kind: Optional[str] = None
    sidecar: Optional[Path] = None

    @property
    def folder(self) -> Path:
        """A model folder teacher's folder (the name the model-folder code uses)."""
        return self.path

    @classmethod
    def parse(cls, text, checkpoint: str = DEFAULT_CHECKPOINT, sidecar=None) -> "TeacherSpec":
        """``[KIND:]PATH[:FOLDS]``, e.g. ``DIR``, ``DIR:0,1``, ``onnx:net.onnx``, ``predictions:DIR`` (a spec is
        returned as it is). The text alone decides: a leading ``name:`` is a kind and a trailing ``:0,1`` or
        ``:all`` folds, so a folder whose own name ends in ``:0`` is written ``DIR:0:all`` and one whose name
        starts with ``word:`` as ``./word:...``."""
        if isinstance(text, TeacherSpec):
            return text
        text, folds, kind = str(text), None, None
        prefix = _KIND_PREFIX.match(text)
        if prefix:
            kind, text = prefix["kind"], prefix["rest"]
        match = _FOLDS_SUFFIX.match(text)
        if match:
            text = match["path"]
            folds = None if match["folds"] == "all" else tuple(int(f) for f in match["folds"].split(","))
        return cls(Path(text).expanduser(), folds, checkpoint, None, kind,
                   Path(sidecar).expanduser().absolute() if sidecar is not None else None)

    def __str__(self) -> str:
        text = str(self.path) if self.kind in (None, MODEL_FOLDER_KIND) else f"{self.kind}:{self.path}"
        return text if self.folds is None else f"{text}:{','.join(map(str, self.folds))}"

    def to_json(self) -> dict:
        record = {"model_folder": str(self.path), "folds": list(self.folds) if self.folds is not None else None,
                  "checkpoint": self.checkpoint, "checkpoint_sha256": self.checkpoint_sha256}
        if self.kind != MODEL_FOLDER_KIND:
            record.update(kind=self.kind, sidecar=str(self.sidecar) if self.sidecar else None)
        return record

    @classmethod
    def from_json(cls, entry) -> "TeacherSpec":
        """What :meth:`to_json` wrote (or a bare folder string, as hand-written plans may hold)."""
        entry = {"model_folder": entry} if isinstance(entry, str) else dict(entry)
        folds = entry.get("folds")
        return cls(Path(entry["model_folder"]), tuple(folds) if folds is not None else None,
                   entry.get("checkpoint") or DEFAULT_CHECKPOINT, entry.get("checkpoint_sha256"),
                   entry.get("kind") or MODEL_FOLDER_KIND, Path(entry["sidecar"]) if entry.get("sidecar") else None)
