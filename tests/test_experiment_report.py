"""results.json (schema, comparisons, strict JSON) and report.md + plots, from fabricated results."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from kt_nnunet.experiment.report import results_table, write_report
from kt_nnunet.experiment.results import (
    ResultsError,
    build_results,
    compare_models,
    load_results,
    validate_results,
    write_results,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CASES = ["case_a", "case_b", "case_c", "case_d"]


def write_case_files(folder):
    """64x64 images and reference labels as nnU-Net reads them (one-slice NIfTI)."""
    from kt_nnunet.nnunet.raw_dataset import write_image

    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    files = {}
    for index, case in enumerate(CASES):
        labels = np.zeros((1, 64, 64), np.uint8)
        labels[0, 10 + index:40, 12:44] = 1
        labels[0, 20:30, 20 + index:34] = 2
        image = (labels * 0.4 + rng.normal(0, 0.05, labels.shape)).astype(np.float32)
        write_image(folder / "images" / f"{case}_0000.nii.gz", image, (5.0, 1.0, 1.0))
        write_image(folder / "labels" / f"{case}.nii.gz", labels, (5.0, 1.0, 1.0))
        files[case] = (labels, folder / "images" / f"{case}_0000.nii.gz", folder / "labels" / f"{case}.nii.gz")
    return files


def fabricated_model(name, role, quality, folder, files, teachers=(), params=1_000_000, seconds=0.5,
                     architecture="unet", curves=True):
    from kt_nnunet.nnunet.raw_dataset import write_image

    rng = np.random.default_rng(sum(name.encode()))
    cases = []
    (folder / name).mkdir(parents=True)
    for index, case in enumerate(CASES):
        labels, image_file, reference_file = files[case]
        prediction = labels.copy()
        prediction[rng.random(labels.shape) > quality] = 0
        prediction_file = folder / name / f"{case}.nii.gz"
        write_image(prediction_file, prediction, (5.0, 1.0, 1.0))
        dice = quality - 0.02 * index
        cases.append({"case": case, "image_files": [str(image_file)], "reference_file": str(reference_file),
                      "prediction_file": str(prediction_file), "seconds": seconds, "dice_mean": dice,
                      "metrics": {"1": {"Dice": dice, "IoU": dice / (2 - dice), "HD95": 3.0, "HD95_status": "ok"},
                                  "2": {"Dice": dice, "IoU": dice / (2 - dice), "HD95": float("nan"),
                                        "HD95_status": "both_empty"}}})
    per_class = {k: {"name": n, "dice_mean": quality - 0.03, "dice_sd": 0.026, "iou_mean": 0.7, "iou_sd": 0.02,
                     "hd95_mean": 3.0 if k == "1" else None, "hd95_sd": 0.0 if k == "1" else None, "n_cases": 4,
                     "hd95_n": 4 if k == "1" else 0, "hd95_n_penalised": 0, "hd95_n_both_empty": 0 if k == "1" else 4}
                 for k, n in (("1", "brain"), ("2", "lesion"))}
    training = {"train_losses": [1.0, 0.5, 0.2], "val_losses": [1.1, 0.7, 0.4], "mean_fg_dice": [0.2, 0.5, 0.7],
                "ema_fg_dice": [0.2, 0.23, 0.277], "epochs": 3, "source": "checkpoint"} if curves else None
    return {"name": name, "role": role, "architecture": architecture, "network_class": f"x.{architecture}",
            "model_folder": f"/models/{name}", "folds": [0], "checkpoint": "checkpoint_final.pth", "params": params,
            "seconds_per_case": seconds, "seconds_per_case_median": seconds, "dice_mean": quality - 0.03,
            "dice_sd": 0.026, "iou_mean": 0.7, "hd95_mean": 3.0, "hd95_sd": None,
            "labels": {"1": "brain", "2": "lesion"}, "per_class": per_class, "cases": cases,
            "inference": {"device": "cpu", "threads": 2, "mirroring": True, "warmup": True, "sequential": True},
            "evaluation_folder": str(folder / name), "summary_file": str(folder / name / "summary.json"),
            "teachers": list(teachers), "training": training, "extra": {}, "fingerprint": {}}


@pytest.fixture
def fabricated(tmp_path):
    files = write_case_files(tmp_path / "data")
    predictions = tmp_path / "predictions"
    models = [
        fabricated_model("teacher_unet", "teacher", 0.90, predictions, files, params=2_000_000, seconds=1.0),
        fabricated_model("teacher_att", "teacher", 0.85, predictions, files, architecture="attention_unet",
                         params=2_500_000, seconds=1.2),
        fabricated_model("light_from_unet", "student", 0.88, predictions, files, ("teacher_unet",),
                         params=100_000, seconds=0.25, architecture="light_unet"),
        fabricated_model("light_multi", "multi_teacher_student", 0.92, predictions, files,
                         ("teacher_unet", "teacher_att"), params=100_000, seconds=0.25, architecture="light_unet"),
        fabricated_model("light_multi_ft2", "kt_finetune", 0.93, predictions, files, ("teacher_unet", "teacher_att"),
                         params=100_000, seconds=0.25, architecture="light_unet"),
        fabricated_model("light_ft2_only", "finetune_only", 0.60, predictions, files, params=100_000, seconds=0.25,
                         architecture="light_unet", curves=False),
    ]
    config = {"name": "fab", "description": "fabricated results for the report test"}
    results = build_results(models, config=config, test_set={"folder": "/data/test", "split": "test",
                                                               "num_cases": 4}, timings={"train": 10.0, "eval": 2.5})
    return results, tmp_path


def test_results_json_is_strict_and_compares_the_papers_pairs(fabricated):
    results, folder = fabricated
    path = write_results(results, folder / "exp" / "results.json")
    text = path.read_text()
    assert "NaN" not in text  # NaN is written as null
    loaded = load_results(path)
    assert loaded["schema_version"] == 2 and loaded["experiment"]["name"] == "fab"
    assert loaded["timings"]["total"] == pytest.approx(12.5)
    assert {"python", "nnunetv2", "torch", "kt-nnunet"} <= set(loaded["versions"])
    assert loaded["labels"] == {"1": "brain", "2": "lesion"}
    assert loaded["models"][3]["cases"][0]["metrics"]["2"]["HD95"] is None
    for model in loaded["models"]:
        assert {"name", "role", "architecture", "dice_mean", "params", "seconds_per_case"} <= set(model)
    comparisons = {c["kind"]: c for c in loaded["comparisons"]}
    assert set(comparisons) == {"student_vs_teacher", "multi_teacher_vs_best_teacher", "kt_finetune_vs_finetune_only"}
    single = comparisons["student_vs_teacher"]
    assert (single["model"], single["reference"]) == ("light_from_unet", "teacher_unet")
    assert single["dice_ratio"] == pytest.approx(0.85 / 0.87) and single["speedup"] == pytest.approx(4.0)
    assert single["params_ratio"] == pytest.approx(0.05)
    assert comparisons["multi_teacher_vs_best_teacher"]["reference"] == "teacher_unet"  # the better teacher
    assert comparisons["kt_finetune_vs_finetune_only"]["reference"] == "light_ft2_only"
    assert compare_models(loaded["models"][:2]) == []


def test_results_schema_errors_name_the_key(fabricated):
    results, folder = fabricated
    broken = json.loads(json.dumps(results))
    del broken["models"][1]["role"]
    with pytest.raises(ResultsError, match=r"models\[1\]\.role: missing"):
        validate_results(broken)
    broken["models"][1]["role"] = "assistant"
    with pytest.raises(ResultsError, match=r"models\[1\]\.role: 'assistant' is not one of"):
        validate_results(broken)
    broken["models"][1]["role"] = "teacher"
    broken["models"][1]["params"] = "many"
    with pytest.raises(ResultsError, match=r"models\[1\]\.params: expected a number"):
        write_results(broken, folder / "bad.json")
    assert not (folder / "bad.json").exists()
    with pytest.raises(ResultsError, match="schema_version"):
        validate_results(dict(results, schema_version=99))
    with pytest.raises(ResultsError, match="does not exist"):
        load_results(folder / "nothing.json")


def test_report_table_rows_and_plots(fabricated):
    results, folder = fabricated
    experiment = folder / "exp"
    write_results(results, experiment / "results.json")
    files = write_report(experiment, overlay_cases=3)
    assert files.report == experiment / "report.md" and not files.skipped
    assert set(files.plots) == {"dice_per_model", "student_vs_teacher", "overlays", "training_curves"}
    for path in files.plots.values():
        assert path.parent == experiment / "plots" and path.read_bytes()[:8] == PNG_MAGIC
    report = files.report.read_text()
    table = results_table(results)
    assert table in report
    rows = [line for line in table.splitlines()[2:]]
    assert [row.split(" | ")[0].lstrip("| ") for row in rows] == [m["name"] for m in results["models"]]
    header = table.splitlines()[0]
    for column in ("Dice brain", "Dice lesion", "Dice overall", "HD95 (mm)", "params", "s / case"):
        assert column in header
    assert "| light_multi | multi-teacher student | light_unet | 0.890 ± 0.026 | 0.890 ± 0.026 | 0.890 ± 0.026 | " \
           "3.00 | 100.0 k | 0.250 |" in table
    assert "| teacher_unet | teacher | unet |" in table and "2.00 M" in table
    assert "transfer + fine-tune vs fine-tune only" in report
    assert "![Dice per model](plots/dice_per_model.png)" in report
    assert "| train | 10.0 |" in report


def test_report_says_why_a_plot_is_missing(fabricated):
    results, folder = fabricated
    bare = json.loads(json.dumps(results))
    for model in bare["models"]:
        model["training"] = None
        model["teachers"] = []
        for case in model["cases"]:
            case["image_files"] = ["/does/not/exist.nii.gz"]
    bare["comparisons"] = []
    files = write_report(bare, folder / "bare", overlay_cases=2)
    assert set(files.plots) == {"dice_per_model"}
    assert set(files.skipped) == {"student_vs_teacher", "overlays", "training_curves"}
    report = files.report.read_text()
    assert "Not drawn: no model has training curves." in report
    assert not math.isnan(bare["models"][0]["dice_mean"])


def test_overlays_of_3d_data_show_three_orthogonal_slices_through_the_labelled_region():
    from kt_nnunet.experiment.plots import _slice_2d, choose_overlay_cases

    image = np.arange(6 * 8 * 10, dtype=float).reshape(6, 8, 10)  # (z, y, x)
    reference = np.zeros(image.shape, np.uint8)
    reference[3:5, 2:4, 6:9] = 1
    centre = np.argwhere(reference > 0).mean(0).round().astype(int)
    shown_image, shown_reference, (shown_prediction,) = _slice_2d(image, reference, [reference.copy()],
                                                                  spacing=(2.0, 1.0, 1.0))
    # axial (8 x 10) | coronal (6 z-rows x 10, each row twice for the 2 mm slices) | sagittal (12 x 8)
    assert shown_image.shape == (12, 10 + 1 + 10 + 1 + 8) == shown_reference.shape == shown_prediction.shape
    assert np.array_equal(shown_image[:8, :10], image[centre[0]])
    assert np.array_equal(shown_image[:12:2, 11:21], image[:, centre[1], :])
    assert np.array_equal(shown_image[:12:2, 22:], image[:, :, centre[2]])
    assert shown_image[8:, :10].max() == image.min()  # padding under the shorter axial view
    for view in (shown_reference[:, :10], shown_reference[:, 11:21], shown_reference[:, 22:]):
        assert view.any()  # every view cuts through the labelled region
    flat = np.zeros((1, 4, 4))
    assert _slice_2d(flat, flat.astype(np.uint8), [])[0].shape == (4, 4)  # 2D data: the array itself
    models = [{"name": "s", "role": "multi_teacher_student",
               "cases": [{"case": c, "dice_mean": d} for c, d in zip("abcde", [0.5, 0.1, 0.9, 0.3, 0.7])]}]
    assert choose_overlay_cases(models, 3) == ["b", "a", "c"]  # worst, median, best
    assert choose_overlay_cases(models, 0) == []


def test_plots_keep_matplotlibs_style_after_nnunet_changed_it(fabricated):
    """nnU-Net's logger calls seaborn's set(font_scale=2.5) while a model trains (pitfall 24): same PNG anyway."""
    import matplotlib
    import seaborn

    results, folder = fabricated
    before = write_report(results, folder / "before").plots["dice_per_model"].read_bytes()
    try:
        seaborn.set(font_scale=2.5)
        after = write_report(results, folder / "after").plots["dice_per_model"].read_bytes()
    finally:
        matplotlib.rcdefaults()
    assert after == before
