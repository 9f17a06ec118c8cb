"""The procedural generator: layout, determinism, domain options, speed, atomic writes, --force, CLI."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import SimpleITK as sitk
from click.testing import CliRunner

from kt_nnunet.cli import main
from kt_nnunet.data import (DatasetExistsError, DomainConfig, ShapeConfig, synth_case, synth_dataset, tiny_dataset,
                            validate_dataset)
from kt_nnunet.data.synth_domain import DOMAIN_PRESETS


def read(path):
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def test_layout_and_dataset_json(tmp_path):
    folder = tiny_dataset(501, "Tiny", tmp_path)
    assert folder == tmp_path / "Dataset501_Tiny"
    assert sorted(p.name for p in folder.iterdir()) == ["dataset.json", "imagesTr", "imagesTs", "labelsTr", "labelsTs"]
    assert len(list((folder / "imagesTr").iterdir())) == 6 and (folder / "imagesTr" / "case_000_0000.nii.gz").is_file()
    assert (folder / "labelsTs" / "test_001.nii.gz").is_file()
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "class1": 1, "class2": 2}
    assert meta["numTraining"] == 6 and meta["file_ending"] == ".nii.gz" and meta["channel_names"] == {"0": "synthetic"}
    assert meta["kt_nnunet"]["role"] == "source" and meta["kt_nnunet"]["seed"] == 0
    summary = validate_dataset(folder)
    assert summary.labels_found == [0, 1, 2] and summary.shapes["case_000"] == [1, 64, 64]


def test_same_seed_same_data_other_seed_other_data(tmp_path):
    a = synth_dataset(1, "A", tmp_path, num_train=3, num_test=1, seed=7)
    b = synth_dataset(2, "B", tmp_path, num_train=3, num_test=1, seed=7)
    c = synth_dataset(3, "C", tmp_path, num_train=3, num_test=1, seed=8)
    for sub, name in [("imagesTr", "case_002_0000.nii.gz"), ("labelsTr", "case_002.nii.gz"),
                      ("imagesTs", "test_000_0000.nii.gz")]:
        assert np.array_equal(read(a / sub / name), read(b / sub / name))
        assert not np.array_equal(read(a / sub / name), read(c / sub / name))
    # a case does not depend on how many cases are made
    image, labels = synth_case(2, seed=7)
    assert np.array_equal(labels, read(a / "labelsTr" / "case_002.nii.gz"))
    assert np.allclose(image[0], read(a / "imagesTr" / "case_002_0000.nii.gz"))


@pytest.mark.parametrize("option", [dict(contrast=0.5), dict(gamma=2.0), dict(invert=True), dict(noise=0.1),
                                    dict(speckle=0.4), dict(bias_field=0.5), dict(blur_mm=1.5),
                                    dict(class_intensities=(0.9, 0.1, 0.5)), dict(intensity_scale=1000.0)])
def test_each_domain_option_changes_images_not_labels(option):
    base_image, base_labels = synth_case(0, seed=3)
    image, labels = synth_case(0, domain=dataclasses.replace(DomainConfig(), **option), seed=3)
    assert np.array_equal(labels, base_labels)  # a pure appearance shift
    assert np.abs(image - base_image).mean() > 0.005


def test_domain_options_do_what_they_say():
    clean = DomainConfig(noise=0.0, texture=0.0, intensity_jitter=0.0)
    image, labels = synth_case(0, domain=clean, seed=1)
    assert np.allclose(image[0][labels == 0], 0.05) and image[0][labels == 2].mean() > image[0][labels == 1].mean()
    inverted, _ = synth_case(0, domain=dataclasses.replace(clean, invert=True), seed=1)
    assert inverted[0][labels == 2].mean() < inverted[0][labels == 1].mean()
    noisy, _ = synth_case(0, domain=dataclasses.replace(clean, noise=0.1), seed=1)
    assert 0.08 < (noisy - image).std() < 0.12
    blurred, _ = synth_case(0, domain=dataclasses.replace(clean, blur_mm=2.0), seed=1)
    assert np.abs(np.diff(blurred[0], axis=1)).max() < np.abs(np.diff(image[0], axis=1)).max()
    speckled, _ = synth_case(0, domain=dataclasses.replace(clean, speckle=0.5), seed=1)
    ratio = speckled[0][labels == 1] / image[0][labels == 1]
    assert abs(ratio.mean() - 1) < 0.1 and 0.4 < ratio.std() < 0.6  # unit-mean multiplicative noise


def test_spacing_and_shape_statistics_change_geometry():
    fine = ShapeConfig(shape=(64, 64), spacing=(1.0, 1.0), irregularity=0, size_std=0)
    coarse = dataclasses.replace(fine, spacing=(2.0, 2.0))
    area_fine = (synth_case(0, fine, seed=2)[1] > 0).sum()
    area_coarse = (synth_case(0, coarse, seed=2)[1] > 0).sum()
    assert 0.15 < area_coarse / area_fine < 0.35  # same millimetres, a quarter of the pixels
    big = dataclasses.replace(fine, radius_mm=25.0)
    assert (synth_case(0, big, seed=2)[1] > 0).sum() > 1.5 * area_fine
    many = ShapeConfig(shape=(64, 64), num_classes=6)
    for index in range(5):
        assert set(np.unique(synth_case(index, many, seed=index)[1])) == set(range(6))


def test_3d_multichannel_and_png(tmp_path):
    shapes = ShapeConfig(shape=(16, 32, 32), spacing=(3.0, 1.0, 1.0), num_classes=4)
    folder = synth_dataset(11, "Vol", tmp_path, num_train=2, num_test=1, shapes=shapes, num_channels=2,
                           domain=DOMAIN_PRESETS["ultrasound"])
    assert (folder / "imagesTr" / "case_001_0001.nii.gz").is_file()
    image = sitk.ReadImage(str(folder / "imagesTr" / "case_000_0000.nii.gz"))
    assert image.GetSize() == (32, 32, 16) and image.GetSpacing() == (1.0, 1.0, 3.0)
    assert validate_dataset(folder).num_channels == 2
    png = synth_dataset(12, "Png", tmp_path, num_train=2, num_test=0, file_ending=".png")
    assert read(png / "imagesTr" / "case_000_0000.png").dtype == np.uint8
    assert validate_dataset(png).labels_found == [0, 1, 2]


def test_tens_of_64px_cases_in_seconds(tmp_path):
    start = time.perf_counter()
    synth_dataset(13, "Speed", tmp_path, num_train=40, num_test=10, domain=DOMAIN_PRESETS["shifted"])
    assert time.perf_counter() - start < 15  # about 0.5 s here; generous for busy CI machines


def test_existing_dataset_needs_force(tmp_path):
    folder = tiny_dataset(14, "Keep", tmp_path, num_train=2)
    before = read(folder / "imagesTr" / "case_000_0000.nii.gz")
    with pytest.raises(DatasetExistsError, match=r"Dataset014_Keep already exists; pass --force"):
        tiny_dataset(14, "Keep", tmp_path, num_train=2, seed=5)
    assert np.array_equal(before, read(folder / "imagesTr" / "case_000_0000.nii.gz"))
    tiny_dataset(14, "Keep", tmp_path, num_train=3, seed=5, force=True)
    assert len(list((folder / "labelsTr").iterdir())) == 3
    with pytest.raises(DatasetExistsError, match="already uses dataset id 14"):
        tiny_dataset(14, "Other", tmp_path, num_train=2)


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    from kt_nnunet.data import synth

    calls = []

    def failing_write(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 5:
            raise OSError("disk full")
        return original(path, *args, **kwargs)

    original = synth.write_image
    monkeypatch.setattr(synth, "write_image", failing_write)
    with pytest.raises(OSError, match="disk full"):
        tiny_dataset(15, "Broken", tmp_path)
    assert list(tmp_path.iterdir()) == []  # no dataset, no staging folder


KILLED_WRITER = """
import sys, time
from pathlib import Path
from kt_nnunet.data import synth, tiny_dataset
original, calls = synth.write_image, []
def slow_write(path, *args, **kwargs):
    calls.append(path)
    if len(calls) == 4:
        Path(sys.argv[2]).write_text("half-way")
        time.sleep(120)
    return original(path, *args, **kwargs)
