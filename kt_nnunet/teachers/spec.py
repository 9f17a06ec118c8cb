"""Where a teacher lives: ``DIR``, ``DIR:0,1`` or ``DIR:all``, parsed once for every stage.

A teacher is any trained nnU-Net model folder (stock or kt-nnunet, any architecture), given as a path or
relative to ``$nnUNet_results``. The spec is stored with an absolute folder, so it means the same from the
plans of an online student, a labelling provenance or the command line.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from kt_nnunet.nnunet.model_folder import DEFAULT_CHECKPOINT, ModelFolderError
from kt_nnunet.nnunet.paths import describe_folder, under_results

_FOLDS_SUFFIX = re.compile(r"^(?P<folder>.+):(?P<folds>\d+(?:,\d+)*|all)$")


@dataclass(frozen=True)
class TeacherSpec:
    """A model folder, the folds to use (None: every fold with a checkpoint), the checkpoint file, and the
    checkpoints' sha256 when recorded (then a changed file is refused at load)."""

    folder: Path
    folds: Optional[tuple] = None
    checkpoint: str = DEFAULT_CHECKPOINT
    checkpoint_sha256: Optional[dict] = None

    @classmethod
    def parse(cls, text, checkpoint: str = DEFAULT_CHECKPOINT) -> "TeacherSpec":
        """``DIR``, ``DIR:0,1`` or ``DIR:all`` (a spec is returned as it is)."""
        if isinstance(text, TeacherSpec):
            return text
        text, folds = str(text), None
        match = _FOLDS_SUFFIX.match(text)
        if match and not Path(text).exists():  # a folder whose name ends in ":0" stays a folder
            text = match["folder"]
            folds = None if match["folds"] == "all" else tuple(int(f) for f in match["folds"].split(","))
        return cls(resolve_model_folder(text), folds, checkpoint)

    def __str__(self) -> str:
        return str(self.folder) if self.folds is None else f"{self.folder}:{','.join(map(str, self.folds))}"

    def to_json(self) -> dict:
        return {"model_folder": str(self.folder), "folds": list(self.folds) if self.folds is not None else None,
                "checkpoint": self.checkpoint, "checkpoint_sha256": self.checkpoint_sha256}

    @classmethod
    def from_json(cls, entry) -> "TeacherSpec":
        """What :meth:`to_json` wrote (or a bare folder string, as hand-written plans may hold)."""
        entry = {"model_folder": entry} if isinstance(entry, str) else dict(entry)
        folds = entry.get("folds")
        return cls(Path(entry["model_folder"]), tuple(folds) if folds is not None else None,
                   entry.get("checkpoint") or DEFAULT_CHECKPOINT, entry.get("checkpoint_sha256"))


def resolve_model_folder(text: str) -> Path:
    """The absolute model folder ``text`` names (a path, or one relative to ``$nnUNet_results``)."""
    path = Path(text).expanduser()
    if path.is_file():
        raise ModelFolderError(f"teacher {text} is a file, not a model folder; give the folder holding plans.json, "
                               "dataset.json and fold_N/ (nnUNet_results/DatasetX/TRAINER__PLANS__CFG)")
    if not path.is_dir():
        path = under_results(path)
    if not path.is_dir():
        raise ModelFolderError(f"teacher model folder {text} does not exist (also not under "
                               f"{describe_folder('nnUNet_results')}); give the folder holding plans.json, "
                               "dataset.json and fold_N/")
    return path.absolute()
