"""Teacher labelling end to end with teachers of different architectures and preprocessing.

The reference is stock nnU-Net itself: ``nnUNetPredictor.predict_from_files_sequential`` with
``save_probabilities`` for each teacher, and ``nnUNetv2_ensemble``'s averaging for mean fusion.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from labelling_teachers import labels_of, read_label, teachers, transferal  # noqa: F401  (fixtures)

from kt_nnunet.labelling import label_dataset, make_fusion
from kt_nnunet.teachers.methods import FusionSettings

THREE = ("unet", "light", "ct2mm")

NO_TTA = FusionSettings(tta=False)


@pytest.fixture(scope="module")
def stock(teachers, transferal, tmp_path_factory):  # noqa: F811
    """Each teacher's stock nnU-Net prediction of the transferal images, with probabilities."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    out = {}
    for name in THREE:
        folder = tmp_path_factory.mktemp(f"stock_{name}")
        predictor = nnUNetPredictor(device=torch.device("cpu"), allow_tqdm=False)
        predictor.initialize_from_trained_model_folder(str(teachers[name]), (0,))
        predictor.predict_from_files_sequential(str(transferal / "imagesTr"), str(folder), True, True, None)
        out[name] = folder
    return out


def stock_probabilities(stock, name, case):
    return np.load(stock[name] / f"{case}.npz")["probabilities"]


def test_each_teacher_alone_reproduces_stock_nnunet(teachers, transferal, stock, tmp_path):  # noqa: F811
    """Own preprocessing (z-score 1 mm; CT 2 mm on a 32x32 grid), mapped back to the 64x64 image grid."""
    for index, name in enumerate(THREE):
        result = label_dataset([teachers[name]], transferal, tmp_path / f"Dataset{801 + index}_{name}",
                               save_probabilities=True, progress=False)
        assert result.complete and len(result.labelled) == 4
        ours = labels_of(result.dataset)
        for case_file, labels in ours.items():
            reference = read_label(stock[name] / case_file)
            assert labels.shape == reference.shape == (64, 64)
            assert np.array_equal(labels, reference), f"{name} {case_file}"
            case = case_file[: -len(".nii.gz")]
            soft = np.load(result.dataset / "probabilitiesTr" / f"{case}.npz")["probabilities"]
            assert soft.dtype == np.float16 and soft.shape == (3, 1, 64, 64)
            np.testing.assert_allclose(soft, stock_probabilities(stock, name, case), atol=1e-3)


def test_three_teachers_mean_fusion_equals_stock_ensemble(teachers, transferal, stock, tmp_path):  # noqa: F811
    from nnunetv2.ensembling.ensemble import average_probabilities

    from kt_nnunet.nnunet.inference import verify_dataset_integrity

    result = label_dataset([teachers[n] for n in THREE], transferal, tmp_path / "Dataset810_Mean", progress=False)
    dataset = result.dataset
    assert result.complete and result.labelled == ["case_000", "case_001", "case_002", "case_003"]
    for case_file, labels in labels_of(dataset).items():
        case = case_file[: -len(".nii.gz")]
        average = average_probabilities([str(stock[n] / f"{case}.npz") for n in THREE])
        assert np.array_equal(labels, average.argmax(0)[0])

    # layout: images hard-linked under nnU-Net names, labels, dataset.json from the teachers
    assert sorted(p.name for p in dataset.iterdir()) == ["dataset.json", "imagesTr", "labelsTr", "provenance.json"]
    image = dataset / "imagesTr" / "case_000_0000.nii.gz"
    assert os.path.samefile(image, transferal / "imagesTr" / "case_000_0000.nii.gz")
    dataset_json = json.loads((dataset / "dataset.json").read_text())
    assert dataset_json["labels"] == {"background": 0, "class1": 1, "class2": 2}
    assert dataset_json["channel_names"] == {"0": "image0"} and dataset_json["numTraining"] == 4
    assert dataset_json["file_ending"] == ".nii.gz"
    assert not any(p.name.startswith(".") for p in dataset.rglob("*"))
    assert not any(p.name.startswith(".kt-label") for p in dataset.parent.iterdir())

    provenance = json.loads(result.provenance.read_text())
    described = provenance["teachers"]
    assert [t["architecture"].rsplit(".", 1)[-1] for t in described] == ["UNet", "LightUNet", "PlainConvUNet"]
    assert [t["normalization_schemes"] for t in described] == [["ZScoreNormalization"]] * 2 + [["CTNormalization"]]
    assert described[2]["spacing"] == [2.0, 2.0]
    for t, name in zip(described, THREE):
        assert t["folds"] == [0] and t["model_folder"] == str(teachers[name])
        assert len(t["checkpoint_sha256"]["0"]) == 64
    assert provenance["fusion"]["method"] == "mean" and provenance["tta"] is True
    assert provenance["versions"]["nnunetv2"].startswith("2.8")
    for record in provenance["cases"].values():
        assert 0.0 <= record["teacher_agreement"] <= 1.0 and 1 / 3 <= record["mean_confidence"] <= 1.0
    assert provenance["summary"]["num_cases"] == 4

    verify_dataset_integrity(dataset)  # what nnUNetv2_plan_and_preprocess --verify_dataset_integrity runs


