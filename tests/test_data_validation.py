"""Validation: each broken dataset gives one error that names the file and the fix (API and CLI)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from click.testing import CliRunner

from kt_nnunet.cli import main
from kt_nnunet.data import (CorruptFileError, DatasetJsonError, EmptyFolderError, FileEndingError,
                            GeometryMismatchError, MissingChannelError, MissingLabelError, NonConsecutiveLabelsError,
                            UnexpectedLabelError, synth_dataset, tiny_dataset, validate_dataset)
from kt_nnunet.errors import KtNnunetError


@pytest.fixture
def dataset(tmp_path):
    return tiny_dataset(601, "Check", tmp_path, num_train=3, num_test=1)


def write_label(path, array, spacing=(1.0, 1.0)):
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))


def edit_json(folder, **changes):
    path = folder / "dataset.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_valid_dataset_passes(dataset):
    summary = validate_dataset(dataset)
    assert summary.cases == ["case_000", "case_001", "case_002"] and summary.test_cases == ["test_000"]
    assert "3 training case(s)" in summary.describe()


def test_missing_channel_file(tmp_path):
    folder = synth_dataset(602, "TwoCh", tmp_path, num_train=2, num_test=0, num_channels=2)
    (folder / "imagesTr" / "case_001_0001.nii.gz").unlink()
    with pytest.raises(MissingChannelError, match=r"imagesTr/case_001_0001\.nii\.gz is missing.*add the file"):
        validate_dataset(folder)


def test_label_shape_mismatch(dataset):
    write_label(dataset / "labelsTr" / "case_001.nii.gz", np.zeros((32, 32)))
    with pytest.raises(GeometryMismatchError, match=r"labelsTr/case_001\.nii\.gz: label shape .*resample"):
        validate_dataset(dataset)


def test_label_spacing_mismatch(dataset):
    write_label(dataset / "labelsTr" / "case_002.nii.gz", np.zeros((64, 64)), spacing=(2.0, 2.0))
    with pytest.raises(GeometryMismatchError, match=r"case_002\.nii\.gz: label spacing .*image's geometry"):
        validate_dataset(dataset)


def test_label_outside_declared_set(dataset):
    labels = np.zeros((64, 64))
    labels[:4, :4] = 5
    write_label(dataset / "labelsTr" / "case_000.nii.gz", labels)
    with pytest.raises(UnexpectedLabelError, match=r"labelsTr/case_000\.nii\.gz: label values \[5\] are not "
                                                   r"declared.*remap them or declare them"):
        validate_dataset(dataset)


def test_non_consecutive_labels(dataset):
    edit_json(dataset, labels={"background": 0, "class1": 1, "class2": 3})
    with pytest.raises(NonConsecutiveLabelsError, match=r"dataset\.json: labels must be consecutive.*\[0, 1, 3\]"
                                                        r".*renumber them to \[0, 1, 2\]"):
        validate_dataset(dataset)


def test_wrong_file_ending(dataset):
    (dataset / "imagesTr" / "case_002_0000.nii.gz").rename(dataset / "imagesTr" / "case_002_0000.nrrd")
    with pytest.raises(FileEndingError, match=r"case_002_0000\.nrrd: ends in \.nrrd, but dataset\.json says "
                                              r"file_ending '\.nii\.gz'; convert"):
        validate_dataset(dataset)


def test_bad_image_name(dataset):
    (dataset / "imagesTr" / "case_002_0000.nii.gz").rename(dataset / "imagesTr" / "case_002.nii.gz")
    with pytest.raises(FileEndingError, match=r"case_002\.nii\.gz: image names must be CASE_CCCC.*rename it"):
        validate_dataset(dataset)


def test_empty_folder(dataset):
    for path in (dataset / "imagesTr").iterdir():
        path.unlink()
    with pytest.raises(EmptyFolderError, match=r"imagesTr holds no image files; put images named CASE_0000"):
        validate_dataset(dataset)


def test_corrupt_file(dataset):
    (dataset / "imagesTr" / "case_001_0000.nii.gz").write_bytes(b"\x1f\x8b not really a nifti")
    with pytest.raises(CorruptFileError, match=r"case_001_0000\.nii\.gz: .*cannot be read.*replace it"):
        validate_dataset(dataset)


def test_corrupt_label(dataset):
    (dataset / "labelsTr" / "case_001.nii.gz").write_bytes(b"garbage")
    with pytest.raises(CorruptFileError, match=r"labelsTr/case_001\.nii\.gz: cannot be read"):
        validate_dataset(dataset)


def test_missing_label_and_orphan_label(dataset):
    (dataset / "labelsTr" / "case_001.nii.gz").unlink()
    with pytest.raises(MissingLabelError, match=r"labelsTr/case_001\.nii\.gz is missing.*add the label"):
        validate_dataset(dataset)
    assert validate_dataset(dataset, require_labels=False).cases  # fine as an unlabelled set


def test_num_training_mismatch(dataset):
    edit_json(dataset, numTraining=5)
    with pytest.raises(DatasetJsonError, match=r"numTraining is 5 but imagesTr holds 3 case\(s\); set numTraining"):
        validate_dataset(dataset)


def test_missing_dataset_json_key(dataset):
    meta = json.loads((dataset / "dataset.json").read_text())
    del meta["file_ending"]
    (dataset / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetJsonError, match=r"dataset\.json lacks the key\(s\) \['file_ending'\]"):
        validate_dataset(dataset)


def test_test_split_is_checked_too(dataset):
    labels = np.full((64, 64), 9)
    write_label(dataset / "labelsTs" / "test_000.nii.gz", labels)
    with pytest.raises(UnexpectedLabelError, match=r"labelsTs/test_000\.nii\.gz"):
        validate_dataset(dataset)
    assert validate_dataset(dataset, check_test=False).test_cases == []


def test_every_error_is_a_kt_nnunet_error():
    for cls in (CorruptFileError, DatasetJsonError, EmptyFolderError, FileEndingError, GeometryMismatchError,
                MissingChannelError, MissingLabelError, NonConsecutiveLabelsError, UnexpectedLabelError):
        assert issubclass(cls, KtNnunetError)


def test_cli_check_gives_one_clean_message(dataset):
    runner = CliRunner()
    ok = runner.invoke(main, ["data", "check", str(dataset)])
    assert ok.exit_code == 0 and ok.output.startswith("ok: Dataset601_Check")
    (dataset / "labelsTr" / "case_000.nii.gz").write_bytes(b"garbage")
    bad = runner.invoke(main, ["data", "check", str(dataset)])
    assert bad.exit_code == 1 and "Traceback" not in bad.output
    assert bad.output.startswith("Error: ") and "case_000.nii.gz" in bad.output and bad.output.count("\n") == 1
