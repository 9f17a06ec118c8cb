"""The base class of every error kt-nnunet reports to a user as one clear message (no traceback)."""


class KtNnunetError(Exception):
    """A problem with the user's input or environment; the message names the file/key and the fix."""

    def __str__(self) -> str:  # KeyError subclasses would otherwise repr() the message
        return str(self.args[0]) if self.args else ""


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line, for reporting an exception raised by a plugin's code (pluggy's and PyTorch's
    messages span lines)."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


class KtNnunetWarning(UserWarning):
    """Something works but is probably not what was meant (e.g. a plugin that implements no hook, or one left out
    because it is broken); the CLI prints it as one ``warning:`` line."""
