"""The labelled dataset on disk: resumable, shardable, and never half-written.

A run works in a hidden folder beside the target, ``.kt-label-DatasetNNN_Name/`` (nnU-Net lists only
``Dataset*`` folders, so it never sees it). Every file is written under a temporary name and renamed
into place; a case counts as finished only when its record ``.kt-state/cases/<case>.json`` exists,
which is written last. When all cases have records, the run writes ``dataset.json`` and
``provenance.json`` and renames the folder to ``DatasetNNN_Name`` in one step.

So a killed run leaves only the hidden folder, and the next run with the same settings skips the
finished cases. Several processes (``--num-parts``, torchrun ranks) share the folder: each writes its own
cases, and whichever finishes last finalises it (a lock file keeps that to one process).

Parts started in the same instant must not undo each other's start: the work folder appears complete (its
sub-folders and ``settings.json`` built in a hidden staging folder, then renamed), and deciding whether to
join, create or discard it happens under a lock beside it, so no part removes a folder another part has just
made.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from kt_nnunet.atomic_files import (atomic_file, atomic_write_text, directory_mode, pid_alive, remove_leftovers,
                                    temporary_path)
from kt_nnunet.data.atomic import STAGING_PREFIX, check_target_free, remove_stale_staging
from kt_nnunet.labelling.errors import OutputStateError

WORK_PREFIX = ".kt-label-"
STATE_DIR = ".kt-state"
SETTINGS_FILE = "settings.json"
PROVENANCE_FILE = "provenance.json"
LOCK_FILE = "finalize.lock"
PREPARE_LOCK_SUFFIX = ".lock"
PROBABILITIES_DIR = "probabilitiesTr"


def settings_fingerprint(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing, removed on release).

    ``flock`` is released by the kernel when its holder dies, so a killed part never blocks the next one. A
    waiter that wakes up on a file its predecessor already removed locks the new one instead.
    """
    try:
        import fcntl
    except ImportError:  # no flock (Windows): the atomic creation alone keeps parts from clashing
        yield
        return
    while True:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.path.samestat(os.stat(path), os.fstat(fd)):
                    break
            except FileNotFoundError:
                pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def _discard(folder: Path) -> None:
    """Remove ``folder``, renaming it away first so that a kill midway leaves no half-deleted work folder."""
    old = Path(tempfile.mkdtemp(prefix=f".kt-old-{folder.name}-pid{os.getpid()}-", dir=folder.parent))
    with contextlib.suppress(FileNotFoundError):
        os.replace(folder, old / folder.name)
    shutil.rmtree(old, ignore_errors=True)


