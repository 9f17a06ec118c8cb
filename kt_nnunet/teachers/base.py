"""What every teacher kind gives labelling: its output labels, what images it takes, and class probabilities
on an image's own grid.

A teacher of any kind is opened from a :class:`~kt_nnunet.teachers.spec.TeacherSpec` by its
:class:`~kt_nnunet.teachers.kinds.TeacherKind`. Labelling reads each transferal image once, with the
teachers' image reader, and asks every teacher for ``probabilities(case, image, properties)``: a float32
``(K, *spatial)`` array on that image's grid, the classes ordered as ``labels``. A teacher that only has label
maps (``hard_labels``) returns them one-hot.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from kt_nnunet.teachers.spec import TeacherSpec


@dataclass(frozen=True)
class TeacherOptions:
    """How network teachers predict (a kind that does not run a network ignores these)."""

    device: torch.device = torch.device("cpu")
    tta: bool = True
    tile_step_size: float = 0.5


class Teacher(ABC):
    """One opened teacher. Subclasses set ``kind`` and implement the abstract members."""

    kind: str = ""
    hard_labels: bool = False  # True: label maps only; ``probabilities`` returns them one-hot

    def __init__(self, spec: TeacherSpec):
        self.spec = spec

    @property
    def forward_seconds(self) -> float:
        """Time spent in the teacher's network passes (0 for kinds without a network)."""
        return 0.0

    @property
    def name(self) -> str:
        """How messages name the teacher: ``[KIND:]PATH``."""
        return str(self.spec)

    @property
    @abstractmethod
    def labels(self) -> dict:
        """``{name: value}`` of the classes it outputs (background 0, then 1, 2, ...; no ``ignore``)."""

    @property
    def channel_names(self) -> Optional[dict]:
        """The input channels it takes, as in dataset.json; None for a teacher that takes no images."""
        return None

    @property
    def reader_name(self) -> Optional[str]:
        """The nnU-Net image reader whose axis order its outputs use; None: whichever reads the images."""
        return None

    @property
    def num_input_channels(self) -> Optional[int]:
        return len(self.channel_names) if self.channel_names is not None else None

    def use_image_reader(self, reader_writer) -> None:
        """The nnU-Net reader class labelling reads the images with (a kind that reads files of its own may use it)."""

    def check_cases(self, cases: dict) -> None:
        """Refuse, before anything is written, transferal cases (``{case: [files]}``) it cannot label."""

    @abstractmethod
    def probabilities(self, case: str, image: np.ndarray, properties: dict) -> np.ndarray:
        """Float32 ``(len(labels), *spatial)`` on the grid of ``image`` (as nnU-Net's reader returns it)."""

    @abstractmethod
    def fingerprint(self) -> dict:
        """Everything that decides its outputs, with file checksums: a labelling resumes only while this is equal."""

    def provenance(self) -> dict:
        """What the labelled dataset's provenance records about it."""
        return {"kind": self.kind, **self.fingerprint()}

    @staticmethod
    def file_record(path: Path) -> dict:
        from kt_nnunet.checksums import sha256_of

        return {"file": str(path), "sha256": sha256_of(path)}
