"""A few labelled cases of a dataset as a dataset of their own (the fine-tuning set of the protocol).

The cases are chosen reproducibly from ``seed`` and copied byte for byte (images and labels), so the
subset keeps the source's geometry and file format; ``dataset.json`` is the source's with the new count
and a record of where the cases came from.
"""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Optional

from kt_nnunet.data.atomic import staged_directory
from kt_nnunet.nnunet.raw_dataset import DatasetError, load_dataset_json, nnunet_dataset_name

SPLIT_FOLDERS = {"train": ("imagesTr", "labelsTr"), "test": ("imagesTs", "labelsTs")}


def labelled_cases(dataset: Path, split: str = "train") -> list[str]:
    """Case ids of ``split`` that have a label file, sorted."""
    if split not in SPLIT_FOLDERS:
        raise DatasetError(f"split {split!r} is not one of {sorted(SPLIT_FOLDERS)}")
    ending = load_dataset_json(dataset)["file_ending"]
    labels = Path(dataset) / SPLIT_FOLDERS[split][1]
    if not labels.is_dir():
        raise DatasetError(f"{labels} does not exist; the {split} split of {dataset.name} has no labels to take "
                           "a labelled subset from")
    return sorted(p.name[:-len(ending)] for p in labels.iterdir() if p.name.endswith(ending))


def make_subset(dataset: str | Path, dataset_id: int, name: str, cases: int, seed: int = 0, split: str = "train",
                out: Optional[str | Path] = None, force: bool = False) -> Path:
    """Copy ``cases`` labelled cases of ``dataset`` (chosen with ``seed``) into ``Dataset{id}_{name}``."""
    dataset = Path(dataset)
    dataset_json = load_dataset_json(dataset)
    ending = dataset_json["file_ending"]
    available = labelled_cases(dataset, split)
    if not 1 <= cases <= len(available):
        raise DatasetError(f"asked for {cases} labelled cases but {dataset.name} has {len(available)} in its {split} "
                           "split; choose a number between 1 and that")
    chosen = sorted(random.Random(seed).sample(available, cases))
    if out is None:
        from kt_nnunet.nnunet.paths import raw_folder

        out = raw_folder()
    target = Path(out) / nnunet_dataset_name(dataset_id, name)
    images_src, labels_src = (dataset / folder for folder in SPLIT_FOLDERS[split])
    with staged_directory(target, force=force) as staging:
        (staging / "imagesTr").mkdir()
        (staging / "labelsTr").mkdir()
        for case in chosen:
            for image in sorted(images_src.glob(f"{case}_[0-9][0-9][0-9][0-9]{ending}")):
                shutil.copyfile(image, staging / "imagesTr" / image.name)
            shutil.copyfile(labels_src / f"{case}{ending}", staging / "labelsTr" / f"{case}{ending}")
        subset_json = {k: v for k, v in dataset_json.items() if k not in ("dataset", "numTest")}
        subset_json.update(numTraining=cases, name=target.name,
                           kt_nnunet={"role": "finetune", "subset_of": dataset.name, "split": split,
                                      "seed": seed, "cases": chosen})
        (staging / "dataset.json").write_text(json.dumps(subset_json, indent=2))
    return target
