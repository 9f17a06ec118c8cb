"""The procedural dataset generator: multi-class 2D/3D datasets in nnU-Net raw format, deterministic by seed.

Every case is drawn from its own random stream, keyed by ``(seed, role, case index)``, so a case does
not depend on how many cases are made, and the label maps depend only on the geometry: two datasets
with the same seed and shapes but different ``DomainConfig`` have identical labels and differently
rendered images (a pure appearance shift). Use different seeds for independent anatomy.

Typical use in a test::

    from kt_nnunet.data import tiny_dataset
    folder = tiny_dataset(501, "Tiny", out=tmp_path)           # 6 + 2 cases of 64x64, 3 classes
"""
from __future__ import annotations

import dataclasses
from dataclasses import replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from kt_nnunet.data.atomic import staged_directory
from kt_nnunet.data.synth_domain import DomainConfig, apply_appearance, render
from kt_nnunet.data.synth_shapes import ShapeConfig, make_label_map
from kt_nnunet.nnunet.raw_dataset import (NATURAL_2D_ENDINGS, DatasetError, FileEndingError, image_name,
                                          nnunet_dataset_name, write_dataset_json, write_image)

ROLE_CODES = {"train": 0, "test": 1}


def _rng(seed: int, role: str, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), ROLE_CODES[role], int(index), stream])


def channel_domain(domain: DomainConfig, channel: int, num_classes: int) -> DomainConfig:
    """Channel 0 uses ``domain``; further channels show the same anatomy with rotated class intensities."""
    if channel == 0:
        return domain
    means = np.roll(domain.class_means(num_classes)[1:], channel)
    return replace(domain, class_intensities=(float(domain.class_means(num_classes)[0]), *map(float, means)))


def synth_case(index: int, shapes: ShapeConfig = ShapeConfig(), domain: DomainConfig = DomainConfig(),
               seed: int = 0, role: str = "train", num_channels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """One case: ``(image (C, *shape) float32, labels (*shape) uint8)``, a pure function of its arguments."""
    labels = make_label_map(shapes, _rng(seed, role, index, 0))
    spacing = shapes.spacing_or_default()
    appearance_rng = _rng(seed, role, index, 1)
    channels = []
    for channel in range(num_channels):
        config = channel_domain(domain, channel, shapes.num_classes)
        clean = render(labels, shapes.num_classes, config, appearance_rng, spacing)
        channels.append(apply_appearance(clean, config, appearance_rng, spacing))
    return np.stack(channels), labels


def _to_storage(image: np.ndarray, domain: DomainConfig, file_ending: str) -> np.ndarray:
    if file_ending in NATURAL_2D_ENDINGS:  # 8-bit natural image: undo the scale, clip to [0, 1]
        unit = (image - domain.intensity_offset) / (domain.intensity_scale or 1.0)
        return np.rint(np.clip(unit, 0, 1) * 255).astype(np.uint8)
    return image.astype(np.float32)


def write_case(folder: Path, case: str, image: np.ndarray, labels: Optional[np.ndarray], file_ending: str,
               spacing: Sequence[float], images_dir: str, labels_dir: Optional[str]) -> None:
    """Write one case's channels (and label) into ``folder/images_dir`` (and ``folder/labels_dir``)."""
    for channel, array in enumerate(image):
        write_image(folder / images_dir / image_name(case, channel, file_ending), array, spacing)
    if labels is not None and labels_dir is not None:
        write_image(folder / labels_dir / f"{case}{file_ending}", labels.astype(np.uint8), spacing)


def synth_dataset(dataset_id: int, name: str, out: Optional[str | Path] = None, *, num_train: int = 20,
                  num_test: int = 5, shapes: ShapeConfig = ShapeConfig(), domain: DomainConfig = DomainConfig(),
                  num_channels: int = 1, seed: int = 0, file_ending: str = ".nii.gz",
                  class_names: Optional[Sequence[str]] = None, channel_names: Optional[Sequence[str]] = None,
                  role: str = "source", labelled: bool = True, force: bool = False) -> Path:
    """Write ``Dataset{id:03d}_{name}`` (imagesTr, labelsTr, imagesTs, labelsTs, dataset.json) and return it.

    ``out`` is the folder that receives the dataset (default: ``$nnUNet_raw``). ``labelled=False`` writes
    no labelsTr (an images-only transferal set). The folder appears complete or not at all; an existing
    one is replaced only with ``force=True``.
    """
    shapes.check()
    if file_ending in NATURAL_2D_ENDINGS and shapes.dim != 2:
        raise FileEndingError(f"file ending {file_ending} holds 2D images only; use .nii.gz for 3D shapes")
    if num_channels < 1:
        raise DatasetError(f"num_channels={num_channels}: a dataset needs at least one image channel")
    if num_train < 1:
        raise DatasetError(f"num_train={num_train}: a dataset needs at least one training case")
    class_names = list(class_names or [f"class{i}" for i in range(1, shapes.num_classes)])
    if len(class_names) != shapes.num_classes - 1:
        raise DatasetError(f"{len(class_names)} class names for {shapes.num_classes - 1} foreground classes")
    channel_names = list(channel_names or [f"synthetic{c}" if c else "synthetic" for c in range(num_channels)])
    if out is None:
        from kt_nnunet.nnunet.paths import raw_folder

        out = raw_folder()
    target = Path(out) / nnunet_dataset_name(dataset_id, name)
    # .png stores no spacing: nnU-Net reads it as 1 mm, so record 1 mm to stay truthful.
    spacing = (1.0, 1.0) if file_ending in NATURAL_2D_ENDINGS else shapes.spacing_or_default()
    with staged_directory(target, force=force) as staging:
        parts = [("train", num_train, "imagesTr", "labelsTr" if labelled else None),
                 ("test", num_test, "imagesTs", "labelsTs")]
        for _, count, images_dir, labels_dir in parts:
            if count:
                (staging / images_dir).mkdir()
                if labels_dir:
                    (staging / labels_dir).mkdir()
        for case_role, count, images_dir, labels_dir in parts:
            prefix = "case" if case_role == "train" else "test"
            for index in range(count):
                image, labels = synth_case(index, shapes, domain, seed, case_role, num_channels)
                write_case(staging, f"{prefix}_{index:03d}", _to_storage(image, domain, file_ending), labels,
                           file_ending, spacing, images_dir, labels_dir)
        write_dataset_json(
            staging, {str(c): n for c, n in enumerate(channel_names)},
            {"background": 0, **{n: i for i, n in enumerate(class_names, start=1)}}, num_train, file_ending,
            dataset_name=target.name, description="Procedural dataset from kt-nnunet's generator",
            license="CC0 (generated)", converted_by="kt-nnunet data synth",
            kt_nnunet={"role": role, "labelled": labelled, "generator": "kt_nnunet.data.synth", "seed": seed,
                       "num_channels": num_channels, "shapes": dataclasses.asdict(shapes),
                       "domain": domain.as_dict()})
    return target


def tiny_dataset(dataset_id: int, name: str, out: Optional[str | Path] = None, *, num_train: int = 6,
                 num_test: int = 2, seed: int = 0, domain: DomainConfig = DomainConfig(),
                 force: bool = False) -> Path:
    """A tiny 2D dataset for tests: 64x64 .nii.gz, 3 classes (background + 2), 1 mm spacing."""
    return synth_dataset(dataset_id, name, out, num_train=num_train, num_test=num_test,
                         shapes=ShapeConfig(shape=(64, 64), num_classes=3), domain=domain, seed=seed, force=force)
