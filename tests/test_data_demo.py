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


@pytest.fixture(scope="module")
def demo3d(tmp_path_factory):
    return build_demo(tmp_path_factory.mktemp("demo3d"), dims=3, with_downstream=True)


def test_3d_demo_volumes_are_the_templates_own_anatomy_and_never_neighbours(demo3d):
    """Cases are (z, y, x) volumes at 2 mm: each the anterior or posterior half of one axial slab, labelled
    from the template; the roles' slabs keep `gap` slices apart, and both halves of a slab share a role."""
    assert [p.name for p in demo3d.as_dict().values()] == [
        "Dataset900_MNIDemo3DSource", "Dataset901_MNIDemo3DTransferal", "Dataset902_MNIDemo3DTest",
        "Dataset903_MNIDemo3DDownstream"]
    _, labels = load_mni152(resolution_mm=2)
    slabs = {}
    for role, folder in demo3d.as_dict().items():
        info = meta(folder)
        assert info["kt_nnunet"]["dims"] == 3 and info["numTraining"] >= 4
        cases = sorted(p.name[: -len("_0000.nii.gz")] for p in (folder / "imagesTr").iterdir())
        assert len(cases) == info["numTraining"] and len(cases) % 2 == 0
        for case in cases:
            image = sitk.ReadImage(str(folder / "imagesTr" / f"{case}_0000.nii.gz"))
            assert image.GetDimension() == 3 and image.GetSpacing() == (2.0, 2.0, 2.0)
            assert min(image.GetSize()) >= 3
        slabs[role] = {int(c.split("_z")[1][:3]) for c in cases}
        assert {c.rsplit("_", 1)[1] for c in cases} == {"anterior", "posterior"}
    first = sorted((demo3d.test / "labelsTr").iterdir())[0]
    label_map = read(first)
    z = int(first.name.split("_z")[1][:3])
    assert label_map.shape[0] <= 6 and set(np.unique(label_map)) == {0, 1, 2}
    # the label volume is a crop of the template's label map at those slices (RAS x, y -> array x, y)
    template = labels[:, :, z:z + label_map.shape[0]].transpose(2, 1, 0)
    found = [(y, x) for y in range(template.shape[1] - label_map.shape[1] + 1)
             for x in range(template.shape[2] - label_map.shape[2] + 1)
             if np.array_equal(template[:, y:y + label_map.shape[1], x:x + label_map.shape[2]], label_map)]
    assert found, "the 3D demo's labels are not the template's"
    gap = meta(demo3d.test)["kt_nnunet"]["gap"]
    roles_slices = {role: set(meta(folder)["kt_nnunet"]["slices"]) for role, folder in demo3d.as_dict().items()
                    if role != "downstream"}
    for role, own in roles_slices.items():
        others = set().union(*(s for r, s in roles_slices.items() if r != role))
        assert min(abs(a - b) for a in own for b in others) >= gap + 1
    assert slabs["downstream"] == slabs["transferal"]


@pytest.mark.slow
def test_nnunet_accepts_the_3d_demo_sets(nnunet_env):
    result = CliRunner().invoke(main, ["data", "demo", "--3d", "--out", str(nnunet_env["nnUNet_raw"]),
                                       "--base-id", "960"])
    assert result.exit_code == 0, result.output
    assert "-c 3d_fullres" in result.output
    env = {k: v for k, v in os.environ.items() if k != "nnUNet_n_proc_DA"}  # pitfall 23: it breaks planning
    run = subprocess.run(["nnUNetv2_plan_and_preprocess", "-d", "960", "962", "--verify_dataset_integrity",
                          "-c", "3d_fullres", "-np", "1", "-npfp", "1"], env=env, capture_output=True, text=True,
                         timeout=400)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.stdout.count("verify_dataset_integrity Done") == 2
    plans = json.loads((nnunet_env["nnUNet_preprocessed"] / "Dataset960_MNIDemo3DSource" / "nnUNetPlans.json")
                       .read_text())
    assert len(plans["configurations"]["3d_fullres"]["patch_size"]) == 3
