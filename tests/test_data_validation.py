"""Validation: each broken dataset gives one error that names the file and the fix (API and CLI)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from click.testing import CliRunner
from labelling_teachers import make_model_folder, nnunet_plans, with_architecture

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


def test_a_truncated_nii_gz_is_refused_naming_the_file(tmp_path):
    """A truncated .nii.gz was read without error (SimpleITK fills the missing voxels)."""
    from kt_nnunet.data import CorruptFileError, tiny_dataset, validate_dataset

    folder = tiny_dataset(612, "Truncated", tmp_path, num_train=2, num_test=0)
    image = folder / "imagesTr" / "case_001_0000.nii.gz"
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match=r"case_001_0000\.nii\.gz.*truncated"):
        validate_dataset(folder)
    label = folder / "labelsTr" / "case_000.nii.gz"
    image.write_bytes(data)
    label.write_bytes(label.read_bytes()[:-8])  # only the gzip trailer (CRC and size) is missing
    with pytest.raises(CorruptFileError, match=r"labelsTr/case_000\.nii\.gz.*truncated"):
        validate_dataset(folder)


def _edit_json(folder: Path, **changes) -> None:
    content = json.loads((folder / "dataset.json").read_text())
    for key, value in changes.items():
        if value is _DELETE:
            del content[key]
        else:
            content[key] = value
    (folder / "dataset.json").write_text(json.dumps(content))


_DELETE = object()


def _write_like(path: Path, like: Path, array=None, spacing=None) -> None:
    """An image file with ``like``'s geometry, optionally other voxels (``array``) or an isotropic ``spacing``."""
    import SimpleITK as sitk

    reference = sitk.ReadImage(str(like))
    voxels = sitk.GetArrayFromImage(reference)
    image = sitk.GetImageFromArray(voxels if array is None else array)
    if array is None or array.shape == voxels.shape:
        image.CopyInformation(reference)
    if spacing is not None:
        image.SetSpacing((spacing,) * image.GetDimension())
    sitk.WriteImage(image, str(path))


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


IMAGE = "imagesTr/case_001_0000.nii.gz"


LABEL = "labelsTr/case_001.nii.gz"


def _label_array(folder: Path):
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(str(folder / LABEL)))


BROKEN_DATASETS = {
    "no_dataset_json": (lambda f: (f / "dataset.json").unlink(), False),
    "dataset_json_not_json": (lambda f: (f / "dataset.json").write_text("{not json"), False),
    "dataset_json_a_list": (lambda f: (f / "dataset.json").write_text("[1, 2]"), False),
    "no_labels_key": (lambda f: _edit_json(f, labels=_DELETE), False),
    "labels_with_a_gap": (lambda f: _edit_json(f, labels={"background": 0, "class1": 1, "class2": 3}), False),
    "labels_not_numbers": (lambda f: _edit_json(f, labels={"background": 0, "class1": "one", "class2": 2}), False),
    "unknown_file_ending": (lambda f: _edit_json(f, file_ending=".jpg"), False),
    "num_training_wrong": (lambda f: _edit_json(f, numTraining=7), False),
    "label_file_missing": (lambda f: (f / LABEL).unlink(), False),
    "label_without_image": (lambda f: shutil.copy(f / LABEL, f / "labelsTr/case_009.nii.gz"), False),
    "channel_file_missing": (lambda f: _edit_json(f, channel_names={"0": "a", "1": "b"}), False),
    "label_value_undeclared": (lambda f: _write_like(f / LABEL, f / LABEL, _label_array(f) * 0 + 5), False),
    "label_shape_differs": (lambda f: _write_like(f / LABEL, f / LABEL, _label_array(f)[..., :32, :32]), False),
    "label_spacing_differs": (lambda f: _write_like(f / LABEL, f / LABEL, spacing=2.0), False),
    "truncated_label": (lambda f: _truncate(f / LABEL), False),
    "truncated_image": (lambda f: _truncate(f / IMAGE), True),
    "gzip_trailer_missing": (lambda f: _truncate(f / IMAGE, keep=(1 - 8 / (f / IMAGE).stat().st_size)), True),
    "empty_image_file": (lambda f: (f / IMAGE).write_bytes(b""), True),
    "text_named_nii_gz": (lambda f: (f / IMAGE).write_text("not an image"), True),
    "image_without_channel_suffix": (lambda f: (f / IMAGE).rename(f / "imagesTr/case_001.nii.gz"), True),
    "no_images": (lambda f: [p.unlink() for p in (f / "imagesTr").iterdir()], True),
}


