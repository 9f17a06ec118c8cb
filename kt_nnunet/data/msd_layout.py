"""Write a Medical Segmentation Decathlon (MSD) style task folder from the generator.

No package ships a real MSD task, so tests (and users who want to try ``import-msd``) make one: the
layout of ``Task09_Spleen`` (``imagesTr/spleen_1.nii.gz``, ``labelsTr/spleen_1.nii.gz``, ``imagesTs/``,
an MSD ``dataset.json`` with ``modality``, ``labels`` as ``{"0": "background"}``, ``training`` and
``test`` lists). With more than one channel the images are 4D NIfTIs, as in ``Task01_BrainTumour``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from kt_nnunet.data.atomic import staged_directory
from kt_nnunet.data.synth import synth_case
from kt_nnunet.data.synth_domain import DomainConfig
from kt_nnunet.data.synth_shapes import ShapeConfig
from kt_nnunet.nnunet.raw_dataset import write_image

SPLEEN_LIKE_SHAPES = ShapeConfig(shape=(8, 48, 48), spacing=(5.0, 1.0, 1.0), num_classes=2, radius_mm=14.0)


def write_msd_task(task_folder: str | Path, *, num_train: int = 4, num_test: int = 2,
                   shapes: ShapeConfig = SPLEEN_LIKE_SHAPES, domain: DomainConfig = DomainConfig(),
                   modalities: Sequence[str] = ("CT",), class_names: Optional[Sequence[str]] = None,
                   prefix: Optional[str] = None, seed: int = 0, force: bool = False) -> Path:
    """Write an MSD-format task (3D NIfTIs; 4D when ``len(modalities) > 1``) and return its folder.

    The folder name is used as given, so tests can also make badly named tasks (``Task10_Fake_Two``).
    """
    task_folder = Path(task_folder)
    if shapes.dim != 3:
        raise ValueError("MSD tasks hold 3D (or 4D multi-channel) NIfTIs; give a 3D ShapeConfig")
    prefix = prefix or task_folder.name.split("_", 1)[-1].lower().replace("_", "")
    if class_names is None:
        class_names = [prefix] if shapes.num_classes == 2 else [f"class{i}" for i in range(1, shapes.num_classes)]
    spacing = shapes.spacing_or_default()
    training, test = [], []
    with staged_directory(task_folder, force=force) as staging:
        for sub in ("imagesTr", "labelsTr", "imagesTs"):
            (staging / sub).mkdir()
        for index in range(num_train + num_test):
            role = "train" if index < num_train else "test"
            image, labels = synth_case(index, shapes, domain, seed, role, num_channels=len(modalities))
            name = f"{prefix}_{index + 1}.nii.gz"  # MSD numbers cases from 1, without channel suffix
            if role == "train":
                _write_msd_image(staging / "imagesTr" / name, image, spacing)
                write_image(staging / "labelsTr" / name, labels.astype(np.uint8), spacing)
                training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
            else:
                _write_msd_image(staging / "imagesTs" / name, image, spacing)
                test.append(f"./imagesTs/{name}")
        dataset_json = {
            "name": task_folder.name.split("_", 1)[-1],
            "description": "MSD-format task made by kt-nnunet's generator (synthetic)",
            "reference": "kt-nnunet", "licence": "CC0 (generated)", "release": "1.0",
            "tensorImageSize": "4D" if len(modalities) > 1 else "3D",
            "modality": {str(i): m for i, m in enumerate(modalities)},
            "labels": {"0": "background", **{str(i): n for i, n in enumerate(class_names, start=1)}},
            "numTraining": num_train, "numTest": num_test, "training": training, "test": test,
            "kt_nnunet": {"generator": "kt_nnunet.data.msd_layout", "seed": seed},  # so --force may replace it
        }
        (staging / "dataset.json").write_text(json.dumps(dataset_json, indent=4))
    return task_folder


def _write_msd_image(path: Path, image: np.ndarray, spacing: Sequence[float]) -> None:
    if image.shape[0] == 1:
        write_image(path, image[0], spacing)
    else:  # 4D: SimpleITK array order (channel, z, y, x) -> NIfTI x, y, z, channel
        write_image(path, image, (1.0, *spacing))
