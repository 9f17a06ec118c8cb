"""Register any folder of images (NIfTI, NRRD, MHA, PNG, BMP, TIF) as an unlabelled transferal set.

A transferal set needs no labels and no dataset.json. Registration checks the folder and writes an
nnU-Net raw dataset ``DatasetNNN_Name`` holding the images under nnU-Net names in ``imagesTr/``, a
dataset.json marked ``kt_nnunet.role = "transferal"``, ``labelled = false``, and per case the original
file names and the geometry (shape, spacing, origin, direction) that teacher labels will be written in.

Naming: files already named ``CASE_0000.ext``, ``CASE_0001.ext``, ... are grouped into multi-channel
cases; otherwise every file is one single-channel case named after its file. Files are copied byte for
byte (so the geometry is kept exactly), except that ``.tiff`` becomes ``.tif`` (nnU-Net reads 2D TIFFs
only under ``.tif``) and, with ``like=`` a source dataset of another file ending, images are converted
to that ending (nnU-Net predicts only files with the training dataset's ending).
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Optional

import numpy as np

from kt_nnunet.data.atomic import staged_directory
from kt_nnunet.nnunet.raw_validation import check_labels_declaration
from kt_nnunet.nnunet.raw_dataset import (SUPPORTED_FILE_ENDINGS, DatasetError, EmptyFolderError, FileEndingError,
                                          GeometryMismatchError, MissingChannelError, file_ending_of, geometry,
                                          image_name, load_dataset_json, nnunet_dataset_name, read_images,
                                          split_channel, visible_files, write_dataset_json, write_image)

SIDECAR_ENDINGS = (".json",)  # Tiff3DIO's {case}.json spacing files, metadata: ignored, not images


def _case_id(stem: str) -> str:
    return re.sub(r"[^A-Za-z0-9\-]+", "-", stem).strip("-") or "case"


def scan_image_folder(folder: str | Path, num_channels: Optional[int] = None) -> tuple[str, dict[str, list[Path]]]:
    """``(file_ending, {case: [channel files]})`` for a plain folder; one clear error per naming problem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EmptyFolderError(f"{folder} is not a folder; give the folder that holds the images")
    files = [p for p in visible_files(folder) if not p.name.lower().endswith(SIDECAR_ENDINGS)]
    if not files:
        raise EmptyFolderError(f"{folder} holds no image files; put the images ({', '.join(SUPPORTED_FILE_ENDINGS)})"
                               " directly in it (sub-folders are not searched)")
    endings = {}
    for path in files:
        ending = file_ending_of(path)
        if ending is None:
            raise FileEndingError(f"{path}: not an image type nnU-Net reads ({', '.join(SUPPORTED_FILE_ENDINGS)}); "
                                  "convert it (JPEG is lossy and unsupported) or move it out of the folder")
        endings.setdefault(ending, path)
    if len(endings) > 1:
        (a, pa), (b, pb) = list(endings.items())[:2]
        raise FileEndingError(f"{folder} mixes file types ({pa.name} is {a}, {pb.name} is {b}); nnU-Net needs one "
                              "ending per dataset: convert the files to one type")
    ending = next(iter(endings))
    parsed = {path: split_channel(path, ending) for path in files}
    if all(parsed.values()):
        cases: dict[str, dict[int, Path]] = {}
        for path, (case, channel) in parsed.items():
            cases.setdefault(case, {})[channel] = path
        expected = num_channels or max(max(chs) for chs in cases.values()) + 1
        for case, channels in sorted(cases.items()):
            missing = [c for c in range(expected) if c not in channels]
            if missing or max(channels) >= expected:
                raise MissingChannelError(
                    f"{folder / image_name(case, missing[0] if missing else max(channels), ending)}: case {case!r} "
                    f"has channel(s) {sorted(channels)} but {expected} are expected (0..{expected - 1}); add the "
                    "missing file or remove the extra one")
        return ending, {case: [chs[c] for c in range(expected)] for case, chs in sorted(cases.items())}
    if any(parsed.values()):
        named = next(p for p, v in parsed.items() if v)
        plain = next(p for p, v in parsed.items() if not v)
        raise FileEndingError(f"{plain}: named without a _CCCC channel suffix while {named.name} has one; name all "
                              f"files CASE_0000{ending} (CASE_0001{ending}, ... for more channels) or none")
    if num_channels and num_channels > 1:
        raise MissingChannelError(f"{folder}: {num_channels} channels requested but the files have no _CCCC channel "
                                  f"suffix; name them CASE_0000{ending}, CASE_0001{ending}, ...")
    cases = {}
    for path in files:
        case = _case_id(path.name[: -len(ending)])
        if case in cases:
            raise FileEndingError(f"{path} and {cases[case][0]} both map to case id {case!r}; rename one of them")
        cases[case] = [path]
    return ending, dict(sorted(cases.items()))


