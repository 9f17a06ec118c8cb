"""Errors of teacher labelling; each message names the teacher or file and the fix."""
from __future__ import annotations

from kt_nnunet.errors import KtNnunetError


class LabellingError(KtNnunetError):
    """Labelling cannot run as asked."""


class ChannelMismatchError(LabellingError):
    """A transferal image has a channel count the teachers do not take."""


class OutputStateError(LabellingError):
    """The output dataset, or an unfinished run, is in the way (different settings, existing dataset)."""
