"""Errors about teachers; each message names the teacher (its folder) and the fix."""
from __future__ import annotations

from kt_nnunet.errors import KtNnunetError


class TeacherError(KtNnunetError):
    """A teacher cannot be used as asked."""


class TeacherMismatchError(TeacherError):
    """A teacher does not fit what it meets: the other teachers (labels, channels, image reader) or the
    student's data (labels, channels, preprocessing)."""


class TeacherSettingsError(TeacherError):
    """The teachers' settings (the plans key ``kt_online``, fusion options) are missing or malformed."""


class LabelMapError(TeacherError):
    """A ``--label-map`` is malformed or does not reconcile the teachers."""


class TeacherKindError(TeacherError):
    """A teacher's kind is unknown, cannot be told from its path, or two plugins register one kind name."""


class PredictionsFolderError(TeacherError):
    """A predictions-folder teacher lacks a case, its labels, or has a file that does not fit its image."""
