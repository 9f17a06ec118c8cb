"""``kt-nnunet data import-msd``: an MSD task into ``nnUNet_raw``, atomically, then checked.

nnU-Net's converter (wrapped in ``kt_nnunet.nnunet.msd``) writes into a hidden staging folder; the
result is validated with kt-nnunet's checks and only then moved into place as ``DatasetNNN_Name``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

from kt_nnunet.data.atomic import check_target_free, staged_directory
from kt_nnunet.nnunet.raw_validation import validate_dataset
from kt_nnunet.nnunet.msd import check_msd_folder, parse_task_name, run_msd_converter
from kt_nnunet.nnunet.raw_dataset import DatasetError, DatasetExistsError, nnunet_dataset_name


def _check_id_unused_elsewhere(dataset_id: int, name: str) -> None:
    """nnU-Net refuses ids that a differently named dataset uses in preprocessed or results."""
    for variable in ("nnUNet_preprocessed", "nnUNet_results"):
        root = os.environ.get(variable)
        if not root or not Path(root).is_dir():
            continue
        for other in Path(root).glob(f"Dataset{dataset_id:03d}_*"):
            if other.name != f"Dataset{dataset_id:03d}_{name}":
                raise DatasetExistsError(f"{other} already uses dataset id {dataset_id}; pick another id with "
                                         "--dataset-id (nnU-Net needs ids to be unique across its folders)")


def import_msd(task_folder: str | Path, dataset_id: Optional[int] = None, out: Optional[str | Path] = None,
               force: bool = False, num_processes: int = 1) -> Path:
    """Convert an MSD ``TaskNN_Name`` folder to ``{out}/DatasetNNN_Name`` (``out`` defaults to nnUNet_raw).

    ``dataset_id`` overrides the task number. Returns the new dataset folder.
    """
    check_msd_folder(task_folder)
    task_id, name = parse_task_name(task_folder)
    dataset_id = task_id if dataset_id is None else int(dataset_id)
    if out is None:
        from kt_nnunet.nnunet.paths import raw_folder

        out = raw_folder()
    target = Path(out) / nnunet_dataset_name(dataset_id, name)
    check_target_free(target, force)
    _check_id_unused_elsewhere(dataset_id, name)
    with staged_directory(target, force=force) as staging:
        converted = run_msd_converter(task_folder, staging, dataset_id, num_processes)
        for child in converted.iterdir():  # the converter made staging/DatasetNNN_Name/...: lift it up
            os.replace(child, staging / child.name)
        converted.rmdir()
        dataset_json_path = staging / "dataset.json"
        content = json.loads(dataset_json_path.read_text())
        content["kt_nnunet"] = {"role": "source", "labelled": True,
                                "imported_from": str(Path(task_folder).absolute()), "importer": "nnU-Net MSD"}
        dataset_json_path.write_text(json.dumps(content, indent=4))
        try:
            validate_dataset(staging, require_labels=True, check_test=True)
        except DatasetError as exc:  # name the converted files by where they would have gone
            raise type(exc)(f"{task_folder} after conversion: "
                            f"{str(exc).replace(str(staging), str(target))}") from exc
    return target
