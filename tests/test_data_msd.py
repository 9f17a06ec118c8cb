"""MSD import through nnU-Net's converter: an MSD-format fixture made here, its folder-name rule, then
nnU-Net's own --verify_dataset_integrity on the result."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from kt_nnunet.cli import main
from kt_nnunet.data import DatasetExistsError, import_msd, validate_dataset, write_msd_task
from kt_nnunet.data.synth_shapes import ShapeConfig
from kt_nnunet.nnunet.msd import MSDImportError, parse_task_name
from kt_nnunet.nnunet.raw_dataset import DatasetJsonError, FileEndingError, MissingLabelError


@pytest.fixture
def spleen_task(tmp_path):
    """A Task09_Spleen-like MSD folder: 3D NIfTIs spleen_N.nii.gz, labels 0/1, MSD dataset.json."""
    return write_msd_task(tmp_path / "msd" / "Task09_Spleen", num_train=4, num_test=1)


def test_fixture_has_the_msd_layout(spleen_task):
    assert sorted(p.name for p in spleen_task.iterdir()) == ["dataset.json", "imagesTr", "imagesTs", "labelsTr"]
    meta = json.loads((spleen_task / "dataset.json").read_text())
    assert meta["modality"] == {"0": "CT"} and meta["labels"] == {"0": "background", "1": "spleen"}
    assert meta["training"][0] == {"image": "./imagesTr/spleen_1.nii.gz", "label": "./labelsTr/spleen_1.nii.gz"}
    assert meta["test"] == ["./imagesTs/spleen_5.nii.gz"]


def test_import_converts_with_nnunet(spleen_task, nnunet_env):
    folder = import_msd(spleen_task)
    assert folder == nnunet_env["nnUNet_raw"] / "Dataset009_Spleen"
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == [f"spleen_{i}_0000.nii.gz" for i in range(1, 5)]
    assert (folder / "imagesTs" / "spleen_5_0000.nii.gz").is_file()
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "CT"} and meta["labels"] == {"background": 0, "spleen": 1}
    assert meta["file_ending"] == ".nii.gz" and "training" not in meta and meta["kt_nnunet"]["role"] == "source"
    assert validate_dataset(folder).labels_found == [0, 1]
    assert [p.name for p in nnunet_env["nnUNet_raw"].iterdir()] == ["Dataset009_Spleen"]  # no staging left
    assert os.environ["nnUNet_raw"] == str(nnunet_env["nnUNet_raw"])  # the converter's private folders are undone


def test_four_d_multimodal_task_is_split(tmp_path, nnunet_env):
    task = write_msd_task(tmp_path / "Task01_BrainTumour", num_train=2, num_test=1, modalities=("FLAIR", "T1w"),
                          shapes=ShapeConfig(shape=(4, 32, 32), spacing=(3.0, 1.0, 1.0), num_classes=3))
    folder = import_msd(task, dataset_id=101)
    assert folder.name == "Dataset101_BrainTumour"
    names = {p.name for p in (folder / "imagesTr").iterdir()}
    assert names >= {"braintumour_1_0000.nii.gz", "braintumour_1_0001.nii.gz"}
    assert validate_dataset(folder).num_channels == 2


def test_folder_name_rule(tmp_path, nnunet_env):
    bad = write_msd_task(tmp_path / "Task10_Fake_Two", num_train=1, num_test=0)
    with pytest.raises(MSDImportError, match=r"Task10_Fake_Two: nnU-Net's MSD converter needs the folder name "
                                             r"TaskNN_Name with exactly one '_'.*rename it to Task10_FakeTwo"):
        import_msd(bad)
    assert list(nnunet_env["nnUNet_raw"].iterdir()) == []
    with pytest.raises(MSDImportError, match="rename it like Task09_Spleen"):
        parse_task_name("Spleen")
    assert parse_task_name("/data/Task05_Prostate/") == (5, "Prostate")


def test_broken_tasks_give_clear_errors(spleen_task, nnunet_env):
    shutil.rmtree(spleen_task / "imagesTs")
    with pytest.raises(MSDImportError, match=r"imagesTs is missing.*create it empty"):
        import_msd(spleen_task)
    (spleen_task / "imagesTs").mkdir()
    (spleen_task / "labelsTr" / "spleen_2.nii.gz").unlink()
    with pytest.raises(MissingLabelError, match=r"labelsTr/spleen_2\.nii\.gz is missing"):
        import_msd(spleen_task)
    (spleen_task / "imagesTr" / "spleen_2.nii.gz").rename(spleen_task / "imagesTr" / "spleen_2.nii")
    with pytest.raises(FileEndingError, match=r"spleen_2\.nii: MSD files must be \.nii\.gz"):
        import_msd(spleen_task)
    (spleen_task / "imagesTr" / "spleen_2.nii").unlink()
    meta = json.loads((spleen_task / "dataset.json").read_text())
    del meta["modality"]
    (spleen_task / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetJsonError, match=r"lacks the MSD key\(s\) \['modality'\]"):
        import_msd(spleen_task)


def test_existing_dataset_needs_force(spleen_task, nnunet_env):
    import_msd(spleen_task)
    with pytest.raises(DatasetExistsError, match="Dataset009_Spleen already exists; pass --force"):
        import_msd(spleen_task)
    assert import_msd(spleen_task, force=True).is_dir()


def test_cli_import_msd(spleen_task, nnunet_env, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["data", "import-msd", str(spleen_task), "--dataset-id", "509",
                                  "--out", str(tmp_path / "raw")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "raw" / "Dataset509_Spleen" / "labelsTr" / "spleen_1.nii.gz").is_file()


@pytest.mark.slow
def test_imported_task_passes_nnunet_verify_dataset_integrity(spleen_task, nnunet_env):
    import_msd(spleen_task)
    env = {k: v for k, v in os.environ.items() if k != "nnUNet_n_proc_DA"}  # pitfall 23: it breaks planning
    result = subprocess.run(["nnUNetv2_plan_and_preprocess", "-d", "9", "--verify_dataset_integrity", "-c", "2d",
                             "-np", "1", "-npfp", "1"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "verify_dataset_integrity Done" in result.stdout
    preprocessed = nnunet_env["nnUNet_preprocessed"] / "Dataset009_Spleen"
    assert "2d" in json.loads((preprocessed / "nnUNetPlans.json").read_text())["configurations"]
    assert len(list((preprocessed / "nnUNetPlans_2d").glob("*.pkl"))) == 4