COMMANDS = {
    "data check": lambda d, teacher: ["data", "check", str(d.folder)],
    "plan": lambda d, teacher: ["plan", str(d.id), "--arch", "light_unet", "--tiny", "-np", "1"],
    "train": lambda d, teacher: ["train", str(d.id), "--arch", "light_unet", "--tiny", "--epochs", "1", "--iterations",
                                 "1", "--val-iterations", "1", "--no-validate", "--device", "cpu", "-np", "1"],
    "label": lambda d, teacher: ["label", "--teacher", str(teacher), "--images", str(d.id), "--out",
                                 "Dataset899_Out", "--no-tta", "--no-progress"],
    "transfer": lambda d, teacher: ["transfer", "--teacher", str(teacher), "--dataset", str(d.id), "--arch",
                                    "light_unet", "--tiny", "--epochs", "1", "--iterations", "1", "--val-iterations",
                                    "1", "--no-validate", "-np", "1"],
    "finetune": lambda d, teacher: ["finetune", "--model", str(teacher), "--dataset", str(d.id), "--epochs", "1",
                                    "--iterations", "1", "--val-iterations", "1", "--no-validate", "-np", "1"],
}


class _Broken:
    def __init__(self, name, dataset_id, folder, images_broken):
        self.name, self.id, self.folder, self.images_broken = name, dataset_id, folder, images_broken


@pytest.fixture(scope="module")
def broken_datasets(tmp_path_factory):
    """The nnU-Net folders with one broken copy of a 2-case tiny dataset per BROKEN_DATASETS entry, and a teacher."""
    from kt_nnunet.data import tiny_dataset

    root = tmp_path_factory.mktemp("fuzz")
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (root / variable).mkdir()
    base = tiny_dataset(900, "Base", root / "base", num_train=2, num_test=0)
    teacher = make_model_folder(root / "models" / "nnUNetTrainer__ktPlans_light_unet__2d",
                                with_architecture(nnunet_plans(), "light_unet"))
    broken = []
    for index, (name, (mutate, images_broken)) in enumerate(BROKEN_DATASETS.items()):
        folder = root / "nnUNet_raw" / f"Dataset{901 + index}_Fuzz"
        shutil.copytree(base, folder)
        mutate(folder)
        broken.append(_Broken(name, 901 + index, folder, images_broken))
    return root, teacher, broken


def _tree(root: Path) -> set:
    return {p for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results") for p in (root / variable).rglob("*")}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_broken_datasets_give_each_command_one_error_line_and_leave_nothing(broken_datasets, command, monkeypatch):
    """21 broken datasets fed to each command's dataset argument: exit 1, one `Error:` line naming the file,
    no traceback, nothing new under nnUNet_raw/preprocessed/results (`label` reads only the images, so it gets
    the sets with broken images)."""
    from kt_nnunet.cli import main

    root, teacher, broken = broken_datasets
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(variable, str(root / variable))
    monkeypatch.setenv("nnUNet_def_n_proc", "1")
    cases = [d for d in broken if d.images_broken or command != "label"]
    assert len(cases) == (6 if command == "label" else 21)  # all of them; for label, those with broken images
    failures = []
    for dataset in cases:
        before = _tree(root)
        result = CliRunner().invoke(main, COMMANDS[command](dataset, teacher))
        new = sorted(str(p.relative_to(root)) for p in _tree(root) - before)
        lines = result.output.strip().splitlines()
        if (result.exit_code != 1 or "Traceback" in result.output or new or len(lines) != 1
                or not lines[-1].startswith("Error: ") or str(dataset.folder.name) not in lines[-1]):
            failures.append(f"{dataset.name}: exit {result.exit_code}, new {new[:3]}, "
                            f"{type(result.exception).__name__}: {result.output.strip()[-300:]}")
            for path in new:  # keep one failure from spoiling the next dataset's check
                shutil.rmtree(root / path, ignore_errors=True) if (root / path).is_dir() else (root / path).unlink(
                    missing_ok=True)
    assert not failures, "\n".join(failures)
