"""The whole protocol on tiny generated data, end to end, then interrupted and resumed."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

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


def test_interrupted_experiment_resumes_without_redoing_work(experiment_config):
    config, output = experiment_config
    seen = []

    def stop_at_the_student(message):
        seen.append(message)
        if message.endswith("train_student:segresnet_multi ..."):
            raise Interrupt

    with pytest.raises(Interrupt):
        run_experiment(config, progress=stop_at_the_student)
    state = json.loads((output / "state.json").read_text())
    teacher = state["steps"]["train_teacher:teacher_unet"]["model_folder"]
    checkpoint = f"{teacher}/fold_0/checkpoint_final.pth"
    mtime = os.stat(checkpoint).st_mtime

    messages = []
    results_path = run_experiment(config, progress=messages.append)
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
    assert all("already done" in m for m in again if ": " in m and m.startswith("[") and "report" not in m)


def test_more_repeats_train_only_the_new_repeats_and_give_claims(experiment_config):
    config, output = experiment_config
    run_experiment(config, progress=lambda message: None)  # repeat 0 (reused when the test above ran)
    state = json.loads((output / "state.json").read_text())
    teacher = state["steps"]["train_teacher:teacher_unet"]["model_folder"]
    mtime = os.stat(f"{teacher}/fold_0/checkpoint_final.pth").st_mtime

    config.write_text(config.read_text() + "repeats: 2\n")
    messages = []
    results = json.loads(run_experiment(config, progress=messages.append).read_text())
    done = {m.split("] ", 1)[1].rsplit(":", 1)[0]: m.endswith(")") and ": done (" in m
            for m in messages if m.startswith("[") and not m.endswith("...")}
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