def _resolve_like(like) -> Optional[dict]:
    if like is None:
        return None
    from kt_nnunet.nnunet.paths import find_raw_dataset

    path = find_raw_dataset(like)
    if path is None:
        raise DatasetError(f"source dataset {like!r} not found (as a folder or in nnUNet_raw); give its folder")
    return load_dataset_json(path)


def register_folder(folder: str | Path, dataset_id: int, name: str, out: Optional[str | Path] = None, *,
                    like=None, num_channels: Optional[int] = None, channel_names: Optional[list] = None,
                    labels: Optional[dict] = None, force: bool = False) -> Path:
    """Check ``folder`` and write ``{out}/Dataset{id:03d}_{name}`` as an unlabelled transferal set.

    ``like`` (a dataset folder, id or name) supplies channel names, labels and the file ending the
    teachers' model expects, and must agree on the number of channels. ``out`` defaults to nnUNet_raw.
    """
    source_json = _resolve_like(like)
    ending, cases = scan_image_folder(folder, num_channels)
    target_ending = source_json["file_ending"] if source_json else (".tif" if ending == ".tiff" else ending)
    convert = target_ending != ending and not (ending == ".tiff" and target_ending == ".tif")
    if convert and target_ending != ".nii.gz":
        raise FileEndingError(f"{folder}: images are {ending} but the source dataset uses {target_ending}; "
                              f"kt-nnunet converts to .nii.gz only: convert the images to {target_ending} yourself")
    records, channels_read = {}, None
    for case, files in cases.items():
        images, props = read_images(files)
        channels_read = channels_read or images.shape[0]
        if images.shape[0] != channels_read:
            raise MissingChannelError(f"{files[0]}: case {case!r} has {images.shape[0]} channel(s), earlier cases "
                                      f"{channels_read}; give every case the same channels")
        records[case] = {"files": [f.name for f in files], "shape": list(images.shape[1:]), **geometry(props)}
        if convert:
            records[case]["_array"] = images
            records[case]["_spacing"] = props["spacing"]
    if source_json:
        expected = len(source_json["channel_names"])
        if channels_read != expected:
            raise MissingChannelError(f"{folder}: images have {channels_read} channel(s) but the source dataset has "
                                      f"{expected} ({source_json['channel_names']}); provide matching channels")
        channel_names = channel_names or list(source_json["channel_names"].values())
        labels = labels or source_json["labels"]
    channel_names = list(channel_names or (["image"] if channels_read == 1 else
                                           [f"channel{c}" for c in range(channels_read)]))
    labels = labels or {"background": 0}
    check_labels_declaration(labels, Path(folder))
    if out is None:
        from kt_nnunet.nnunet.paths import raw_folder

        out = raw_folder()
    target = Path(out) / nnunet_dataset_name(dataset_id, name)
    with staged_directory(target, force=force) as staging:
        (staging / "imagesTr").mkdir()
        for case, record in records.items():
            if convert:
                _write_converted(staging / "imagesTr", case, record.pop("_array"), record.pop("_spacing"),
                                 target_ending)
            else:
                for channel, file in enumerate(cases[case]):
                    shutil.copy2(file, staging / "imagesTr" / image_name(case, channel, target_ending))
        write_dataset_json(
            staging, {str(i): n for i, n in enumerate(channel_names)}, labels, len(records), target_ending,
            dataset_name=target.name, description=f"transferal images registered from {Path(folder).absolute()}",
            converted_by="kt-nnunet data register-folder",
            kt_nnunet={"role": "transferal", "labelled": False, "registered_from": str(Path(folder).absolute()),
                       "original_file_ending": ending, "converted": convert, "like": str(like) if like else None,
                       "cases": records})
    return target


def _write_converted(images_dir: Path, case: str, images: np.ndarray, spacing, ending: str) -> None:
    """Write channels read by nnU-Net as ``ending`` files (2D natural images become 2D NIfTIs)."""
    if ending in (".png", ".bmp", ".tif"):
        raise GeometryMismatchError(f"{case}: cannot convert to {ending}")
    for channel, array in enumerate(images):
        if array.shape[0] == 1 and float(spacing[0]) >= 999:  # a 2D image that nnU-Net padded to (1, y, x)
            write_image(images_dir / image_name(case, channel, ending), array[0], spacing[1:])
        else:
            write_image(images_dir / image_name(case, channel, ending), array, spacing)
