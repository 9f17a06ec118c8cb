"""The embedded real demo (nilearn MNI152): three roles, no slice-neighbour leakage, an appearance shift,
determinism, --force, the CLI, and nnU-Net's --verify_dataset_integrity on the labelled sets."""
from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
import SimpleITK as sitk
from click.testing import CliRunner

pytest.importorskip("nilearn", reason="the demo is built from the MNI152 template inside the nilearn wheel")

from kt_nnunet.cli import main  # noqa: E402
from kt_nnunet.data import DatasetExistsError, build_demo, validate_dataset  # noqa: E402
from kt_nnunet.data.demo import assign_slabs, load_mni152  # noqa: E402


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo(tmp_path_factory.mktemp("demo"))


def meta(folder):
    return json.loads((folder / "dataset.json").read_text())


def read(path):
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def test_three_datasets_with_their_roles(demo):
    assert [p.name for p in demo.as_dict().values()] == [
        "Dataset900_MNIDemoSource", "Dataset901_MNIDemoTransferal", "Dataset902_MNIDemoTest"]
    for role, folder in demo.as_dict().items():
        info = meta(folder)
        assert info["kt_nnunet"]["role"] == role
        assert info["labels"] == {"background": 0, "grey_matter": 1, "white_matter": 2}
        assert info["numTraining"] >= 10
    assert not (demo.transferal / "labelsTr").exists() and meta(demo.transferal)["kt_nnunet"]["labelled"] is False
    for folder in (demo.source, demo.test):
        assert validate_dataset(folder).labels_found == [0, 1, 2]
    assert validate_dataset(demo.transferal, require_labels=False).cases


def test_labels_follow_the_data_sources_recipe():
    _, labels = load_mni152(resolution_mm=1)
    assert labels.shape == (197, 233, 189)
    assert np.bincount(labels.ravel()).tolist() == [6963686, 1079599, 632004]  # data-sources.md B


def test_no_slice_is_a_neighbour_of_another_roles_slice(demo):
    slices = {role: set(meta(folder)["kt_nnunet"]["slices"]) for role, folder in demo.as_dict().items()}
    gap = meta(demo.test)["kt_nnunet"]["gap"]
    for role, own in slices.items():
        others = set().union(*(s for r, s in slices.items() if r != role))
        assert min(abs(a - b) for a in own for b in others) >= gap + 1 >= 2
    # the case names say which slice they are, and the files hold exactly those slices
    for role, folder in demo.as_dict().items():
        names = sorted(p.name for p in (folder / "imagesTr").iterdir())
        assert names == [f"mni_z{z:03d}_0000.nii.gz" for z in sorted(slices[role])]


def test_slabs_are_dealt_in_turn_with_gaps():
    slabs = assign_slabs(list(range(10, 40)), block=4, gap=2)
    assert slabs["source"][:4] == [10, 11, 12, 13] and slabs["transferal"][:4] == [16, 17, 18, 19]
    assert slabs["test"][:4] == [22, 23, 24, 25] and 14 not in sum(slabs.values(), [])


def test_transferal_and_test_share_a_shifted_appearance(demo):
    def grey_to_white(folder, labels_folder):
        grey, white = [], []
        for label_file in sorted(labels_folder.iterdir()):
            image = read(folder / "imagesTr" / label_file.name.replace(".nii.gz", "_0000.nii.gz"))
            labels = read(label_file)
            grey.append(image[labels == 1])
            white.append(image[labels == 2])
        return float(np.concatenate(grey).mean() / np.concatenate(white).mean())

    source_ratio = grey_to_white(demo.source, demo.source / "labelsTr")
    test_ratio = grey_to_white(demo.test, demo.test / "labelsTr")
    assert test_ratio < source_ratio - 0.05  # gamma 2: grey matter darker relative to white matter
    assert meta(demo.transferal)["kt_nnunet"]["domain"] == meta(demo.test)["kt_nnunet"]["domain"]
    assert meta(demo.source)["kt_nnunet"]["domain"] != meta(demo.test)["kt_nnunet"]["domain"]


def test_deterministic_and_never_overwritten(demo, tmp_path):
    again = build_demo(tmp_path)
    for role, folder in demo.as_dict().items():
        first = sorted((folder / "imagesTr").iterdir())
        assert np.array_equal(read(first[3]), read(again.as_dict()[role] / "imagesTr" / first[3].name))
    with pytest.raises(DatasetExistsError, match="Dataset900_MNIDemoSource already exists; pass --force"):
        build_demo(tmp_path, seed=1)
    assert build_demo(tmp_path, force=True, block=3, gap=1).source.is_dir()


def test_cli_demo(tmp_path):
    result = CliRunner().invoke(main, ["data", "demo", "--out", str(tmp_path), "--base-id", "950",
                                       "--resolution", "4"])
    assert result.exit_code == 0, result.output
    assert "Dataset951_MNIDemoTransferal" in result.output and "--verify_dataset_integrity" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "Dataset950_MNIDemoSource", "Dataset951_MNIDemoTransferal", "Dataset952_MNIDemoTest"]


@pytest.mark.slow
def test_nnunet_accepts_the_labelled_demo_sets(nnunet_env):
    result = CliRunner().invoke(main, ["data", "demo", "--out", str(nnunet_env["nnUNet_raw"])])
    assert result.exit_code == 0, result.output
    env = {k: v for k, v in os.environ.items() if k != "nnUNet_n_proc_DA"}  # pitfall 23: it breaks planning
    run = subprocess.run(["nnUNetv2_plan_and_preprocess", "-d", "900", "902", "--verify_dataset_integrity",
                          "-c", "2d", "-np", "1", "-npfp", "1"], env=env, capture_output=True, text=True, timeout=400)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.stdout.count("verify_dataset_integrity Done") == 2
    for name in ("Dataset900_MNIDemoSource", "Dataset902_MNIDemoTest"):
        plans = json.loads((nnunet_env["nnUNet_preprocessed"] / name / "nnUNetPlans.json").read_text())
        assert plans["configurations"]["2d"]["normalization_schemes"] == ["ZScoreNormalization"]
