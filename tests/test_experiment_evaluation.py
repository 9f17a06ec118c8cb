"""Evaluation of a tiny trained model on a tiny synthetic test set: nnU-Net metrics, HD95, size, speed, resume."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from kt_nnunet.evaluation import EVALUATION_FILE, evaluate_model
from kt_nnunet.evaluation.metrics import hd95

pytestmark = pytest.mark.slow  # trains a tiny model with nnU-Net once per module (about 20-45 s on 2 cores)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A light U-Net trained for 1 epoch x 2 iterations on a 6-case 64x64 dataset (about 20 s on 2 cores)."""
    from kt_nnunet.data import tiny_dataset

    root = tmp_path_factory.mktemp("nnunet")
    with pytest.MonkeyPatch.context() as patch:
        for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
            (root / variable).mkdir()
            patch.setenv(variable, str(root / variable))
        patch.setenv("nnUNet_def_n_proc", "1")
        from kt_nnunet.training.plans import write_architecture_plans
        from kt_nnunet.training.settings import Budget
        from kt_nnunet.nnunet.training_api import train_fold
        from kt_nnunet.training.budget import nnUNetTrainerKTBudget

        raw = tiny_dataset(601, "EvalTiny", num_train=6, num_test=3)
        planned = write_architecture_plans(601, "light_unet", "2d", tiny=True, num_processes=1, budget=Budget(1, 2, 1))
        model = train_fold(nnUNetTrainerKTBudget, 601, "2d", 0, planned.plans_name, validate=False)
    return raw, model


def test_evaluation_records_nnunet_metrics_hd95_size_and_speed(tiny_model, tmp_path):
    from kt_nnunet.nnunet.model_folder import load_trained_model
    from kt_nnunet.nnunet.raw_dataset import read_seg

    raw, model_folder = tiny_model
    out = tmp_path / "teacher"
    messages = []
    result = evaluate_model(model_folder, raw, out, name="teacher_light", role="teacher", threads=1,
                            progress=messages.append)
    assert result.name == "teacher_light" and result.architecture == "light_unet"
    assert result.network_class == "kt_nnunet.architectures.light.LightUNet"
    assert result.labels == {"1": "class1", "2": "class2"} and result.folds == [0]
    network = load_trained_model(model_folder).build_network()
    assert result.params == sum(p.numel() for p in network.parameters()) > 0
    assert result.seconds_per_case > 0 and result.inference["threads"] == 1
    assert [c["case"] for c in result.cases] == ["test_000", "test_001", "test_002"]
    assert len(messages) == 3

    # nnU-Net's summary.json is written in its own format and agrees with the record
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"foreground_mean", "mean", "metric_per_case"} and set(summary["mean"]) == {"1", "2"}
    assert result.dice_mean == pytest.approx(summary["foreground_mean"]["Dice"])
    assert result.per_class["1"]["dice_mean"] == pytest.approx(summary["mean"]["1"]["Dice"])

    # every per-case number can be recomputed from the files
    for case in result.cases:
        prediction = read_seg(case["prediction_file"])[0][0]
        reference, properties = read_seg(case["reference_file"])
        reference = reference[0]
        assert prediction.shape == reference.shape == (1, 64, 64)
        for label in (1, 2):
            metrics = case["metrics"][str(label)]
            p, r = prediction == label, reference == label
            tp, fp, fn = int((p & r).sum()), int((p & ~r).sum()), int((~p & r).sum())
            assert (metrics["TP"], metrics["FP"], metrics["FN"]) == (tp, fp, fn)
            if tp + fp + fn:
                assert metrics["Dice"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
            expected, status = hd95(p, r, properties["spacing"])
            assert metrics["HD95_status"] == status
            assert (metrics["HD95"] is None and np.isnan(expected)) or metrics["HD95"] == pytest.approx(expected)
    curves = result.training
    assert curves["epochs"] == 1 and len(curves["train_losses"]) == 1 and curves["source"].endswith(".pth")

    record = json.loads((out / EVALUATION_FILE).read_text())
    assert record["name"] == "teacher_light" and record["dice_mean"] == pytest.approx(result.dice_mean)

    # resume: the same model on the same cases is not predicted again
    stamp = os.stat(result.cases[0]["prediction_file"]).st_mtime_ns
    again = evaluate_model(model_folder, raw, out, name="renamed", role="student", teachers=["teacher_light"],
                           progress=messages.append)
    assert "reused" in messages[-1] and again.dice_mean == result.dice_mean
    assert again.name == "renamed" and again.teachers == ["teacher_light"]
    assert os.stat(result.cases[0]["prediction_file"]).st_mtime_ns == stamp
    # ... but a changed setting is (mirroring is part of the fingerprint)
    third = evaluate_model(model_folder, raw, out, name="renamed", role="student", mirroring=False, warmup=False)
    assert third.inference["mirroring"] is False and third.fingerprint != result.fingerprint


def test_evaluation_refuses_a_test_set_with_other_labels(tiny_model, tmp_path):
    from kt_nnunet.nnunet.evaluation import EvaluationError, load_test_set
    from kt_nnunet.nnunet.raw_dataset import MissingChannelError

    raw, model_folder = tiny_model
    other = tmp_path / "Dataset602_Other"
    shutil.copytree(raw, other)
    dataset_json = json.loads((other / "dataset.json").read_text())
    dataset_json["labels"] = {"background": 0, "liver": 1, "tumour": 2}
    (other / "dataset.json").write_text(json.dumps(dataset_json))
    with pytest.raises(EvaluationError, match="cannot be evaluated on test set .*labels differ"):
        evaluate_model(model_folder, other, tmp_path / "out", name="x", role="teacher")

    assert load_test_set(other).split == "test"
    shutil.rmtree(other / "labelsTs")
    assert load_test_set(other).split == "train" and len(load_test_set(other).cases) == 6
    first = sorted((other / "imagesTr").iterdir())[0]
    first.unlink()
    with pytest.raises(MissingChannelError, match=f"{first.name} is missing"):
        load_test_set(other, "train")
    with pytest.raises(EvaluationError, match="labelsTs does not exist"):
        load_test_set(other, "test")


def test_a_student_trained_with_the_ignore_label_is_evaluated_on_plain_labels():
    """min_confidence gives the labelled dataset (so the student) an `ignore` label; the test set has none."""
    from types import SimpleNamespace

    from kt_nnunet.nnunet.evaluation import EvaluationError, TestSet, check_compatible

    test_set = TestSet(Path("test"), "test", ".nii.gz", {"background": 0, "a": 1}, {"0": "MR"}, ())
    student = SimpleNamespace(folder="student", labels={"background": 0, "a": 1, "ignore": 2},
                              dataset_json={"channel_names": {"0": "MR"}})
    check_compatible(student, test_set)
    other = SimpleNamespace(folder="other", labels={"background": 0, "b": 1}, dataset_json=student.dataset_json)
    with pytest.raises(EvaluationError, match="cannot be evaluated on test set .*labels differ"):
        check_compatible(other, test_set)