synth.write_image = slow_write
tiny_dataset(19, "Killed", sys.argv[1])
"""


def test_kill_9_leaves_no_dataset_and_the_next_write_cleans_up(tmp_path):
    marker = tmp_path / "marker"
    out = tmp_path / "raw"
    process = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(out), str(marker)])
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        assert marker.exists(), "the writer never got half-way"
    finally:
        process.kill()
        process.wait()
    leftovers = [p.name for p in out.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(".kt-tmp-Dataset019_Killed-")  # hidden, not a dataset
    tiny_dataset(19, "Killed", out, num_train=1, num_test=0)
    assert [p.name for p in out.iterdir()] == ["Dataset019_Killed"]


def test_stale_staging_of_killed_writers_is_removed(tmp_path):
    stale = tmp_path / ".kt-tmp-Dataset016_X-pid999999999-abc"
    (stale / "imagesTr").mkdir(parents=True)
    tiny_dataset(16, "X", tmp_path, num_train=1, num_test=0)
    assert not stale.exists() and (tmp_path / "Dataset016_X").is_dir()


def test_cli_synth(tmp_path):
    runner = CliRunner()
    args = ["data", "synth", "--id", "17", "--name", "Cli", "--out", str(tmp_path), "--train", "3", "--test", "1",
            "--preset", "shifted", "--speckle", "0.2", "--spacing", "0.5,0.5", "--classes", "4"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "Dataset017_Cli" / "dataset.json").read_text())
    assert meta["kt_nnunet"]["domain"]["speckle"] == 0.2 and meta["kt_nnunet"]["domain"]["gamma"] == 1.6
    assert meta["kt_nnunet"]["shapes"]["spacing"] == [0.5, 0.5] and len(meta["labels"]) == 4
    again = runner.invoke(main, args)
    assert again.exit_code == 1 and "already exists; pass --force" in again.output
    assert "Traceback" not in again.output
    assert runner.invoke(main, args + ["--force"]).exit_code == 0


def test_default_output_is_nnunet_raw(nnunet_env):
    folder = tiny_dataset(18, "Raw", num_train=1, num_test=0)
    assert folder.parent == nnunet_env["nnUNet_raw"] and os.path.isdir(folder / "labelsTr")
