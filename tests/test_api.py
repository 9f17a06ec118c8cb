"""The public API (``import kt_nnunet as kt``, docs/api.md): the protocol snippet of docs/api.md run as written,
``kt-nnunet train``, and the argument vocabulary: each step's result accepted by the next, and one
``ApiArgumentError`` line for the wrong kind of input."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import kt_nnunet as kt
from labelling_teachers import teachers, transferal  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[1]
API_DOC = ROOT / "docs" / "api.md"
NNUNET_FOLDERS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")


def protocol_snippet() -> str:
    """The Python block between the ``api:protocol`` markers of docs/api.md."""
    match = re.search(r"<!-- api:protocol -->\s*```python\n(.*?)```\s*<!-- /api:protocol -->", API_DOC.read_text(),
                      re.S)
    assert match, "docs/api.md lost its <!-- api:protocol --> python block"
    assert API_DOC.read_text().count("```python") == 1, "docs/api.md has a Python block that no test runs"
    return match.group(1)


def _tree(root: Path) -> set:
    return {p for variable in NNUNET_FOLDERS for p in (root / variable).rglob("*")}


@pytest.mark.slow
def test_the_protocol_snippet_of_docs_api_runs_as_written(tmp_path):
    """The block is run as a script of its own (so a worker pool that re-imports ``__main__`` would show), in
    fresh nnU-Net folders, and every model it trains, the labels and the evaluations are checked on disk."""
    script = tmp_path / "protocol.py"
    script.write_text(protocol_snippet())
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")}
    for variable in NNUNET_FOLDERS:
        (tmp_path / variable).mkdir()
        env[variable] = str(tmp_path / variable)
    env.update(nnUNet_def_n_proc="1", OMP_NUM_THREADS="2", PYTHONPATH="")
    started = time.perf_counter()
    run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=1200)
    seconds = time.perf_counter() - started
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    print(f"docs/api.md protocol snippet: {seconds:.0f} s")

    printed = {m["role"]: (m["arch"], float(m["dice"])) for m in re.finditer(
        r"^(?P<role>\w+): (?P<arch>\w+), Dice (?P<dice>[\d.]+), ", run.stdout, re.M)}
    assert set(printed) == {"teacher", "student", "kt_finetune"}, run.stdout[-2000:]
    assert printed["teacher"][0] == "unet" and printed["student"][0] == printed["kt_finetune"][0] == "light_unet"
    assert all(0.0 <= dice <= 1.0 for _, dice in printed.values())

    results, raw = tmp_path / "nnUNet_results", tmp_path / "nnUNet_raw"
    teacher = results / "Dataset600_Source" / "nnUNetTrainerKTBudget__ktPlans_unet_seed0__2d"
    student = results / "Dataset603_TeacherLabels" / "nnUNetTrainerKTOffline__ktOffline_light_unet_seed0__2d"
    tuned = results / "Dataset602_Target" / "nnUNetTrainerKTFinetune__ktFinetune_light_unet_seed0__2d"
    for folder in (teacher, student, tuned):
        assert (folder / "fold_0" / "checkpoint_final.pth").is_file(), folder
        assert not (folder / "fold_0" / "validation").exists()  # the API's default validate=False reached nnU-Net
    provenance = json.loads((raw / "Dataset603_TeacherLabels" / "provenance.json").read_text())
    assert [Path(t["model_folder"]) for t in provenance["teachers"]] == [teacher]
    assert [t["folds"] for t in provenance["teachers"]] == [[0]]  # the trained fold, from TrainedModelResult
    assert json.loads((tuned / "plans.json").read_text())["kt_nnunet"]["finetuned_from"] == str(student)
    for folder, role in ((teacher, "teacher"), (student, "student"), (tuned, "kt_finetune")):
        evaluation = json.loads((folder / "evaluation_Dataset602_Target" / "evaluation.json").read_text())
        assert evaluation["role"] == role and evaluation["folds"] == [0] and len(evaluation["cases"]) == 3
        assert f"{printed[role][1]:.3f}" == f"{evaluation['dice_mean']:.3f}"
    assert json.loads((student / "evaluation_Dataset602_Target" / "evaluation.json").read_text())["teachers"] == [
        str(teacher)]


@pytest.mark.slow
def test_cli_train_plans_trains_and_refuses_to_overwrite(nnunet_env):
    from kt_nnunet.cli import main
    from kt_nnunet.data import tiny_dataset

    dataset = tiny_dataset(610, "CliTrain", num_train=4, num_test=0)
    args = ["train", str(dataset), "--arch", "light_unet", "--tiny", "--epochs", "1", "--iterations", "2",
            "--val-iterations", "1", "--seed", "1", "--no-validate", "--device", "cpu", "-np", "1"]
    planned = CliRunner().invoke(main, args + ["--plan-only"])
    assert planned.exit_code == 0, planned.output
    assert "nnUNetv2_train Dataset610_CliTrain 2d 0 -p ktPlans_light_unet_seed1 -tr nnUNetTrainerKTBudget" in (
        planned.output)
    assert not (nnunet_env["nnUNet_results"] / "Dataset610_CliTrain").exists()

    trained = CliRunner().invoke(main, args)
    assert trained.exit_code == 0, trained.output
    folder = (nnunet_env["nnUNet_results"] / "Dataset610_CliTrain"
              / "nnUNetTrainerKTBudget__ktPlans_light_unet_seed1__2d")
    assert f"trained: {folder}/fold_0" in trained.output
    assert (folder / "fold_0" / "checkpoint_final.pth").is_file()
    plans = json.loads((folder / "plans.json").read_text())["configurations"]["2d"]
    assert plans["kt_budget"] == {"num_epochs": 1, "num_iterations_per_epoch": 2, "num_val_iterations_per_epoch": 1}
    assert plans["kt_seed"] == 1

    again = CliRunner().invoke(main, args)  # refused before the trainer (and nnU-Net's banner) exists: one line
    assert again.exit_code == 1 and len(again.output.splitlines()) == 1, again.output
    assert again.output.startswith("Error: ") and "already holds a finished training; pass --force" in again.output
    both = CliRunner().invoke(main, args + ["--force", "--continue"])
    assert both.exit_code == 1 and "--force and --continue contradict each other" in both.output


def test_a_trained_model_labels_and_its_labels_are_a_dataset_and_a_test_set(nnunet_env, teachers, tmp_path,
                                                                              transferal):
    """A ``TrainedModelResult`` is a teacher (its fold), the ``LabellingResult`` a dataset by every spelling and a
    test set; the teacher scored on its own labels (no mirroring either way) agrees with them exactly."""
    from kt_nnunet.api import dataset_name_of

    teacher = kt.TrainedModelResult(teachers["unet"], 0, "unet", "teacher")
    labels = kt.label(teacher, transferal, "Dataset791_ApiLabels", tta=False, device="cpu", progress=False)
    assert labels.complete and labels.dataset == nnunet_env["nnUNet_raw"] / "Dataset791_ApiLabels"
    recorded = json.loads(labels.provenance.read_text())["teachers"]
    assert [(Path(t["model_folder"]), t["folds"]) for t in recorded] == [(teachers["unet"], [0])]
    for spelling in (labels, 791, "791", "Dataset791_ApiLabels", labels.dataset, str(labels.dataset)):
        assert dataset_name_of(spelling) == "Dataset791_ApiLabels"

    evaluation = kt.evaluate(teacher, labels, tmp_path / "evaluation", mirroring=False, warmup=False)
    assert evaluation.role == "teacher" and evaluation.folds == [0] and len(evaluation.cases) == 4
    assert evaluation.architecture == "unet" and evaluation.dice_mean == pytest.approx(1.0)
    again = kt.evaluate(teacher, 791, tmp_path / "evaluation", mirroring=False, warmup=False)  # by id: reused
    assert again.fingerprint == evaluation.fingerprint and again.dice_mean == evaluation.dice_mean


def test_trained_model_result_names_its_dataset_configuration_and_checkpoint(tmp_path):
    folder = tmp_path / "Dataset600_Source" / "nnUNetTrainerKTBudget__ktPlans_unet_seed0__2d"
    result = kt.TrainedModelResult(folder, 3, "unet", "teacher")
    assert (result.dataset, result.configuration) == ("Dataset600_Source", "2d")
    assert result.checkpoint == folder / "fold_3" / "checkpoint_final.pth"


def _wrong_inputs(tmp_path, teacher, labels, unfinished):
    return {
        "a model as the dataset": (lambda: kt.train(teacher, "unet"), "dataset: got the trained model"),
        "a model as the test set": (lambda: kt.evaluate(teacher, teacher), "test: got the trained model"),
        "labels as a teacher": (lambda: kt.label(labels, 790, "Dataset793_X"), "teachers: got the labelled dataset"),
        "a list with a number": (lambda: kt.transfer([teacher, 5], labels, "light_unet"), "teachers: got 5 (int)"),
        "a number as the model": (lambda: kt.finetune(42, labels), "model: got 42 (int)"),
        "a model as the architecture": (lambda: kt.transfer(teacher, labels, teacher), "architecture: got the trained"),
        "a dataset outside nnUNet_raw": (lambda: kt.train(tmp_path / "elsewhere" / "Dataset794_Far", "unet"),
                                         "is not a dataset folder in nnUNet_raw"),
        "unfinished labels": (lambda: kt.transfer(teacher, unfinished, "light_unet"), "is unfinished"),
        "an unknown role": (lambda: kt.evaluate(teacher, labels, tmp_path / "e", role="boss"), "role: 'boss'"),
    }


@pytest.mark.parametrize("case", list(_wrong_inputs(Path("."), None, None, None)))
def test_the_wrong_kind_of_argument_is_one_error_line_before_any_work(nnunet_env, teachers, tmp_path, case):
    from kt_nnunet.labelling.api import LabellingResult

    teacher = kt.TrainedModelResult(teachers["unet"], 0, "unet", "teacher")
    raw = nnunet_env["nnUNet_raw"]
    labels = LabellingResult(raw / "Dataset792_Labelled", complete=True)
    (raw / "Dataset792_Labelled").mkdir()
    (raw / "Dataset792_Labelled" / "dataset.json").write_text("{}")
    call, expected = _wrong_inputs(tmp_path, teacher, labels, LabellingResult(raw / "Dataset795_Part", False))[case]
    before = _tree(tmp_path)
    with pytest.raises(kt.ApiArgumentError) as caught:
        call()
    message = str(caught.value)
    assert isinstance(caught.value, kt.KtNnunetError) and expected in message and "\n" not in message, message
    assert _tree(tmp_path) == before


def test_a_test_set_that_does_not_exist_is_one_error_line(nnunet_env, teachers, tmp_path):
    teacher = kt.TrainedModelResult(teachers["unet"], 0, "unet", "teacher")
    with pytest.raises(kt.KtNnunetError, match=r"^test: 799 is no folder, and no dataset id or name in nnUNet_raw="):
        kt.evaluate(teacher, 799, tmp_path / "evaluation")
    assert not (tmp_path / "evaluation").exists()


def test_cli_train_refuses_a_dataset_outside_nnunet_raw_in_one_line(nnunet_env, tmp_path):
    from kt_nnunet.cli import main
    from kt_nnunet.data import tiny_dataset

    elsewhere = tiny_dataset(796, "Elsewhere", tmp_path / "elsewhere", num_train=2, num_test=0)
    result = CliRunner().invoke(main, ["train", str(elsewhere), "--arch", "light_unet", "--tiny"])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert result.output.startswith(f"Error: dataset: {elsewhere} is not a dataset folder in nnUNet_raw")
    assert "Traceback" not in result.output and not any(nnunet_env["nnUNet_preprocessed"].iterdir())


def test_the_public_names_resolve_and_cost_no_torch_until_called():
    code = ("import sys, kt_nnunet as kt; functions = [kt.train, kt.label, kt.transfer, kt.finetune, kt.evaluate, "
            "kt.TrainedModelResult, kt.hookimpl, kt.KtNnunetError]; print('torch' in sys.modules); "
            "missing = [n for n in kt.__all__ if getattr(kt, n, None) is None]; "
            "print(missing, set(kt.__all__) <= set(dir(kt)), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:2] == ["False", "[] True True"]
