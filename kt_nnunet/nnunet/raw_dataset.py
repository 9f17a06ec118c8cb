"""nnU-Net raw-format I/O: file naming, reading with nnU-Net's own reader/writers, writing, dataset.json.

Everything kt-nnunet writes or checks in ``nnUNet_raw`` goes through here, so that the files we write are
exactly the files nnU-Net will read (same reader class, same axis order, same spacing convention).

Conventions (nnU-Net's):
- arrays are in numpy/SimpleITK order: ``(z, y, x)`` for 3D and ``(y, x)`` for 2D;
- ``spacing`` is given in the same order as the array axes (nnU-Net's ``properties['spacing']`` order);
- images are ``{case}_{CCCC}{file_ending}``, labels ``{case}{file_ending}``.

The dataset error classes live here too, so that every module (data builders, MSD import, validation)
raises the same types; each message names the file and the fix.
"""
from __future__ import annotations

import contextlib
import gzip
import io
import json
import re
import zlib
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from kt_nnunet.errors import KtNnunetError

# Endings nnU-Net 2.8 can read (union over nnunetv2.imageio.LIST_OF_IO_CLASSES), longest first so that
# ".nii.gz" wins over ".gz"-less matches.
SUPPORTED_FILE_ENDINGS = (".nii.gz", ".nrrd", ".mha", ".gipl", ".nii", ".png", ".bmp", ".tiff", ".tif")
NATURAL_2D_ENDINGS = (".png", ".bmp", ".tif")
CHANNEL_PATTERN = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
REQUIRED_DATASET_JSON_KEYS = ("channel_names", "labels", "numTraining", "file_ending")


# --------------------------------------------------------------------------------------------- errors
class DatasetError(KtNnunetError):
    """A dataset (or a folder of images) is not usable; the message names the file and the fix."""


class DatasetExistsError(DatasetError):
    """The target dataset folder exists and ``force`` was not given."""


class EmptyFolderError(DatasetError):
    """A folder that must hold images holds none."""


class FileEndingError(DatasetError):
    """A file's ending is not the dataset's ``file_ending`` or not one nnU-Net can read."""


class MissingChannelError(DatasetError):
    """A case lacks one of the channel files ``{case}_{CCCC}`` declared in ``channel_names``."""


class MissingLabelError(DatasetError):
    """A training case has no label file, or a label file has no image."""


class GeometryMismatchError(DatasetError):
    """Image channels or image and label disagree in shape, spacing, origin or direction."""


class UnexpectedLabelError(DatasetError):
    """A label file holds values that dataset.json does not declare."""


class NonConsecutiveLabelsError(DatasetError):
    """dataset.json's labels are not 0, 1, 2, ... (nnU-Net requires consecutive integers)."""


class CorruptFileError(DatasetError):
    """A file cannot be read (truncated, not an image, NaN values)."""


class DatasetJsonError(DatasetError):
    """dataset.json is missing, unreadable or lacks a required key."""


# ----------------------------------------------------------------------------------------- file names
def file_ending_of(filename: str | Path) -> Optional[str]:
    """The nnU-Net file ending of ``filename`` (``.nii.gz``, ``.png``, ...), or None if nnU-Net reads none."""
    name = Path(filename).name.lower()
    for ending in SUPPORTED_FILE_ENDINGS:
        if name.endswith(ending):
            return ending
    return None


def split_channel(filename: str | Path, file_ending: str) -> Optional[tuple[str, int]]:
    """``("case", 1)`` for ``case_0001{file_ending}``; None if the name does not follow nnU-Net's rule."""
    name = Path(filename).name
    if not name.endswith(file_ending):
        return None
    match = CHANNEL_PATTERN.match(name[: -len(file_ending)])
    return (match["case"], int(match["channel"])) if match else None


def image_name(case: str, channel: int, file_ending: str) -> str:
    return f"{case}_{channel:04d}{file_ending}"


def visible_files(folder: Path) -> list[Path]:
    """Regular files in ``folder``, without hidden files (``.DS_Store``, MSD's ``._`` AppleDouble files)."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith((".", "_")))


# ------------------------------------------------------------------------------------------- reading
def short_reason(exc: BaseException) -> str:
    """One line about ``exc``: SimpleITK's messages span lines and repeat the path; keep the gist."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[-1] if lines else ""
    text = re.sub(r"^sitk::ERROR:\s*", "", text)
    text = re.sub(r'\s+(?:for|of|in)?\s*"?/[^"]*"?$', "", text)  # the path is in our message already
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__


def reader_class(file_ending: str, example_file: str | Path):
    """nnU-Net's reader/writer class for ``file_ending``, chosen as nnU-Net chooses it (by trying a file)."""
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_file_ending

    # nnU-Net prints a traceback for every reader that fails on the example file: keep that off the console.
    # ".tiff" is Tiff3DIO's (3D) only; a 2D ".tiff" file is read by NaturalImage2DIO under ".tif".
    endings = [file_ending, ".tif"] if file_ending == ".tiff" else [file_ending]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        for ending in endings:
            try:
                return determine_reader_writer_from_file_ending(ending, str(example_file), verbose=False)
            except RuntimeError:
                continue
    raise CorruptFileError(f"{example_file}: no nnU-Net reader can open this {file_ending} file; it is corrupt or "
                           "not an image. Replace it with a valid file (or remove it and its case).")


