"""The cross-modality real set (TotalSegmentator 2.18.0 sdist): the pinned fetch and the CT/MR datasets.

The fetch needs PyPI; without it the real-data tests skip with the reason the fetcher gives.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from kt_nnunet.data import FetchError, build_crossmodality, fetch_totalsegmentator, validate_dataset
from kt_nnunet.data.crossmodality import LABELS
from kt_nnunet.data.fetch import TOTALSEG_FILES

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "fetch_totalsegmentator.py"


@pytest.fixture(scope="module")
def reference_files():
    try:
        return fetch_totalsegmentator()  # cached under $KT_NNUNET_CACHE or ~/.cache/kt-nnunet after the first run
    except FetchError as exc:
        pytest.skip(f"TotalSegmentator sdist not available: {exc}")


@pytest.fixture(scope="module")
def datasets(reference_files, tmp_path_factory):
    return build_crossmodality(tmp_path_factory.mktemp("xmod"), cache_dir=reference_files)


def meta(folder):
    return json.loads((folder / "dataset.json").read_text())


def test_cache_holds_the_pinned_files(reference_files):
    assert all((reference_files / name).is_file() for name in TOTALSEG_FILES)
    assert json.loads((reference_files / "SOURCE.json").read_text())["version"] == "2.18.0"


def test_ct_source_and_mr_transferal_test(datasets):
    assert [p.name for p in datasets.as_dict().values()] == [
        "Dataset910_AbdomenCTSource", "Dataset911_AbdomenMRTransferal", "Dataset912_AbdomenMRTest"]
    assert LABELS == {"background": 0, "spleen": 1, "kidney_right": 2, "kidney_left": 3, "gallbladder": 4,
                      "liver": 5, "stomach": 6, "pancreas": 7}
    source = validate_dataset(datasets.source)
    assert len(source.cases) == 30 and source.labels_found == list(range(8))
    assert set(validate_dataset(datasets.test).labels_found) <= set(range(8))
    assert not (datasets.transferal / "labelsTr").exists()
    assert meta(datasets.source)["channel_names"] == {"0": "zscore"}
    for folder in datasets.as_dict().values():
        assert "not manual annotations" in meta(folder)["description"]


def test_mr_roles_do_not_touch(datasets):
    transferal = set(meta(datasets.transferal)["kt_nnunet"]["slices"])
    test = set(meta(datasets.test)["kt_nnunet"]["slices"])
    assert transferal and test and min(abs(a - b) for a in transferal for b in test) >= 2


def test_slices_keep_hounsfield_units_and_3mm_spacing(datasets):
    image = sitk.ReadImage(str(next((datasets.source / "imagesTr").iterdir())))
    assert image.GetSpacing() == pytest.approx((3.0, 3.0))
    assert sitk.GetArrayFromImage(image).min() < -900  # air in HU


def test_checksum_mismatch_is_refused(tmp_path):
    fake = tmp_path / "totalsegmentator-2.18.0.tar.gz"
    fake.write_bytes(b"not the release")
    with pytest.raises(FetchError, match=r"sha256 .* is not the pinned 5d4223ef"):
        fetch_totalsegmentator(tmp_path / "cache", sdist=fake)
    assert not (tmp_path / "cache").exists()


def test_offline_fetch_says_why_and_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing listens there: like no network
    with pytest.raises(FetchError, match=r"could not download totalsegmentator==2\.18\.0 from PyPI .*--sdist PATH"):
        fetch_totalsegmentator(tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_script_reports_skip_reason(tmp_path):
    fake = tmp_path / "bad.tar.gz"
    fake.write_bytes(b"x")
    result = subprocess.run([sys.executable, str(SCRIPT), "--cache-dir", str(tmp_path / "c"), "--sdist", str(fake)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 3 and result.stderr.startswith("SKIP: ")


def test_labels_are_organs_one_to_seven_only(datasets):
    for label_file in (datasets.test / "labelsTr").iterdir():
        assert np.isin(sitk.GetArrayFromImage(sitk.ReadImage(str(label_file))), np.arange(8)).all()
