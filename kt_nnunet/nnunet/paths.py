"""nnU-Net's folder variables, read at each use as nnU-Net itself does."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, Mapping, Optional

from kt_nnunet.errors import KtNnunetError

NNUNET_FOLDER_VARIABLES = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")


class NnUNetPathsError(KtNnunetError, RuntimeError):
    """An nnU-Net folder variable is needed but not set."""


def nnunet_folder(variable: str, create: bool = True) -> Path:
    """The folder named by ``variable`` (one of ``NNUNET_FOLDER_VARIABLES``), created if missing (``create``)."""
    value = os.environ.get(variable)
    if not value:
        raise NnUNetPathsError(
            f"{variable} is not set. Export it (e.g. `export {variable}=$PWD/{variable}`) or run "
            "`kt-nnunet env` to print the exports for all nnU-Net folders.")
    path = Path(value)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def raw_folder() -> Path:
    return nnunet_folder("nnUNet_raw")


def preprocessed_folder() -> Path:
    return nnunet_folder("nnUNet_preprocessed")


def results_folder() -> Path:
    return nnunet_folder("nnUNet_results")


def folder_if_set(variable: str) -> Optional[Path]:
    """The folder named by ``variable`` if it is set (nothing created), else None."""
    value = os.environ.get(variable)
    return Path(value) if value else None


def under_results(path: str | Path) -> Path:
    """``path`` itself if it exists; else ``nnUNet_results/path`` if that is a folder (a model folder given
    relative to the results, ``DatasetX/TRAINER__PLANS__CFG``); else ``path`` unchanged."""
    path = Path(path).expanduser()
    results = folder_if_set("nnUNet_results")
    if not path.exists() and not path.is_absolute() and results is not None and (results / path).is_dir():
        return results / path
    return path


def describe_folder(variable: str) -> str:
    """``nnUNet_results=/x`` or ``nnUNet_results=<unset>``, for messages."""
    return f"{variable}={os.environ.get(variable) or '<unset>'}"


@contextlib.contextmanager
def nnunet_folders(values: Mapping[str, str | Path]) -> Iterator[None]:
    """nnU-Net's folder variables set to ``values`` while the block runs, then restored (or unset again).

    nnU-Net reads them from the environment wherever it needs a folder, so they are set for the process; the
    block keeps a run's folders from leaking into whatever the process does afterwards."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            os.environ[name] = str(value)
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def find_raw_dataset(dataset) -> Optional[Path]:
    """The raw dataset folder ``dataset`` names: a folder path, an id (``501``, ``"501"``) or a folder name
    (``Dataset501_Name``) in ``$nnUNet_raw``; None if there is none (or ``nnUNet_raw`` is unset)."""
    path = Path(str(dataset)).expanduser()
    if path.is_dir():
        return path
    raw = folder_if_set("nnUNet_raw")
    if raw is None:
        return None
    if isinstance(dataset, int) or str(dataset).isdigit():
        found = sorted(raw.glob(f"Dataset{int(dataset):03d}_*"))
        return found[0] if found and found[0].is_dir() else None
    return raw / str(dataset) if str(dataset).startswith("Dataset") and (raw / str(dataset)).is_dir() else None