def labelled_training_cases(folder: str | Path, dataset_json: dict) -> dict:
    """``{case: {"images": [...], "label": ...}}`` of a raw dataset, as nnU-Net's planner and trainer see it."""
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

    return get_filenames_of_train_images_and_targets(str(folder), dataset_json)


def dataset_reader_name(dataset_json: dict, example_file: str | Path) -> str:
    """The reader nnU-Net uses for a dataset (``overwrite_image_reader_writer`` in dataset.json, else by file)."""
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json

    return determine_reader_writer_from_dataset_json(dataset_json, str(example_file), allow_nonmatching_filename=True,
                                                     verbose=False).__name__


def check_file_complete(path: str | Path) -> None:
    """Refuse an empty file and a cut-short ``.gz`` file: SimpleITK reads the latter without complaint (the
    missing voxels come back as zeros), so a half-copied image would silently train and label as a black region.
    Reads no pixels, so a whole image set can be checked before any output is written."""
    if Path(path).is_file() and Path(path).stat().st_size == 0:
        raise CorruptFileError(f"{path}: cannot be read: the file is empty (an interrupted copy?); replace it with "
                               "a complete file or remove the case")
    if not str(path).lower().endswith(".gz") or _nifti_gz_size_matches(path):
        return
    try:
        with gzip.open(path, "rb") as stream:
            while stream.read(1 << 22):
                pass
    except (EOFError, OSError, zlib.error) as exc:
        raise CorruptFileError(f"{path}: cannot be read: its gzip data is truncated or damaged ({short_reason(exc)}; "
                               "an interrupted copy or download?); replace it with a complete file or remove the "
                               "case") from exc


def _nifti_gz_size_matches(path: str | Path) -> bool:
    """Whether a ``.nii.gz`` file's gzip trailer (uncompressed size mod 2**32) is the size its NIfTI header
    promises. A cut-short file ends in compressed data instead, so a match clears a complete file without
    decompressing it; anything else (no match, not NIfTI) gets the full check."""
    import nibabel as nib

    try:
        with open(path, "rb") as raw:
            raw.seek(-4, 2)
            trailer_size = int.from_bytes(raw.read(4), "little")
        with gzip.open(path, "rb") as stream:
            head = stream.read(540)
        nifti2 = 540 in (int.from_bytes(head[:4], "little"), int.from_bytes(head[:4], "big"))
        header = (nib.Nifti2Header if nifti2 else nib.Nifti1Header).from_fileobj(io.BytesIO(head))
        data_bytes = int(np.prod(header.get_data_shape(), dtype=np.int64)) * header.get_data_dtype().itemsize
        return (int(header["vox_offset"]) + data_bytes) % 2**32 == trailer_size
    except Exception:  # not a NIfTI header, or unreadable: the full check decides and explains
        return False


def read_images(files: Sequence[str | Path], reader=None) -> tuple[np.ndarray, dict]:
    """All channel files of one case as nnU-Net reads them: ``(C, *spatial)`` float32 and properties."""
    files = [str(f) for f in files]
    for file in files:
        check_file_complete(file)
    ending = file_ending_of(files[0])
    reader = reader or reader_class(ending, files[0])
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return reader().read_images(files)
    except KtNnunetError:
        raise
    except Exception as exc:  # nnU-Net readers raise anything from AssertionError to OSError
        bad = _first_unreadable(files, reader)
        if bad is None:
            raise GeometryMismatchError(
                f"{', '.join(files)}: the channel files of this case do not share a geometry "
                f"({short_reason(exc)}); "
                "resample them onto one grid.") from exc
        raise CorruptFileError(f"{bad}: cannot be read ({short_reason(exc)}); replace it with a valid "
                               "image file or remove the case.") from exc


def read_seg(file: str | Path, reader=None) -> tuple[np.ndarray, dict]:
    """A label file as nnU-Net reads it: ``(1, *spatial)`` and properties."""
    check_file_complete(file)
    reader = reader or reader_class(file_ending_of(file), file)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return reader().read_seg(str(file))
    except Exception as exc:
        raise CorruptFileError(f"{file}: cannot be read ({short_reason(exc)}); replace it with a valid "
                               "label file.") from exc


def _first_unreadable(files: Sequence[str], reader) -> Optional[str]:
    for f in files:
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                reader().read_images([f])
        except Exception:
            return f
    return None


def geometry(properties: dict) -> dict:
    """Spacing plus, where the reader provides them, origin and direction: what must match across files."""
    out = {"spacing": [float(s) for s in properties["spacing"]]}
    sitk_stuff = properties.get("sitk_stuff")
    if sitk_stuff:
        out["origin"] = [float(v) for v in sitk_stuff["origin"]]
        out["direction"] = [float(v) for v in sitk_stuff["direction"]]
    return out