@pytest.mark.parametrize("method,kwargs", [("weighted", {"weights": [0.5, 0.3, 0.2]}), ("majority", {}),
                                           ("staple", {})])
def test_other_fusions_follow_the_fusion_rule(teachers, transferal, stock, tmp_path, method, kwargs):  # noqa: F811
    result = label_dataset([teachers[n] for n in THREE], transferal, tmp_path / "Dataset811_Fused",
                           fusion=FusionSettings(method, **kwargs), progress=False)
    for case_file, labels in labels_of(result.dataset).items():
        fusion = make_fusion(method, 3, **kwargs)
        for name in THREE:
            fusion.add(torch.from_numpy(stock_probabilities(stock, name, case_file[: -len(".nii.gz")])))
        expected = fusion.result().labels.numpy()[0]
        # probabilities saved by stock nnU-Net are float32, as ours in memory: same inputs, same rule
        assert (labels == expected).mean() >= 0.999, case_file
    provenance = json.loads(result.provenance.read_text())
    assert provenance["fusion"]["method"] == method
    assert provenance["fusion"]["weights"] == kwargs.get("weights")


def test_min_confidence_writes_the_ignore_label(teachers, transferal, tmp_path):  # noqa: F811
    from kt_nnunet.nnunet.inference import verify_dataset_integrity

    result = label_dataset([teachers[n] for n in THREE], transferal, tmp_path / "Dataset812_Ignore",
                           fusion=FusionSettings(min_confidence=0.9, tta=False), save_probabilities=True,
                           progress=False)
    dataset_json = json.loads((result.dataset / "dataset.json").read_text())
    assert dataset_json["labels"] == {"background": 0, "class1": 1, "class2": 2, "ignore": 3}
    all_labels = np.concatenate([a.ravel() for a in labels_of(result.dataset).values()])
    assert (all_labels == 3).any() and (all_labels < 3).any()
    provenance = json.loads(result.provenance.read_text())
    ignored = [r["ignored_fraction"] for r in provenance["cases"].values()]
    assert np.mean(ignored) == pytest.approx(float((all_labels == 3).mean()), abs=1e-6)
    assert provenance["tta"] is False and provenance["fusion"]["ignore_label"] == 3
    soft = np.load(result.dataset / "probabilitiesTr" / "case_000.npz")["probabilities"]
    np.testing.assert_allclose(soft.astype(np.float32).sum(0), 1.0, atol=5e-3)  # soft labels have no ignore class
    verify_dataset_integrity(result.dataset)


def test_label_map_reconciles_renamed_labels(teachers, transferal, tmp_path):  # noqa: F811
    label_map = {"1": {"organ": "class1", "lesion": "class2"}}
    mapped = label_dataset([teachers["unet"], teachers["renamed"]], transferal, tmp_path / "Dataset813_Mapped",
                           label_map=label_map, fusion=NO_TTA, progress=False)
    assert json.loads((mapped.dataset / "dataset.json").read_text())["labels"] == \
        {"background": 0, "class1": 1, "class2": 2}
    assert json.loads(mapped.provenance.read_text())["fusion"]["label_map"] == label_map

    # merging classes: one output label 'fg' receives class1+class2 of the first and organ+lesion of the second
    merge = {"labels": {"background": 0, "fg": 1}, "0": {"class1": "fg", "class2": "fg"},
             "1": {"organ": "fg", "lesion": "fg"}}
    merged = label_dataset([teachers["unet"], teachers["renamed"]], transferal, tmp_path / "Dataset814_Merged",
                           label_map=json.dumps(merge), fusion=NO_TTA, progress=False)
    assert json.loads((merged.dataset / "dataset.json").read_text())["labels"] == {"background": 0, "fg": 1}
    for name, labels in labels_of(merged.dataset).items():
        assert set(np.unique(labels)) <= {0, 1}


def test_cli_label_prints_the_dataset(teachers, transferal, tmp_path):  # noqa: F811
    from click.testing import CliRunner

    from kt_nnunet.cli import main

    out = tmp_path / "Dataset815_Cli"
    result = CliRunner().invoke(main, ["label", "--teacher", f"{teachers['unet']}:0", "--teacher",
                                       str(teachers["ct2mm"]), "--images", str(transferal / "imagesTr"), "--out",
                                       str(out), "--fusion", "weighted", "--weights", "2,1", "--no-tta",
                                       "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "labelled 4 case(s), skipped 0" in result.output
    assert f"dataset: {out}" in result.output and "provenance:" in result.output
    again = CliRunner().invoke(main, ["label", "--teacher", f"{teachers['unet']}:0", "--teacher",
                                      str(teachers["ct2mm"]), "--images", str(transferal / "imagesTr"), "--out",
                                      str(out), "--fusion", "weighted", "--weights", "2,1", "--no-tta"])
    assert again.exit_code == 0 and "labelled 0 case(s), skipped 4" in again.output
