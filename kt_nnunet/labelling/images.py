"""The transferal images: a plain folder, or an nnU-Net raw dataset (its ``imagesTr``), given by path or id.

Case naming follows ``kt_nnunet.data.transferal.scan_image_folder``: files named ``CASE_0000.ext``, ...
form multi-channel cases; otherwise every file is one single-channel case named after the file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from kt_nnunet.data.transferal import scan_image_folder
from kt_nnunet.labelling.errors import ChannelMismatchError
from kt_nnunet.nnunet.paths import find_raw_dataset, folder_if_set
from kt_nnunet.nnunet.raw_dataset import DatasetError, image_name, load_dataset_json


@dataclass
class TransferalImages:
    source: Path                  # what the user gave, resolved
    folder: Path                  # the folder holding the image files
    file_ending: str
    cases: dict                   # {case id: [channel files]}, sorted by case id
    dataset_json: Optional[dict]  # the source dataset's, when it is one

    def files_of(self, case: str) -> list[Path]:
        return self.cases[case]


def resolve_images(images: str | Path) -> TransferalImages:
    """Find the images of a folder, a dataset folder, or a dataset id/name in ``$nnUNet_raw``."""
    path = find_raw_dataset(images)
    if path is None:
        raise DatasetError(f"transferal images {images}: no such folder, and no such dataset in nnUNet_raw "
                           f"({folder_if_set('nnUNet_raw') or '<unset>'}); give a folder of images or a dataset "
                           "folder/id")
    dataset_json = None
    folder = path
    if (path / "dataset.json").is_file():
        dataset_json = load_dataset_json(path)
        folder = path / "imagesTr"
        if not folder.is_dir():
            raise DatasetError(f"{path} is a dataset without imagesTr/; the transferal images must be in imagesTr")
    ending, cases = scan_image_folder(folder)
    if dataset_json and ending != dataset_json["file_ending"]:
        raise DatasetError(f"{folder} holds {ending} files but {path / 'dataset.json'} says file_ending "
                           f"{dataset_json['file_ending']!r}; fix one of them")
    return TransferalImages(path.absolute(), folder.absolute(), ending, cases, dataset_json)


def check_channel_files(images: TransferalImages, num_channels: int, teacher_desc: str) -> None:
    """Every case must have exactly the teachers' number of channel files; the error names the file."""
    for case, files in images.cases.items():
        if len(files) > num_channels:
            raise ChannelMismatchError(
                f"{files[num_channels]}: case {case!r} has {len(files)} channel files but the teachers take "
                f"{num_channels} channel(s) ({teacher_desc}); remove the extra channel files or use teachers "
                "trained on these channels")
        if len(files) < num_channels:
            missing = images.folder / image_name(case, len(files), images.file_ending)
            raise ChannelMismatchError(
                f"{missing}: missing; the teachers take {num_channels} channel(s) ({teacher_desc}) but case "
                f"{case!r} has {len(files)} ({', '.join(f.name for f in files)}). Name channel files "
                f"CASE_0000{images.file_ending}, CASE_0001{images.file_ending}, ...")


def check_channels_read(files, channels_read: int, num_channels: int, teacher_desc: str) -> None:
    """After reading: one file may hold several channels (RGB, 4D); the count must still match."""
    if channels_read != num_channels:
        raise ChannelMismatchError(
            f"{files[0]}: this case has {channels_read} channel(s) after reading ({len(files)} file(s)) but the "
            f"teachers take {num_channels} ({teacher_desc}); give images with the teachers' channels")
