"""Fine-tuning subsets and the demo's labelled downstream pool."""
from __future__ import annotations

import json

import pytest

from kt_nnunet.data import DatasetError, DatasetExistsError, make_subset, tiny_dataset, validate_dataset


def test_subset_is_reproducible_labelled_and_valid(tmp_path):
    source = tiny_dataset(801, "Pool", tmp_path, num_train=6, num_test=1)
    first = make_subset(source, 802, "FT", 3, seed=4, out=tmp_path)
    chosen = json.loads((first / "dataset.json").read_text())["kt_nnunet"]["cases"]
    assert len(chosen) == 3 and validate_dataset(first).cases == chosen
    assert (first / "labelsTr" / f"{chosen[0]}.nii.gz").read_bytes() == \
        (source / "labelsTr" / f"{chosen[0]}.nii.gz").read_bytes()
    again = make_subset(source, 803, "FT", 3, seed=4, out=tmp_path)
    assert json.loads((again / "dataset.json").read_text())["kt_nnunet"]["cases"] == chosen
    with pytest.raises(DatasetExistsError):
        make_subset(source, 802, "FT", 3, seed=4, out=tmp_path)
    with pytest.raises(DatasetError, match="asked for 7 labelled cases but Dataset801_Pool has 6"):
        make_subset(source, 804, "FT", 7, out=tmp_path)


def test_demo_downstream_pool_shows_the_transferal_images_with_labels(tmp_path):
    from kt_nnunet.data import build_demo

    demo = build_demo(tmp_path, with_downstream=True)
    transferal = sorted(p.name for p in (demo.transferal / "imagesTr").iterdir())
    assert sorted(p.name for p in (demo.downstream / "imagesTr").iterdir()) == transferal
    assert (demo.downstream / "imagesTr" / transferal[0]).read_bytes() == \
        (demo.transferal / "imagesTr" / transferal[0]).read_bytes()
    assert validate_dataset(demo.downstream).labels_found == [0, 1, 2]
    assert not (demo.transferal / "labelsTr").exists()