class LabelledDatasetWriter:
    """The target dataset folder and its hidden work folder for one set of labelling settings."""

    def __init__(self, target: Path, settings: dict, file_ending: str):
        self.target = Path(target).absolute()
        self.work = self.target.parent / f"{WORK_PREFIX}{self.target.name}"
        self.settings = settings
        self.fingerprint = settings_fingerprint(settings)
        self.file_ending = file_ending

    # ------------------------------------------------------------------ state
    @property
    def state(self) -> Path:
        return self.work / STATE_DIR

    def target_is_complete(self) -> bool:
        """The target exists and was labelled with these very settings (nothing left to do)."""
        provenance = self.target / PROVENANCE_FILE
        if not provenance.is_file():
            return False
        with contextlib.suppress(json.JSONDecodeError, KeyError):
            return json.loads(provenance.read_text())["settings_fingerprint"] == self.fingerprint
        return False

    def prepare(self, force: bool) -> bool:
        """Make the work folder ready; return False when the target is already complete (nothing to do).

        An existing target or unfinished run with *different* settings is replaced only with ``force``
        (an unfinished run without a finished case is replaced anyway); one with the same settings is kept
        (its labels would come out identical).
        """
        check_target_free(self.target, force=True)  # id clashes, and folders kt-nnunet did not write
        if self.target_is_complete():
            return False
        if self.target.exists() and not force:
            raise OutputStateError(
                f"{self.target} already exists and was not labelled with these settings; pass --force to replace "
                "it (it is replaced only when the new labelling finishes), or choose another --out")
        self.target.parent.mkdir(parents=True, exist_ok=True)
        with _exclusive_lock(self.target.parent / f"{self.work.name}{PREPARE_LOCK_SUFFIX}"):
            remove_stale_staging(self.target.parent)
            settings_file = self.state / SETTINGS_FILE
            if settings_file.is_file():
                try:
                    existing = json.loads(settings_file.read_text())
                except json.JSONDecodeError:
                    existing = None
                # A run that finished no case holds nothing to lose (e.g. a refused option): start it afresh.
                if existing != self.settings:
                    if not force and self.finished_cases():
                        raise OutputStateError(
                            f"{self.work} holds an unfinished labelling run with other settings (teachers, fusion, "
                            "TTA, images...); re-run with those settings to resume it, or pass --force to discard it")
                    _discard(self.work)
            elif self.work.exists():  # no settings: not made by this version's atomic creation, so nobody's
                _discard(self.work)
            if not self.work.exists():
                self._create_work()
            remove_leftovers(self.work, only_dead=True)
        return True

    def _create_work(self) -> None:
        """Build the work folder in a staging folder and rename it into place, so it is never seen half made."""
        staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{self.work.name}-pid{os.getpid()}-",
                                        dir=self.target.parent))
        try:
            os.chmod(staging, directory_mode())  # mkdtemp made it private; the dataset gets the usual mode
            for sub in ("imagesTr", "labelsTr", f"{STATE_DIR}/cases"):
                (staging / sub).mkdir(parents=True)
            atomic_write_text(staging / STATE_DIR / SETTINGS_FILE,
                              json.dumps(self.settings, indent=1, sort_keys=True))
            try:
                os.rename(staging, self.work)
            except OSError:
                if not (self.state / SETTINGS_FILE).is_file():
                    raise
                # Without flock another part may have won the rename: its folder is as good as ours.
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def finished_cases(self) -> set:
        folder = self.state / "cases"
        return {p.stem for p in folder.glob("*.json")} if folder.is_dir() else set()

    def record(self, case: str) -> dict:
        return json.loads((self.state / "cases" / f"{case}.json").read_text())

    # ------------------------------------------------------------------ one case
    def image_path(self, case: str, channel: int) -> Path:
        return self.work / "imagesTr" / f"{case}_{channel:04d}{self.file_ending}"

    def label_path(self, case: str) -> Path:
        return self.work / "labelsTr" / f"{case}{self.file_ending}"

    def place_image(self, source: Path, case: str, channel: int, link: bool) -> None:
        """Hard-link (or copy) one image file under its nnU-Net name, atomically."""
        destination = self.image_path(case, channel)
        if link and destination.exists() and os.path.samefile(source, destination):
            return  # linked by an interrupted earlier run (renaming a link onto itself would do nothing)
        tmp = temporary_path(destination, keep_ending=True)
        try:
            if not link:
                raise OSError
            os.link(source, tmp)
        except OSError:  # other file system, or copies asked for
            shutil.copyfile(source, tmp)
        os.replace(tmp, destination)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()  # still there only if tmp and destination were already the same file

    def write_label(self, case: str, write) -> None:
        """``write(path)`` writes the label file (with nnU-Net's writer); it lands atomically."""
        with atomic_file(self.label_path(case), keep_ending=True) as tmp:
            write(tmp)

    def write_probabilities(self, case: str, probabilities: np.ndarray) -> None:
        """Soft labels as float16 ``probabilitiesTr/<case>.npz`` (key ``probabilities``, ``(C, *spatial)``)."""
        with atomic_file(self.work / PROBABILITIES_DIR / f"{case}.npz", keep_ending=True) as tmp:
            np.savez_compressed(tmp, probabilities=probabilities.astype(np.float16))

    def finish_case(self, case: str, record: dict) -> None:
        atomic_write_text(self.state / "cases" / f"{case}.json", json.dumps(record, sort_keys=True))

    # ------------------------------------------------------------------ the end
    def _acquire_finalize_lock(self) -> bool:
        """One process finalises; a lock left by a killed process (its pid is gone) is taken over."""
        lock = self.state / LOCK_FILE
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    holder = int(lock.read_text() or "0")
                except (ValueError, FileNotFoundError):
                    holder = 0
                if holder and pid_alive(holder):
                    return False
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()
                continue
            except FileNotFoundError:  # the work folder was finalised meanwhile
                return False
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            return True
        return False

    def finalize(self, all_cases, write_metadata) -> bool:
        """If every case is finished: ``write_metadata(work_folder, records)``, then rename into place.

        Returns True when this call (or an earlier one) completed the dataset.
        """
        if not self.work.exists():
            return self.target_is_complete()
        if set(all_cases) - self.finished_cases():
            return False
        if not self._acquire_finalize_lock():
            return self.target_is_complete()
        try:
            records = {case: self.record(case) for case in sorted(all_cases)}
            write_metadata(self.work, records)
            remove_leftovers(self.work, only_dead=True)
            # A run killed while writing provenance.json left its temporary file here; it must not be published.
            remove_leftovers(self.work)
            if self.target.exists():
                old = Path(tempfile.mkdtemp(prefix=f".kt-old-{self.target.name}-pid{os.getpid()}-",
                                            dir=self.target.parent))
                os.replace(self.target, old / self.target.name)
                os.replace(self.work, self.target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(self.work, self.target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                (self.state / LOCK_FILE).unlink()
            raise
        shutil.rmtree(self.target / STATE_DIR, ignore_errors=True)
        return True
