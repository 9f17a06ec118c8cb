"""The whole protocol on tiny generated data, end to end, then interrupted and resumed."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kt_nnunet import progress
from kt_nnunet.data import DOMAIN_PRESETS, ShapeConfig, synth_dataset, tiny_dataset
from kt_nnunet.experiment.runner import run_experiment

pytestmark = pytest.mark.slow

CONFIG = """
name: tiny
output: {output}
budget: {{epochs: 1, iterations_per_epoch: 3, val_iterations_per_epoch: 1}}
source: 700
transferal: 701
test: {{dataset: 702, split: test}}
teachers:
  - {{architecture: unet, tiny: true}}
  - {{architecture: light_unet, tiny: true}}
students:
  - {{architecture: segresnet, tiny: true}}
modes: [multi_teacher, kt_finetune, finetune_only]
finetune: {{dataset: 702, cases: 2, split: train}}
evaluation: {{mirroring: false, warmup: false, overlay_cases: 1}}
"""


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def experiment_config(tmp_path_factory):
    root = tmp_path_factory.mktemp("experiment")
    env = {v: str(root / v) for v in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    mp = pytest.MonkeyPatch()
    for variable, value in env.items():
        mp.setenv(variable, value)
    (root / "nnUNet_raw").mkdir()
    shapes, shifted = ShapeConfig(shape=(64, 64), num_classes=3), DOMAIN_PRESETS["shifted"]
    tiny_dataset(700, "Src", num_train=6, num_test=0)
    synth_dataset(701, "Trf", num_train=6, num_test=0, shapes=shapes, domain=shifted, labelled=False, seed=1)
    synth_dataset(702, "Tst", num_train=4, num_test=3, shapes=shapes, domain=shifted, seed=2)
    config = root / "experiment.yaml"
    config.write_text(CONFIG.format(output=root / "run"))
    yield config, root / "run"
    mp.undo()


def test_interrupted_experiment_resumes_without_redoing_work(experiment_config, monkeypatch):
    from kt_nnunet.nnunet import planning

    config, output = experiment_config
    seen = []

    def stop_at_the_student(event, fields):
        if event == progress.STEP and fields["name"] == "train_student:segresnet_multi":
            raise Interrupt

    with pytest.raises(Interrupt), progress.listening(stop_at_the_student):
        run_experiment(config, progress=seen.append)
    failed = next(i for i, line in enumerate(seen) if "FAILED" in line)
    assert seen[failed].startswith("[") and "train_student:segresnet_multi: FAILED after" in seen[failed]
    assert seen[failed + 1] == f"log: {output / 'logs' / 'train_student_segresnet_multi.log'}"
    assert seen[-1].endswith("Interrupt") and seen[failed + 2].startswith("last ")  # the log's tail
    state = json.loads((output / "state.json").read_text())
    teacher = state["steps"]["train_teacher:teacher_unet"]["model_folder"]
    checkpoint = f"{teacher}/fold_0/checkpoint_final.pth"
    mtime = os.stat(checkpoint).st_mtime

    plans_writes: dict = {}
    write = planning.write_plans_configuration

    def counting(path, *args, **kwargs):
        plans_writes[Path(path).name] = plans_writes.get(Path(path).name, 0) + 1
        return write(path, *args, **kwargs)

    monkeypatch.setattr(planning, "write_plans_configuration", counting)
    messages = []
    results_path = run_experiment(config, progress=messages.append)
    # Each model planned once in this run, the reused teachers as the trained students: 2 teachers, the student,
    # its fine-tuning and the from-scratch baseline.
    assert len(plans_writes) == 5 and set(plans_writes.values()) == {1}, plans_writes
    assert messages and all(m.startswith("[") for m in messages), messages  # nnU-Net's output went to the logs
    teacher_log = (output / "logs" / "train_teacher_teacher_unet.log").read_text()
    assert "Epoch 0" in teacher_log and "train_loss" in teacher_log
    assert any("train_teacher:teacher_unet: already done" in m for m in messages)
    assert os.stat(checkpoint).st_mtime == mtime, "a finished teacher was retrained"
    assert any("train_student:segresnet_multi: done" in m for m in messages)

    results = json.loads(results_path.read_text())
    roles = {m["name"]: m["role"] for m in results["models"]}
    assert roles == {"teacher_unet": "teacher", "teacher_light_unet": "teacher",
                     "segresnet_multi": "multi_teacher_student", "segresnet_multi_ft2": "kt_finetune",
                     "segresnet_ft2_only": "finetune_only"}
    for model in results["models"]:
        assert {"name", "role", "architecture", "dice_mean", "params", "seconds_per_case"} <= set(model)
        assert 0.0 <= model["dice_mean"] <= 1.0 and model["params"] > 0 and model["seconds_per_case"] > 0
        assert model["seconds_per_case_lean"] > 0  # the deployment path, TTA off
    assert (output / "report.md").read_text().count("segresnet") >= 3
    assert {p.name for p in (output / "plots").glob("*.png")} >= {"dice_per_model.png"}

    again = []
    run_experiment(config, progress=again.append)
    step_lines = [m for m in again if m.startswith("[")]
    assert len(step_lines) == len(again) == 14, again  # one line per step, nothing from nnU-Net
    assert all("already done" in m for m in step_lines if "report" not in m)


def test_more_repeats_train_only_the_new_repeats_and_give_claims(experiment_config):
    config, output = experiment_config
    run_experiment(config, progress=lambda message: None)  # repeat 0 (reused when the test above ran)
    state = json.loads((output / "state.json").read_text())
    teacher = state["steps"]["train_teacher:teacher_unet"]["model_folder"]
    mtime = os.stat(f"{teacher}/fold_0/checkpoint_final.pth").st_mtime

    config.write_text(config.read_text() + "repeats: 2\n")
    messages = []
    results = json.loads(run_experiment(config, progress=messages.append).read_text())
    done = {m.split("] ", 1)[1].split(": ", 1)[0]: ": done in " in m for m in messages if m.startswith("[")}
    assert not done["train_teacher:teacher_unet"] and not done["train_student:segresnet_multi"]
    assert done["train_teacher:teacher_unet@r1"] and done["train_student:segresnet_multi@r1"]
    assert os.stat(f"{teacher}/fold_0/checkpoint_final.pth").st_mtime == mtime, "repeat 0 was retrained"
    assert results["config"]["repeats"] == 2

    models = {m["name"]: m for m in results["models"]}
    for model in models.values():
        assert model["n_repeats"] == 2 and [r["seed"] for r in model["repeats"]] == [0, 1]
        assert model["repeats"][0]["model_folder"] != model["repeats"][1]["model_folder"]
        assert model["dice_mean"] == pytest.approx(sum(r["dice_mean"] for r in model["repeats"]) / 2)
    # the fine-tune-only baseline is the very network it is compared with
    assert models["segresnet_ft2_only"]["params"] == models["segresnet_multi_ft2"]["params"]
    baseline_plans, tuned_plans = (json.loads((Path(models[name]["model_folder"]) / "plans.json").read_text())
                                   for name in ("segresnet_ft2_only", "segresnet_multi_ft2"))
    architecture = lambda plans: next(iter(plans["configurations"].values()))["architecture"]  # noqa: E731
    assert architecture(baseline_plans) == architecture(tuned_plans)

    claims = {c["kind"]: c for c in results["claims"]}
    assert set(claims) == {"multi_teacher_beats_best_teacher", "kt_finetune_beats_finetune_only"}
    for claim in claims.values():
        assert claim["verdict"] in ("holds", "does not hold", "inconclusive") and claim["n_repeats"] == 2
        assert claim["ci_low"] <= claim["effect"] <= claim["ci_high"]
    report = (output / "report.md").read_text()
    assert "## Claims" in report and "a multi-teacher student beats the best teacher" in report


SMALL_CONFIG = """
name: small
output: {output}
budget: {{epochs: 2, iterations_per_epoch: 2, val_iterations_per_epoch: 1}}
fold: all
source: 700
transferal: 701
test: {{dataset: 702, split: test}}
teachers: [light_unet]
students: [light_unet]
modes: [single_teacher]
evaluation: {{mirroring: false, warmup: false, overlay_cases: 1, timing_rounds: 1, timing_cases: 1}}
"""


def test_command_line_experiment_console_dry_run_and_fold_all(experiment_config, tmp_path):
    """`kt-nnunet experiment` in a pipe prints only its own lines; `--dry-run` tells what is done; `fold: all`
    trains on every case; a teacher may be given by its bare architecture name."""
    import subprocess
    import sys

    config, _ = experiment_config
    small = config.with_name("small.yaml")
    output = tmp_path / "small"
    small.write_text(SMALL_CONFIG.format(output=output))
    command = [str(Path(sys.executable).with_name("kt-nnunet")), "experiment", str(small)]
    # its own plans and models (the bare `light_unet` is planned differently from the tiny one above)
    env = {**os.environ, "nnUNet_preprocessed": str(tmp_path / "preprocessed"), "nnUNet_results": str(tmp_path / "results")}
    dry = subprocess.run(command + ["--dry-run"], capture_output=True, text=True, check=True, env=env).stdout.splitlines()
    assert dry[0].startswith("small: 7 steps, 0 already done, 7 to run"), dry
    assert [line.split()[1] for line in dry[1:]] == ["to"] * 7 and dry[1].endswith("train_teacher:teacher_light_unet")

    run = subprocess.run(command, capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    assert run.stderr == "", run.stderr
    steps = [line for line in lines if line.startswith("[")]
    tables = [line for line in lines if line.startswith("|")]
    assert len(steps) == 7 and all(": done in " in line for line in steps), steps
    others = [line for line in lines if line not in steps and line not in tables]
    assert all(line.startswith(("results:", "report:", "The paper's claims")) for line in others), others
    assert "Epoch 1" in (output / "logs" / "train_teacher_teacher_light_unet.log").read_text()

    state = json.loads((output / "state.json").read_text())
    teacher = Path(state["steps"]["train_teacher:teacher_light_unet"]["model_folder"])
    assert (teacher / "fold_all" / "checkpoint_final.pth").is_file() and not (teacher / "fold_0").exists()
    results = json.loads((output / "results.json").read_text())
    assert [m["folds"] for m in results["models"]] == [["all"], ["all"]]

    dry = subprocess.run(command + ["--dry-run"], capture_output=True, text=True, check=True, env=env).stdout.splitlines()
    assert dry[0].startswith("small: 7 steps, 6 already done, 1 to run"), dry  # the report is always redrawn


def _renamed(results: dict, suffix_of) -> dict:
    """``results`` with every model renamed (teachers and comparisons follow), and each model listed twice."""
    import copy

    results = copy.deepcopy(results)
    names = {m["name"]: suffix_of(m["name"]) for m in results["models"]}
    models = []
    for copy_index in range(2):
        for model in results["models"]:
            model = copy.deepcopy(model)
            model["name"] = f"{names[model['name']]}_{copy_index}"
            model["teachers"] = [f"{names[t]}_{copy_index}" for t in model.get("teachers") or []]
            models.append(model)
    results["models"] = models
    for comparison in results["comparisons"]:
        comparison["model"], comparison["reference"] = (f"{names[comparison[k]]}_0" for k in ("model", "reference"))
    return results


def test_plots_are_readable_after_nnunet_trained_in_this_process(experiment_config, tmp_path, monkeypatch):
    """nnU-Net's logger sets seaborn's font_scale=2.5 for the process when it draws progress.png (pitfall 24); the
    report's plots, with 10 models of long names, keep every text inside the figure and tick labels apart."""
    import matplotlib

    from kt_nnunet.experiment import plots
    from kt_nnunet.experiment.report import draw_plots
    from kt_nnunet.training.plans import write_architecture_plans
    from kt_nnunet.training.settings import Budget
    from kt_nnunet.nnunet.training_api import train_fold
    from kt_nnunet.training.budget import nnUNetTrainerKTBudget
    from report_checks import layout_problems

    config, output = experiment_config
    planned = write_architecture_plans(700, "light_unet", "2d", tiny=True, num_processes=1, force=True,
                                       budget=Budget(1, 2, 1))
    train_fold(nnUNetTrainerKTBudget, planned.dataset_name, "2d", 0, planned.plans_name, force=True, validate=False)
    try:
        assert matplotlib.rcParams["font.size"] != matplotlib.rcParamsDefault["font.size"], \
            "nnU-Net's logger did not change the style; the test would prove nothing"
        results = _renamed(json.loads(run_experiment(config, progress=lambda m: None).read_text()),
                           lambda name: f"{name}_trained_with_a_deliberately_long_descriptive_name")
        assert len(results["models"]) >= 10
        figures = {}
        save = plots._save

        def keep(fig, path):
            figures[Path(path).stem] = layout_problems(fig)
            return save(fig, path)

        monkeypatch.setattr(plots, "_save", keep)
        drawn, skipped = draw_plots(results, tmp_path / "plots", overlay_cases=2)
    finally:
        matplotlib.rcdefaults()
    assert set(drawn) == {"dice_per_model", "student_vs_teacher", "overlays", "training_curves"}, skipped
    assert figures == {name: [] for name in drawn}


