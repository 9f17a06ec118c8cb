"""Fetch the TotalSegmentator 2.18.0 sdist from PyPI (pinned, sha256-checked) and cache its CT/MR reference files.

The abdominal CT and MR example images (and their labels) are only in the sdist's
``tests/reference_files/``; the wheel does not have them. ``pip download`` is the ordinary client for
PyPI, so it fetches the sdist; kt-nnunet checks the archive's sha256, extracts the four files it
needs plus the licence, and caches them under ``$KT_NNUNET_CACHE`` (default ``~/.cache/kt-nnunet``).
Offline, ``FetchError`` explains what failed and how to provide the sdist by hand.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Optional

from kt_nnunet.data.atomic import staged_directory
from kt_nnunet.checksums import sha256_of
from kt_nnunet.errors import KtNnunetError

TOTALSEG_VERSION = "2.18.0"
TOTALSEG_SHA256 = "5d4223ef93973bc36d710869d11e7742ead2c154c72f7f9edcaaadd5b6c4bd03"
TOTALSEG_SDIST = f"totalsegmentator-{TOTALSEG_VERSION}.tar.gz"
TOTALSEG_FILES = {  # cache name -> path inside the sdist
    "example_ct_sm.nii.gz": "tests/reference_files/example_ct_sm.nii.gz",
    "example_seg.nii.gz": "tests/reference_files/example_seg.nii.gz",
    "example_mr_sm.nii.gz": "tests/reference_files/example_mr_sm.nii.gz",
    "example_seg_mr.nii.gz": "tests/reference_files/example_seg_mr.nii.gz",
    "LICENSE": "LICENSE",
}


class FetchError(KtNnunetError):
    """The pinned data could not be fetched or failed its checksum."""


def cache_root() -> Path:
    return Path(os.environ.get("KT_NNUNET_CACHE") or Path.home() / ".cache" / "kt-nnunet")


def totalsegmentator_cache(cache_dir: Optional[str | Path] = None) -> Path:
    return Path(cache_dir) if cache_dir else cache_root() / f"totalsegmentator-{TOTALSEG_VERSION}"


def _is_complete(folder: Path) -> bool:
    marker = folder / "SOURCE.json"
    if not marker.is_file() or not all((folder / name).is_file() for name in TOTALSEG_FILES):
        return False
    try:
        return json.loads(marker.read_text()).get("sha256") == TOTALSEG_SHA256
    except json.JSONDecodeError:
        return False


def download_sdist(dest: Path, timeout_s: int = 300) -> Path:
    """``pip download`` the pinned sdist into ``dest``; FetchError with pip's last words when it fails."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--retries", "1",
               "--timeout", "20", "--disable-pip-version-check", "-q", "-d", str(dest),
               f"totalsegmentator=={TOTALSEG_VERSION}"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise FetchError(f"pip download of totalsegmentator=={TOTALSEG_VERSION} timed out after {timeout_s} s; "
                         "check the connection to PyPI or pass --sdist with a downloaded copy") from exc
    archive = dest / TOTALSEG_SDIST
    if result.returncode != 0 or not archive.is_file():
        tail = " ".join((result.stderr or result.stdout).strip().splitlines()[-2:])[-400:]
        raise FetchError(f"could not download totalsegmentator=={TOTALSEG_VERSION} from PyPI ({tail or 'no output'})"
                         f"; without PyPI, get {TOTALSEG_SDIST} on another machine and pass it with --sdist PATH "
                         "(kt-nnunet data crossmodality or scripts/fetch_totalsegmentator.py)")
    return archive


def extract_reference_files(archive: Path, folder: Path) -> None:
    """Check ``archive``'s sha256, then copy the needed members (only those) into ``folder``."""
    digest = sha256_of(archive)
    if digest != TOTALSEG_SHA256:
        raise FetchError(f"{archive}: sha256 {digest} is not the pinned {TOTALSEG_SHA256} of {TOTALSEG_SDIST}; "
                         "delete it and fetch again (the file is corrupt or a different release)")
    prefix = f"totalsegmentator-{TOTALSEG_VERSION}/"
    with tarfile.open(archive, "r:gz") as tar:
        for name, member_path in TOTALSEG_FILES.items():
            try:
                member = tar.getmember(prefix + member_path)
            except KeyError as exc:
                raise FetchError(f"{archive} lacks {prefix + member_path}; this is not the expected sdist") from exc
            source = tar.extractfile(member)
            if source is None:
                raise FetchError(f"{archive}: {prefix + member_path} is not a regular file")
            with source, open(folder / name, "wb") as target:
                shutil.copyfileobj(source, target)
    (folder / "SOURCE.json").write_text(json.dumps(
        {"package": "totalsegmentator", "version": TOTALSEG_VERSION, "sdist": TOTALSEG_SDIST,
         "sha256": TOTALSEG_SHA256, "files": TOTALSEG_FILES,
         "note": "labels are TotalSegmentator's own predictions (tests/update_test_files.sh), not manual"},
        indent=2))


def fetch_totalsegmentator(cache_dir: Optional[str | Path] = None, sdist: Optional[str | Path] = None,
                           force: bool = False) -> Path:
    """The folder holding the cached CT/MR reference files; fetched (or taken from ``sdist``) if missing."""
    folder = totalsegmentator_cache(cache_dir)
    if _is_complete(folder) and not force:
        return folder
    with staged_directory(folder, force=True, only_ours=False) as staging:  # our cache, complete or not
        if sdist is not None:
            extract_reference_files(Path(sdist), staging)
        else:
            with tempfile.TemporaryDirectory(prefix="kt-totalseg-") as download:
                extract_reference_files(download_sdist(Path(download)), staging)
    return folder
