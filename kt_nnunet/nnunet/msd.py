"""Medical Segmentation Decathlon import through nnU-Net's own converter.

``nnunetv2.dataset_conversion.convert_MSD_dataset.convert_msd_dataset`` does the real work (splitting
4D NIfTIs into ``_0000``, ``_0001``, ..., inverting ``labels``, renaming ``modality`` to
``channel_names``). kt-nnunet adds what the converter lacks:

- its rules checked up front with one clear message each: the folder name must split on ``_`` into
  exactly ``TaskNN`` and ``Name`` (it does ``task, name = basename.split('_')``, so ``Task10_Fake_Two``
  dies with ``ValueError: too many values to unpack``), the subfolders and dataset.json keys it reads;
- an atomic result: the converter writes into a private ``nnUNet_raw`` (the caller's staging folder)
  and sees empty preprocessed/results folders, so its id check never trips over our own staging.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator, Optional

from kt_nnunet.nnunet.raw_dataset import (DatasetError, DatasetJsonError, EmptyFolderError, FileEndingError,
                                          MissingLabelError, visible_files)

MSD_REQUIRED_FOLDERS = ("imagesTr", "labelsTr", "imagesTs")
MSD_REQUIRED_KEYS = ("modality", "labels", "training", "test")


class MSDImportError(DatasetError):
    """The folder breaks one of nnU-Net's MSD converter rules."""


def parse_task_name(task_folder: str | Path) -> tuple[int, str]:
    """``Task09_Spleen`` -> ``(9, "Spleen")``, with nnU-Net's rule: exactly one ``_``."""
    base = Path(str(task_folder).rstrip("/\\")).name
    parts = base.split("_")
    match = re.fullmatch(r"Task(\d+)", parts[0])
    if len(parts) == 2 and match and parts[1]:
        return int(match[1]), parts[1]
    if match and len(parts) > 2:
        fix = f"rename it to {parts[0]}_{''.join(parts[1:])}"
    else:
        fix = "rename it like Task09_Spleen (Task + number, one '_', a name without '_')"
    raise MSDImportError(f"{task_folder}: nnU-Net's MSD converter needs the folder name TaskNN_Name with exactly "
                         f"one '_' (it splits the name on '_' into two parts); {fix}")


def check_msd_folder(task_folder: str | Path) -> dict:
    """Check what the converter reads; return the MSD dataset.json content."""
    folder = Path(task_folder)
    if not folder.is_dir():
        raise MSDImportError(f"{folder} is not a folder; give the path of an MSD TaskNN_Name folder")
    parse_task_name(folder)
    for sub in MSD_REQUIRED_FOLDERS:
        if not (folder / sub).is_dir():
            fix = "create it empty if the task has no test images" if sub == "imagesTs" else "add it"
            raise MSDImportError(f"{folder / sub} is missing; nnU-Net's MSD converter needs imagesTr, labelsTr and "
                                 f"imagesTs: {fix}")
    path = folder / "dataset.json"
    if not path.is_file():
        raise DatasetJsonError(f"{path} is missing; an MSD task needs its dataset.json (modality, labels, "
                               "training, test)")
    try:
        content = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetJsonError(f"{path} is not valid JSON ({exc}); fix it") from exc
    missing = [k for k in MSD_REQUIRED_KEYS if k not in content]
    if missing:
        raise DatasetJsonError(f"{path} lacks the MSD key(s) {missing}; an MSD dataset.json has "
                               f"{list(MSD_REQUIRED_KEYS)} (is this already an nnU-Net v2 dataset? then copy it into "
                               "nnUNet_raw instead)")
    images = visible_files(folder / "imagesTr")
    if not images:
        raise EmptyFolderError(f"{folder / 'imagesTr'} holds no images; an MSD task has imagesTr/NAME_N.nii.gz")
    for sub in MSD_REQUIRED_FOLDERS:
        for file in visible_files(folder / sub):
            if not file.name.endswith(".nii.gz"):
                raise FileEndingError(f"{file}: MSD files must be .nii.gz (the converter skips anything else); "
                                      "convert it or remove it")
    labels = {p.name for p in visible_files(folder / "labelsTr")}
    for image in images:
        if image.name not in labels:
            raise MissingLabelError(f"{folder / 'labelsTr' / image.name} is missing: {image} has no label; add it "
                                    "or move the image to imagesTs")
    return content


@contextlib.contextmanager
def _private_nnunet_folders(raw_root: Path) -> Iterator[None]:
    """nnU-Net folder variables pointing at ``raw_root`` and two empty folders, restored afterwards."""
    from kt_nnunet.nnunet.paths import nnunet_folders

    with tempfile.TemporaryDirectory(prefix="kt-msd-") as scratch, nnunet_folders(
            {"nnUNet_raw": raw_root, "nnUNet_preprocessed": os.path.join(scratch, "preprocessed"),
             "nnUNet_results": os.path.join(scratch, "results")}):
        yield


def run_msd_converter(task_folder: str | Path, raw_root: str | Path, target_id: Optional[int] = None,
                      num_processes: int = 1) -> Path:
    """Run nnU-Net's converter with ``raw_root`` as ``nnUNet_raw``; return the dataset folder it wrote."""
    from nnunetv2.dataset_conversion.convert_MSD_dataset import convert_msd_dataset

    check_msd_folder(task_folder)
    task_id, name = parse_task_name(task_folder)
    target_id = task_id if target_id is None else int(target_id)
    raw_root = Path(raw_root)
    with _private_nnunet_folders(raw_root):
        try:
            convert_msd_dataset(str(Path(task_folder).absolute()), overwrite_target_id=target_id,
                                num_processes=max(1, int(num_processes)))
        except Exception as exc:  # e.g. a corrupt or 2D NIfTI inside the converter's worker pool
            raise MSDImportError(f"{task_folder}: nnU-Net's MSD converter failed: {type(exc).__name__}: {exc}. "
                                 "Fix or remove the file it names (MSD images are 3D or 4D .nii.gz).") from exc
    return raw_root / f"Dataset{target_id:03d}_{name}"
