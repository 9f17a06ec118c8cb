"""Registering plain folders of images (nifti, nrrd, png, tif) as unlabelled transferal sets."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import tifffile
from click.testing import CliRunner
from PIL import Image

from kt_nnunet.cli import main
from kt_nnunet.data import (CorruptFileError, DatasetExistsError, EmptyFolderError, FileEndingError,
                            MissingChannelError, register_folder, tiny_dataset, validate_dataset)
from kt_nnunet.nnunet.raw_dataset import GeometryMismatchError, read_images


def sitk_image(array, spacing, origin=(0.0, 0.0, 0.0)):
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing(spacing)
    image.SetOrigin(origin[: image.GetDimension()])
    return image


def meta(folder):
    return json.loads((folder / "dataset.json").read_text())


def test_png_folder_with_plain_names(tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("patient A.png", "patient_b.png"):
        Image.fromarray(rng.integers(0, 255, (40, 50), dtype=np.uint8)).save(folder / name)
    target = register_folder(folder, 701, "Scans", tmp_path / "raw")
    assert sorted(p.name for p in (target / "imagesTr").iterdir()) == ["patient-A_0000.png", "patient-b_0000.png"]
    info = meta(target)
    assert info["kt_nnunet"]["role"] == "transferal" and info["kt_nnunet"]["labelled"] is False
    assert info["kt_nnunet"]["cases"]["patient-A"]["files"] == ["patient A.png"]
    assert info["kt_nnunet"]["cases"]["patient-A"]["shape"] == [1, 40, 50]
    assert info["file_ending"] == ".png" and info["numTraining"] == 2
    assert (target / "imagesTr" / "patient-b_0000.png").read_bytes() == (folder / "patient_b.png").read_bytes()
    assert validate_dataset(target).cases == ["patient-A", "patient-b"]  # labelled=false in dataset.json


def test_nifti_channels_are_grouped_and_geometry_recorded(tmp_path):
    folder = tmp_path / "mr"
    folder.mkdir()
    for case in ("s1", "s2"):
        for channel in range(2):
            sitk.WriteImage(sitk_image(np.ones((6, 20, 24)), (0.8, 0.8, 3.0), (10.0, -5.0, 2.0)),
                            str(folder / f"{case}_{channel:04d}.nii.gz"))
    target = register_folder(folder, 702, "MR", tmp_path / "raw")
    record = meta(target)["kt_nnunet"]["cases"]["s2"]
    assert record["files"] == ["s2_0000.nii.gz", "s2_0001.nii.gz"] and record["shape"] == [6, 20, 24]
    assert record["spacing"] == pytest.approx([3.0, 0.8, 0.8]) and record["origin"] == pytest.approx([10, -5, 2])
    assert meta(target)["channel_names"] == {"0": "channel0", "1": "channel1"}


@pytest.mark.parametrize("ending", [".nrrd", ".tif"])
def test_nrrd_and_tif_folders(tmp_path, ending):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        array = np.full((16, 16), 50 * i + 10, np.uint8)
        if ending == ".tif":
            tifffile.imwrite(folder / f"img{i}.tiff", array)
        else:
            sitk.WriteImage(sitk_image(array[None], (1.0, 1.0, 1.0)), str(folder / f"img{i}.nrrd"))
    target = register_folder(folder, 703, "Imgs", tmp_path / "raw")
    files = sorted((target / "imagesTr").iterdir())
    assert [p.name for p in files] == [f"img0_0000{ending}", f"img1_0000{ending}"]  # .tiff is read as 2D .tif
    assert read_images([files[1]])[0].max() == 60


def test_like_a_source_dataset_converts_to_its_ending(tmp_path):
    source = tiny_dataset(704, "Source", tmp_path / "raw", num_train=1, num_test=0)
    folder = tmp_path / "pngs"
    folder.mkdir()
    Image.fromarray(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64).astype(np.uint8)).save(folder / "x.png")
    target = register_folder(folder, 705, "Target", tmp_path / "raw", like=source)
    assert [p.name for p in (target / "imagesTr").iterdir()] == ["x_0000.nii.gz"]
    assert meta(target)["labels"] == meta(source)["labels"]
    assert meta(target)["channel_names"] == meta(source)["channel_names"]
    image, props = read_images([target / "imagesTr" / "x_0000.nii.gz"])
    assert image.shape == (1, 1, 64, 64) and image[0, 0, 0, 5] == 5


@pytest.mark.parametrize("case, error, message", [
    ("empty", EmptyFolderError, r"holds no image files"),
    ("mixed", FileEndingError, r"mixes file types .*convert the files to one type"),
    ("jpeg", FileEndingError, r"photo\.jpg: not an image type nnU-Net reads.*JPEG is lossy"),
    ("missing_channel", MissingChannelError, r"b_0001\.nii\.gz: case 'b' has channel\(s\) \[0\] but 2 are expected"),
    ("half_named", FileEndingError, r"plain\.nii\.gz: named without a _CCCC channel suffix"),
    ("corrupt", CorruptFileError, r"broken\.nii\.gz: (no nnU-Net reader can open|cannot be read)"),
    ("channel_geometry", GeometryMismatchError, r"c_0000\.nii\.gz, .*c_0001\.nii\.gz: the channel files of this "
                                                r"case do not share a geometry"),
])
def test_folder_errors(tmp_path, case, error, message):
    folder = tmp_path / "in"
    folder.mkdir()
    def write(name, shape=(8, 8)):
        sitk.WriteImage(sitk_image(np.ones(shape), (1.0, 1.0)), str(folder / name))

    if case == "mixed":
        write("a.nii.gz")
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "b.png")
    elif case == "jpeg":
        write("a.nii.gz")
        (folder / "photo.jpg").write_bytes(b"\xff\xd8\xff")
    elif case == "missing_channel":
        for name in ("a_0000.nii.gz", "a_0001.nii.gz", "b_0000.nii.gz"):
            write(name)
    elif case == "half_named":
        write("a_0000.nii.gz")
        write("plain.nii.gz")
    elif case == "corrupt":
        write("good.nii.gz")
        (folder / "broken.nii.gz").write_bytes(b"not an image")
    elif case == "channel_geometry":
        write("c_0000.nii.gz")
        write("c_0001.nii.gz", (9, 9))
    with pytest.raises(error, match=message):
        register_folder(folder, 706, "Bad", tmp_path / "raw")
    assert not (tmp_path / "raw").exists() or list((tmp_path / "raw").iterdir()) == []


def test_rgb_png_is_one_file_with_three_channels(tmp_path):
    folder = tmp_path / "rgb"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "colour.png")
    target = register_folder(folder, 710, "Rgb", tmp_path / "raw")
    assert meta(target)["channel_names"] == {"0": "channel0", "1": "channel1", "2": "channel2"}
    assert [p.name for p in (target / "imagesTr").iterdir()] == ["colour_0000.png"]
    assert validate_dataset(target).num_channels == 3


def test_channel_count_must_match_the_source(tmp_path):
    source = tiny_dataset(707, "Source", tmp_path / "raw", num_train=1, num_test=0)
    folder = tmp_path / "rgb"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "colour.png")
    with pytest.raises(MissingChannelError, match=r"images have 3 channel\(s\) but the source dataset has 1"):
        register_folder(folder, 708, "Rgb", tmp_path / "raw", like=source)


def test_cli_register_folder_and_force(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    sitk.WriteImage(sitk_image(np.ones((8, 8)), (1.0, 1.0)), str(folder / "a.nii.gz"))
    args = ["data", "register-folder", str(folder), "--id", "709", "--name", "Cli", "--out", str(tmp_path / "raw")]
    runner = CliRunner()
    assert runner.invoke(main, args).exit_code == 0
    again = runner.invoke(main, args)
    assert again.exit_code == 1 and "already exists; pass --force" in again.output
    assert runner.invoke(main, args + ["--force"]).exit_code == 0
    with pytest.raises(DatasetExistsError):
        register_folder(folder, 709, "Cli", tmp_path / "raw")
