"""The base class of every error kt-nnunet reports to a user as one clear message (no traceback), and the
"did you mean" hint such messages share."""
from __future__ import annotations

import difflib
from typing import Iterable, Optional


class KtNnunetError(Exception):
    """A problem with the user's input or environment; the message names the file/key and the fix."""

    def __str__(self) -> str:  # KeyError subclasses would otherwise repr() the message
        return str(self.args[0]) if self.args else ""


REPORTED = "kt_nnunet_reported"


def mark_reported(exc: BaseException) -> None:
    """Say that ``exc`` has been shown to the user already (the experiment console's failure block)."""
    try:
        setattr(exc, REPORTED, True)
    except AttributeError:  # an exception type with __slots__: shown twice rather than lost
        pass


def was_reported(exc: BaseException) -> bool:
    return bool(getattr(exc, REPORTED, False))


def closest(name: str, choices: Iterable[str]) -> Optional[str]:
    matches = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.5)
    return matches[0] if matches else None


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    match = closest(name, choices)
    return f"; did you mean {match!r}?" if match else ""


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line, for reporting an exception raised by a plugin's code (pluggy's and PyTorch's
    messages span lines)."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


class KtNnunetWarning(UserWarning):
    """Something works but is probably not what was meant (e.g. a plugin that implements no hook, or one left out
    because it is broken); the CLI prints it as one ``warning:`` line."""
