"""Where a teacher lives and what kind it is: ``[KIND:]PATH[:FOLDS]``, parsed once for every stage.

A teacher is anything that gives class probabilities or label maps on the transferal images (see
``kinds.py``): a trained nnU-Net model folder (stock or kt-nnunet, any architecture, also relative to
``$nnUNet_results``), an exported ONNX / TorchScript network with its JSON sidecar, a folder of
predictions another tool wrote, or a kind a plugin adds. Without ``KIND:`` the kind is found from the
path. The spec is stored with an absolute path, so it means the same from the plans of an online student,
a labelling provenance or the command line.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from kt_nnunet.nnunet.model_folder import DEFAULT_CHECKPOINT, ModelFolderError
from kt_nnunet.nnunet.paths import describe_folder, under_results

MODEL_FOLDER_KIND = "nnunet"
_FOLDS_SUFFIX = re.compile(r"^(?P<path>.+):(?P<folds>\d+(?:,\d+)*|all)$")
_KIND_PREFIX = re.compile(r"^(?P<kind>[a-z][a-z0-9_\-]*):(?P<rest>.+)$")


@dataclass(frozen=True)
class TeacherSpec:
    """A teacher's kind and absolute path, the folds to use (None: all it holds), the checkpoint file of a
    model folder, the checkpoints' sha256 when recorded (then a changed file is refused at load), and an
    explicit sidecar for an exported network (None: the one beside it)."""

    path: Path
    folds: Optional[tuple] = None
    checkpoint: str = DEFAULT_CHECKPOINT
    checkpoint_sha256: Optional[dict] = None
    kind: str = MODEL_FOLDER_KIND
    sidecar: Optional[Path] = None

    @property
    def folder(self) -> Path:
        """A model folder teacher's folder (the name the model-folder code uses)."""
        return self.path

    @classmethod
    def parse(cls, text, checkpoint: str = DEFAULT_CHECKPOINT, sidecar=None) -> "TeacherSpec":
        """``[KIND:]PATH[:FOLDS]``, e.g. ``DIR``, ``DIR:0,1``, ``onnx:net.onnx``, ``predictions:DIR`` (a spec is
        returned as it is). An unknown ``KIND:`` or a path no kind claims, or several do, is one error."""
        from kt_nnunet.teachers.kinds import detect_kind, get_kind

        if isinstance(text, TeacherSpec):
            return text
        text, folds, kind = str(text), None, None
        prefix = _KIND_PREFIX.match(text)
        if prefix and not Path(text).exists():
            kind = get_kind(prefix["kind"]).name  # unknown kinds are refused with the list of known ones
            text = prefix["rest"]
        match = _FOLDS_SUFFIX.match(text)
        if match and not Path(text).exists():  # a folder whose name ends in ":0" stays a folder
            text = match["path"]
            folds = None if match["folds"] == "all" else tuple(int(f) for f in match["folds"].split(","))
        path = Path(text).expanduser()
        if kind is None:
            kind = detect_kind(path).name
        if kind == MODEL_FOLDER_KIND:
            path = resolve_model_folder(text)
        elif not path.exists():
            raise ModelFolderError(f"{kind} teacher {text} does not exist")
        return cls(path.absolute(), folds, checkpoint, None, kind,
                   Path(sidecar).expanduser().absolute() if sidecar is not None else None)

    def __str__(self) -> str:
        text = str(self.path) if self.kind == MODEL_FOLDER_KIND else f"{self.kind}:{self.path}"
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


def resolve_model_folder(text: str) -> Path:
    """The absolute model folder ``text`` names (a path, or one relative to ``$nnUNet_results``)."""
    path = Path(text).expanduser()
    if path.is_file():
        raise ModelFolderError(f"teacher {text} is a file, not a model folder; give the folder holding plans.json, "
                               "dataset.json and fold_N/ (nnUNet_results/DatasetX/TRAINER__PLANS__CFG), or an "
                               "exported network as onnx:FILE / torchscript:FILE with its JSON sidecar")
    if not path.is_dir():
        path = under_results(path)
    if not path.is_dir():
        raise ModelFolderError(f"teacher model folder {text} does not exist (also not under "
                               f"{describe_folder('nnUNet_results')}); give the folder holding plans.json, "
                               "dataset.json and fold_N/")
    return path.absolute()
