"""Atomic writes: build in a hidden temporary folder beside the target, then move it into place.

A dataset is either absent or complete: an exception (or Ctrl-C) removes the temporary folder, and a
``kill -9`` leaves only a hidden ``.kt-tmp-*`` folder that nnU-Net never lists (it looks for
``Dataset*``) and that the next write to the same parent removes. An existing target is replaced only
with ``force=True``, and only if kt-nnunet wrote it (:func:`check_replaceable`).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from kt_nnunet.atomic_files import directory_mode, pid_alive, remove_leftovers
from kt_nnunet.nnunet.raw_dataset import DatasetExistsError

STAGING_PREFIX = ".kt-tmp-"
_STAGING_PID = re.compile(r"^\.kt-(?:tmp|old)-.*-pid(?P<pid>\d+)-")


def remove_stale_staging(parent: Path) -> None:
    """Delete staging folders left in ``parent`` by killed kt-nnunet processes (their pid is gone)."""
    if not parent.is_dir():
        return
    for entry in parent.iterdir():
        match = _STAGING_PID.match(entry.name)
        if match and entry.is_dir() and not pid_alive(int(match["pid"])):
            shutil.rmtree(entry, ignore_errors=True)


def written_by_kt_nnunet(folder: Path) -> bool:
    """Whether kt-nnunet wrote ``folder``: its dataset.json carries the ``kt_nnunet`` record that every kt-nnunet
    writer adds, or its provenance.json is one of ``kt-nnunet label``'s."""
    for name, mark in (("dataset.json", "kt_nnunet"), ("provenance.json", "settings_fingerprint")):
        with contextlib.suppress(OSError, ValueError):
            content = json.loads((Path(folder) / name).read_text())
            if isinstance(content, dict) and mark in content:
                return True
    return False


def check_replaceable(target: Path) -> None:
    """``--force`` replaces only what kt-nnunet wrote (or an empty folder): never a dataset made by hand."""
    target = Path(target)
    if not target.exists() or (target.is_dir() and written_by_kt_nnunet(target)):
        return
    files = [target] if not target.is_dir() else [p for p in target.rglob("*") if p.is_file()]
    if not files:
        return
    raise DatasetExistsError(
        f"{target} was not written by kt-nnunet (no kt-nnunet provenance.json or dataset.json 'kt_nnunet' record), "
        f"so replacing it would delete its {len(files)} file(s), e.g. hand-made labels; move it elsewhere, or "
        "choose another output folder (--out) / dataset id")


def check_target_free(target: Path, force: bool, only_ours: bool = True) -> None:
    """Refuse an existing ``target`` (and, for ``DatasetNNN_*`` folders, another name with the same id).

    With ``force`` it may be replaced, but only if kt-nnunet wrote it (``only_ours=False``: a folder kt-nnunet
    owns whatever it holds, such as a download cache).
    """
    target = Path(target)
    if only_ours:
        check_replaceable(target)  # first: --force would not help, so the message must not suggest it
    if target.exists() and not force:
        raise DatasetExistsError(f"{target} already exists; pass --force (force=True) to replace it, or choose "
                                 "another output folder / dataset id")
    match = re.match(r"^Dataset(\d{3})_", target.name)
    if match and target.parent.is_dir():
        clashes = sorted(p.name for p in target.parent.glob(f"Dataset{match[1]}_*") if p.name != target.name)
        if clashes:
            raise DatasetExistsError(f"{target.parent / clashes[0]} already uses dataset id {int(match[1])}; "
                                     "nnU-Net needs ids to be unique: choose another id (or delete that folder)")


@contextlib.contextmanager
def staged_directory(target: str | Path, force: bool = False, only_ours: bool = True) -> Iterator[Path]:
    """Yield an empty hidden folder beside ``target``; on success it replaces ``target`` in one rename
    (see :func:`check_target_free` for ``force`` and ``only_ours``)."""
    target = Path(target).absolute()
    check_target_free(target, force, only_ours)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(target.parent)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{target.name}-pid{os.getpid()}-", dir=target.parent))
    try:
        yield staging
        remove_leftovers(staging)
        os.chmod(staging, directory_mode())  # mkdtemp made it private; give it the usual permissions
        check_target_free(target, force, only_ours)  # it may have appeared while we were writing
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".kt-old-{target.name}-pid{os.getpid()}-", dir=target.parent))
            os.replace(target, old / target.name)
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
