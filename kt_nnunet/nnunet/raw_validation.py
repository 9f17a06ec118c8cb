"""Check an nnU-Net raw dataset before nnU-Net sees it, and stop at the first problem with one clear message.

nnU-Net's own ``--verify_dataset_integrity`` prints problems across worker processes and then raises a
generic error; here every problem is one ``DatasetError`` subclass naming the file and the fix:
missing channel or label files, wrong file endings, empty folders, unreadable files, image/label
geometry mismatches, labels outside the declared set, and non-consecutive labels in dataset.json.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from kt_nnunet.nnunet.raw_dataset import (NATURAL_2D_ENDINGS, CorruptFileError, DatasetError, DatasetJsonError,
                                          EmptyFolderError, FileEndingError, GeometryMismatchError,
                                          MissingChannelError, MissingLabelError, NonConsecutiveLabelsError,
                                          UnexpectedLabelError, file_ending_of, geometry, image_name, label_values,
                                          load_dataset_json, read_images, read_seg, reader_class, split_channel,
                                          visible_files)


@dataclass
class DatasetSummary:
    """What validation found: enough to print, and to compare a transferal set with a source set."""

    folder: Path
    file_ending: str
    num_channels: int
    labels: dict
    cases: list = field(default_factory=list)
    test_cases: list = field(default_factory=list)
    shapes: dict = field(default_factory=dict)  # case -> spatial shape
    spacings: dict = field(default_factory=dict)  # case -> spacing (array-axis order)
    labels_found: list = field(default_factory=list)

    def describe(self) -> str:
        shapes = sorted({tuple(s) for s in self.shapes.values()})
        shown = ", ".join("x".join(map(str, s)) for s in shapes[:3]) + (" ..." if len(shapes) > 3 else "")
        return (f"{self.folder.name}: {len(self.cases)} training case(s), {len(self.test_cases)} test case(s), "
                f"{self.num_channels} channel(s), ending {self.file_ending}, shapes {shown}, labels "
                f"{self.labels_found or sorted(label_values(self.labels))}")


def check_labels_declaration(labels: dict, where: Path) -> list[int]:
    """dataset.json ``labels``: background 0 and consecutive integers (an ``ignore`` label may be max+1)."""
    if not isinstance(labels, dict):
        raise NonConsecutiveLabelsError(f"{where}: labels must map names to integers, e.g. "
                                        f'{{"background": 0, "organ": 1}} (found {labels!r})')
    try:
        values = label_values(labels)
    except (TypeError, ValueError) as exc:
        raise NonConsecutiveLabelsError(f"{where}: labels must be integers (or lists of integers for regions), "
                                        f"found {labels}; write e.g. \"organ\": 1") from exc
    if labels.get("background") != 0 and 0 not in values:
        raise NonConsecutiveLabelsError(f"{where}: labels must include background = 0 (found {labels}); add "
                                        '"background": 0')
    expected = list(range(len(values)))
    if values != expected:
        raise NonConsecutiveLabelsError(
            f"{where}: labels must be consecutive integers 0, 1, 2, ... (found {values}); renumber them to "
            f"{expected} in dataset.json and remap the label files to match (nnU-Net requires this)")
    return values


def group_channel_files(folder: Path, file_ending: str, num_channels: int) -> dict[str, list[Path]]:
    """``{case: [channel files]}`` for ``folder``, checking endings, names and that no channel is missing.

    An RGB(A) natural image holds 3 (4) channels in one ``_0000`` file (nnU-Net's Road example): with
    3 or 4 declared channels and only ``_0000`` files, one file per case is expected.
    """
    if not folder.is_dir():
        raise EmptyFolderError(f"{folder} does not exist; put the images there as CASE_0000{file_ending}")
    files = visible_files(folder)
    if not files:
        raise EmptyFolderError(f"{folder} holds no image files; put images named CASE_0000{file_ending} there")
    cases: dict[str, dict[int, Path]] = {}
    for path in files:
        if not path.name.endswith(file_ending):
            found = file_ending_of(path) or (Path(path.name).suffix or "no ending")
            raise FileEndingError(f"{path}: ends in {found}, but dataset.json says file_ending {file_ending!r}; "
                                  f"convert the file to {file_ending} (or fix file_ending if all files are {found})")
        parsed = split_channel(path, file_ending)
        if parsed is None:
            raise FileEndingError(f"{path}: image names must be CASE_CCCC{file_ending} with a 4-digit channel "
                                  f"index (e.g. {image_name(path.name[: -len(file_ending)], 0, file_ending)}); "
                                  "rename it")
        case, channel = parsed
        if channel >= num_channels:
            raise MissingChannelError(f"{path}: channel {channel} but dataset.json declares {num_channels} "
                                      "channel(s) in channel_names; add the channel there or remove the file")
        cases.setdefault(case, {})[channel] = path
    packed = (file_ending in NATURAL_2D_ENDINGS and num_channels in (3, 4)
              and all(set(chs) == {0} for chs in cases.values()))
    files_per_case = 1 if packed else num_channels
    for case, channels in sorted(cases.items()):
        for channel in range(files_per_case):
            if channel not in channels:
                raise MissingChannelError(
                    f"{folder / image_name(case, channel, file_ending)} is missing: case {case!r} has channel(s) "
                    f"{sorted(channels)} of {num_channels}; add the file or remove the case's other files")
    return {case: [channels[c] for c in range(files_per_case)] for case, channels in sorted(cases.items())}


def _check_case(case: str, image_files: list[Path], label_file: Optional[Path], num_channels: int,
                allowed: set, reader, summary: DatasetSummary, found: set) -> None:
    images, props = read_images(image_files, reader)
    if np.isnan(images).any():
        raise CorruptFileError(f"{image_files[0]} (case {case!r}) contains NaN values; replace them (e.g. with "
                               "the background value) before using the dataset")
    if images.shape[0] != num_channels:  # an RGB png gives 3 channels from one file
        raise MissingChannelError(f"{image_files[0]}: case {case!r} reads as {images.shape[0]} channel(s) but "
                                  f"dataset.json declares {num_channels}; fix channel_names")
    summary.shapes[case] = list(images.shape[1:])
    summary.spacings[case] = [float(s) for s in props["spacing"]]
    if label_file is None:
        return
    seg, seg_props = read_seg(label_file, reader)
    if seg.shape[1:] != images.shape[1:]:
        raise GeometryMismatchError(f"{label_file}: label shape {tuple(seg.shape[1:])} differs from its image "
                                    f"shape {tuple(images.shape[1:])} ({image_files[0]}); resample the label onto "
                                    "the image grid")
    img_geo, seg_geo = geometry(props), geometry(seg_props)
    for key in img_geo:
        if key in seg_geo and not np.allclose(img_geo[key], seg_geo[key], atol=1e-3):
            raise GeometryMismatchError(f"{label_file}: label {key} {seg_geo[key]} differs from its image's "
                                        f"{img_geo[key]} ({image_files[0]}); write the label with the image's "
                                        "geometry (copy the header, e.g. SimpleITK CopyInformation)")
    values = np.unique(seg)
    unexpected = [int(v) if float(v).is_integer() else float(v) for v in values if v not in allowed]
    if unexpected:
        raise UnexpectedLabelError(f"{label_file}: label values {unexpected} are not declared in dataset.json "
                                   f"labels {sorted(allowed)}; remap them or declare them in dataset.json")
    found.update(int(v) for v in values)


def validate_dataset(folder: str | Path, require_labels: Optional[bool] = None,
                     check_test: bool = True) -> DatasetSummary:
    """Check ``folder`` (an nnU-Net raw dataset); raise one ``DatasetError`` subclass at the first problem.

    ``require_labels`` defaults to what dataset.json's ``kt_nnunet.labelled`` says (True if absent).
    ``imagesTs``/``labelsTs`` are checked when present and ``check_test`` is set.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder} is not a folder; give the path of a DatasetNNN_Name folder")
    dataset_json = load_dataset_json(folder)
    if "dataset" in dataset_json:
        raise DatasetJsonError(f"{folder / 'dataset.json'} lists files under 'dataset'; kt-nnunet checks "
                               "imagesTr/labelsTr layouts only: use nnU-Net's --verify_dataset_integrity")
    if require_labels is None:
        require_labels = dataset_json.get("kt_nnunet", {}).get("labelled", True)
    file_ending = dataset_json["file_ending"]
    if file_ending_of("x" + file_ending) != file_ending.lower():
        raise FileEndingError(f"{folder / 'dataset.json'}: file_ending {file_ending!r} is not one nnU-Net reads")
    allowed = set(check_labels_declaration(dataset_json["labels"], folder / "dataset.json"))
    num_channels = len(dataset_json["channel_names"])
    summary = DatasetSummary(folder, file_ending, num_channels, dataset_json["labels"])
    found: set = set()
    parts = [("imagesTr", "labelsTr", require_labels)]
    if check_test and (folder / "imagesTs").is_dir() and visible_files(folder / "imagesTs"):
        parts.append(("imagesTs", "labelsTs", (folder / "labelsTs").is_dir()))
    reader = None
    for images_dir, labels_dir, labelled in parts:
        cases = group_channel_files(folder / images_dir, file_ending, num_channels)
        if labelled:
            _check_label_files(folder / labels_dir, cases, file_ending, folder / images_dir)
        for case, files in cases.items():
            reader = reader or reader_class(file_ending, files[0])
            label_file = folder / labels_dir / f"{case}{file_ending}" if labelled else None
            _check_case(case, files, label_file, num_channels, allowed, reader, summary, found)
        (summary.cases if images_dir == "imagesTr" else summary.test_cases).extend(cases)
    if dataset_json["numTraining"] != len(summary.cases):
        raise DatasetJsonError(f"{folder / 'dataset.json'}: numTraining is {dataset_json['numTraining']} but "
                               f"imagesTr holds {len(summary.cases)} case(s); set numTraining to "
                               f"{len(summary.cases)}")
    summary.labels_found = sorted(found)
    return summary


def _check_label_files(labels_folder: Path, cases: dict, file_ending: str, images_folder: Path) -> None:
    if not labels_folder.is_dir():
        raise MissingLabelError(f"{labels_folder} does not exist; put one label file CASE{file_ending} per case "
                                "there (or register the folder as an unlabelled transferal set)")
    for case in cases:
        if not (labels_folder / f"{case}{file_ending}").is_file():
            raise MissingLabelError(f"{labels_folder / (case + file_ending)} is missing: case {case!r} has images "
                                    "but no label; add the label or remove the case's images")
    for path in visible_files(labels_folder):
        if not path.name.endswith(file_ending):
            raise FileEndingError(f"{path}: ends differently from dataset.json file_ending {file_ending!r}; "
                                  "convert it (labels and images must share one ending)")
        case = path.name[: -len(file_ending)]
        if case not in cases:
            expected = images_folder / image_name(case, 0, file_ending)
            raise MissingLabelError(f"{path}: label without images (expected {expected}); add the images or remove "
                                    "the label")