def test_report_html_opens_in_a_real_browser_and_report_rebuilds(experiment_config, tmp_path):
    """report.md's header and report.html's tables from a real results.json; report.html in headless Chromium:
    not blank, every image decoded, one row per model, sortable; `kt-nnunet report` rebuilds both."""
    from click.testing import CliRunner

    from kt_nnunet.cli import main
    from report_checks import CHROMIUM, CHROMIUM_MISSING, inspect_in_browser, screenshot

    config, output = experiment_config
    results_path = run_experiment(config, progress=lambda m: None)
    results = json.loads(results_path.read_text())
    test_folder = Path(os.environ["nnUNet_raw"]) / "Dataset702_Tst"
    assert f"Test set: `{test_folder}` (test split, 3 cases), never used for training." in \
        (output / "report.md").read_text()

    for product in [output / "report.md", output / "report.html", *(output / "plots").glob("*.png")]:
        product.unlink()
    result = CliRunner().invoke(main, ["report", str(output)])
    assert result.exit_code == 0, result.output
    assert (output / "report.md").is_file() and (output / "report.html").is_file()
    assert json.loads(results_path.read_text()) == results
    plots = sorted((output / "plots").glob("*.png"))
    assert len(plots) == 4, result.output

    if CHROMIUM is None:
        pytest.skip(CHROMIUM_MISSING)
    found = inspect_in_browser(output / "report.html")
    assert found["images"] == len(plots) and found["broken"] == 0, found
    assert found["tables"]["results"] == len(results["models"]) == found["tables"]["per_class"]
    assert found["tables"]["per_case"] == results["test_set"]["num_cases"] == 3
    assert found["tables"]["claims"] == len(results["claims"])
    ascending = [float(value.split()[0]) for value in found["ascending"]]
    assert ascending == sorted(ascending) and found["descending"] == found["ascending"][::-1]

    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(screenshot(output / "report.html", tmp_path / "report.png")).convert("L"))
    assert pixels.std() > 20 and (pixels < 128).mean() > 0.01, "the page rendered blank"
