"""Atomic file writes: a file is either as it was or completely written (fsynced, then renamed into place).

Every file kt-nnunet writes for others to read (plans, provenance, results, reports, checkpoints, labels,
segmentations) goes through :func:`atomic_file`. A kill leaves at most a hidden temporary file beside the
target: ``.NAME.<token>.tmp``, or, for writers that pick the format from the file's ending (nnU-Net's image
writers, NumPy), ``.tmp-pid<PID>-<token>-NAME``, which also says whose it is.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any, Iterator, Optional

PID_TEMPORARY_PREFIX = ".tmp-pid"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (its temporary files and folders are then not stale)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def directory_mode() -> int:
    """The mode a new folder gets from the umask (``mkdtemp`` makes folders private)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o777 & ~umask


def temporary_path(path: Path, keep_ending: bool = False) -> Path:
    """A new hidden name beside ``path`` (see the module docstring); nothing is created."""
    token = secrets.token_hex(4)
    if keep_ending:
        return path.parent / f"{PID_TEMPORARY_PREFIX}{os.getpid()}-{token}-{path.name}"
    return path.parent / f".{path.name}.{token}.tmp"


@contextlib.contextmanager
def atomic_file(path: str | Path, keep_ending: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write (by any writer); on success it is fsynced and renamed
    onto ``path``. An exception, Ctrl-C or kill leaves ``path`` as it was (a kill leaves the hidden temporary).
    ``keep_ending``: the temporary name ends like ``path`` (for writers that choose the format by it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path, keep_ending)
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))  # a unique name, the umask's mode
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder and an atomic rename."""
    with atomic_file(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def atomic_write_json(path: str | Path, content: Any, **dumps) -> Path:
    """``content`` as JSON (``indent=2`` unless ``dumps`` say otherwise), written atomically."""
    return atomic_write_text(path, json.dumps(content, **{"indent": 2, **dumps}))


def remove_leftovers(folder: str | Path, only_dead: bool = False) -> None:
    """Delete the temporary files that killed atomic writes left anywhere in ``folder``.

    ``only_dead``: only those that name a process that no longer runs (a folder others still write into).
    Otherwise all, also the ``.NAME.*.tmp`` ones that name no process: only for a folder nobody else writes
    into any more (a staging folder about to be published, a checkpoint folder while saving)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    leftovers = list(folder.rglob(f"{PID_TEMPORARY_PREFIX}*"))
    if only_dead:
        leftovers = [p for p in leftovers if _pid_of(p.name) is not None and not pid_alive(_pid_of(p.name))]
    else:
        leftovers += folder.rglob(".*.tmp")
    for leftover in leftovers:
        if leftover.is_file():
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def _pid_of(name: str) -> Optional[int]:
    head = name[len(PID_TEMPORARY_PREFIX):].split("-", 1)[0]
    return int(head) if head.isdigit() else None


@contextlib.contextmanager
def exclusive_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) while the body runs; waits for other holders.

    For work that two processes of one experiment may start at once on a shared folder (nnU-Net's preprocessing
    of a dataset two trainings need). The kernel releases the lock when its process ends, however it ends."""
    import fcntl

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