# ------------------------------------------------------------------------------------------- writing
def write_image(path: str | Path, array: np.ndarray, spacing: Optional[Sequence[float]] = None,
                origin: Optional[Sequence[float]] = None, direction: Optional[Sequence[float]] = None) -> None:
    """Write one image (or label) file that nnU-Net reads back as ``array``.

    ``.png/.bmp/.tif`` files are 2D natural images (spacing is not stored; nnU-Net assumes 1); uint8 is
    written unchanged, anything else is written as uint16 after rounding. Every other ending goes through
    SimpleITK with ``spacing`` (array-axis order), ``origin`` and ``direction`` (ITK order, x first).
    """
    path = Path(path)
    ending = file_ending_of(path)
    if ending is None:
        raise FileEndingError(f"{path}: nnU-Net reads none of this file's ending; use one of "
                              f"{', '.join(SUPPORTED_FILE_ENDINGS)}")
    array = np.asarray(array)
    if ending in NATURAL_2D_ENDINGS:
        if array.ndim != 2:
            raise FileEndingError(f"{path}: {ending} holds 2D images only, this array is {array.ndim}D; "
                                  "use .nii.gz for 3D data")
        _write_natural_2d(path, array)
        return
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array, isVector=False)  # a 4D array is 4D, not a 3D vector image
    if spacing is not None:
        image.SetSpacing([float(s) for s in reversed(list(spacing))])
    if origin is not None:
        image.SetOrigin([float(v) for v in origin])
    if direction is not None:
        image.SetDirection([float(v) for v in direction])
    sitk.WriteImage(image, str(path), useCompression=True)


def _write_natural_2d(path: Path, array: np.ndarray) -> None:
    if array.dtype != np.uint8:
        array = np.clip(np.rint(array), 0, 65535).astype(np.uint8 if array.max(initial=0) < 256 else np.uint16)
    if path.suffix.lower() == ".tif":
        import tifffile

        tifffile.imwrite(str(path), array)
    else:
        from PIL import Image

        Image.fromarray(array).save(str(path))


def write_dataset_json(folder: str | Path, channel_names: dict, labels: dict, num_training: int, file_ending: str,
                       **extra) -> Path:
    """dataset.json through nnU-Net's ``generate_dataset_json`` (so its key rules are nnU-Net's own)."""
    from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json

    # generate_dataset_json mutates its arguments; hand it copies.
    generate_dataset_json(str(folder), dict(channel_names), dict(labels), int(num_training), file_ending, **extra)
    return Path(folder) / "dataset.json"


def load_dataset_json(folder: str | Path, required: Iterable[str] = REQUIRED_DATASET_JSON_KEYS) -> dict:
    path = Path(folder) / "dataset.json"
    if not path.is_file():
        raise DatasetJsonError(f"{path} does not exist; every nnU-Net dataset needs one (write it with "
                               "kt_nnunet.nnunet.raw_dataset.write_dataset_json or nnU-Net's generate_dataset_json)")
    try:
        content = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetJsonError(f"{path} is not valid JSON ({exc}); fix or regenerate it") from exc
    if not isinstance(content, dict):
        raise DatasetJsonError(f"{path} holds a JSON {type(content).__name__}, not an object with the keys "
                               f"{list(REQUIRED_DATASET_JSON_KEYS)}; fix or regenerate it")
    missing = [k for k in required if k not in content]
    if missing:
        raise DatasetJsonError(f"{path} lacks the key(s) {missing}; nnU-Net requires "
                               f"{list(REQUIRED_DATASET_JSON_KEYS)}")
    return content


def labels_without_ignore(labels: dict) -> dict:
    """A dataset.json ``labels`` mapping without nnU-Net's ``ignore`` label (regions as tuples).

    Teacher-labelled datasets may mark uncertain voxels with ``ignore``; models trained on them still predict
    the same classes, so label sets are compared without it.
    """
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in labels.items() if k != "ignore"}


def label_values(labels: dict) -> list[int]:
    """All integer label values declared in dataset.json ``labels`` (region tuples flattened), sorted."""
    values = set()
    for value in labels.values():
        values.update(int(v) for v in (value if isinstance(value, (list, tuple)) else [value]))
    return sorted(values)


def nnunet_dataset_name(dataset_id: int, name: str) -> str:
    """``Dataset{id:03d}_{name}`` after checking both parts against nnU-Net's naming rules."""
    if not (0 < int(dataset_id) < 1000):
        raise DatasetError(f"dataset id {dataset_id} is outside 1..999; nnU-Net names datasets "
                           "Dataset001_Name ... Dataset999_Name")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_\-]*", name or ""):
        raise DatasetError(f"dataset name {name!r} must be letters, digits, '_' and '-' only (no spaces or "
                           "slashes), e.g. 'BrainDemo'")
    return f"Dataset{int(dataset_id):03d}_{name}"
