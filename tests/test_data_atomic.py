"""Datasets are published whole (``kt_nnunet.data.atomic``): no temporary file reaches a published dataset, and
``--force`` replaces only what kt-nnunet wrote, for the labelled datasets and the data writers alike."""
from __future__ import annotations

import json

import pytest
from labelling_teachers import teachers, transferal  # noqa: F401  (fixtures)
from refusals import hand_labelled_dataset, one_error_line


def test_staged_datasets_publish_no_temporary_file(tmp_path):
    """A killed atomic write's leftover in a staging folder (`staged_directory`) is not published with the dataset."""
    from kt_nnunet.data.atomic import staged_directory

    with staged_directory(tmp_path / "Dataset838_Staged") as staging:
        (staging / "dataset.json").write_text("{}")
        (staging / ".dataset.json.abcdefgh.tmp").write_text("{")  # a killed atomic write's leftover
    assert sorted(p.name for p in (tmp_path / "Dataset838_Staged").iterdir()) == ["dataset.json"]


@pytest.mark.parametrize("command", ["label", "data synth"])
def test_force_never_replaces_a_dataset_kt_nnunet_did_not_write(nnunet_env, teachers, transferal,  # noqa: F811
                                                                tmp_path, command):
    """`label --out X --force` replaced a hand-labelled dataset kt-nnunet never wrote; the data writers'
    `--force` did the same. Only folders with a kt-nnunet provenance.json / dataset.json record are replaced."""
    target = hand_labelled_dataset(tmp_path / "out" / "Dataset839_Hand")
    args = {"label": ["label", "--teacher", str(teachers["unet"]), "--images", str(transferal), "--out", str(target),
                      "--no-tta", "--no-progress", "--force"],
            "data synth": ["data", "synth", "--id", "839", "--name", "Hand", "--out", str(target.parent), "--shape",
                           "16,16", "--train", "1", "--test", "0", "--force"]}[command]
    line = one_error_line(args, str(target), "not written by kt-nnunet", "would delete its 2 file(s)",
                           "move it elsewhere", "--out")
    assert "--force" not in line
    assert (target / "labelsTr" / "case_000.nii.gz").read_bytes() == b"drawn by hand for a week"
    assert sorted(p.name for p in target.parent.iterdir()) == ["Dataset839_Hand"]  # no work or staging folder


def test_force_still_replaces_what_kt_nnunet_wrote(tmp_path):
    """No false alarm: kt-nnunet's own datasets, labelled ones and empty folders are still replaced."""
    from kt_nnunet.data import tiny_dataset
    from kt_nnunet.data.atomic import check_replaceable

    check_replaceable(tiny_dataset(840, "Ours", tmp_path, num_train=1, num_test=0))
    labelled = tmp_path / "Dataset841_Labelled"
    labelled.mkdir()
    (labelled / "provenance.json").write_text(json.dumps({"settings_fingerprint": "0123"}))
    check_replaceable(labelled)
    (tmp_path / "Dataset842_Empty" / "imagesTr").mkdir(parents=True)
    check_replaceable(tmp_path / "Dataset842_Empty")
    for dataset_id, name in ((840, "Ours"), (841, "Labelled"), (842, "Empty")):  # and --force does replace them
        replaced = tiny_dataset(dataset_id, name, tmp_path, num_train=2, num_test=0, force=True)
        assert replaced == tmp_path / f"Dataset{dataset_id}_{name}"
        assert sorted(p.name for p in (replaced / "labelsTr").iterdir()) == ["case_000.nii.gz", "case_001.nii.gz"]
        assert json.loads((replaced / "dataset.json").read_text())["numTraining"] == 2
        assert not (replaced / "provenance.json").exists()
