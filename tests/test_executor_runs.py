"""One tiny experiment (two teachers, one student, two repeats) run serially, with the ``local`` executor and on a
real SLURM cluster: the same per-repeat Dice everywhere; an orchestrator killed and started again submits nothing
twice; a training signalled by SLURM resumes from its checkpoint with no epoch lost; a failed job is reported with
its job id and log. The SLURM tests skip, saying why, where no cluster answers (CI starts one as root)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from slurm_support import requires_slurm, wait_for_queue_empty

pytestmark = pytest.mark.slow

STUDENT_EPOCHS = 20
CONFIG = """
name: tiny
output: {output}
budget: {{epochs: 2, iterations_per_epoch: 3, val_iterations_per_epoch: 1}}
source: 700
transferal: 701
test: {{dataset: 702, split: test}}
repeats: {repeats}
threads: 1      # CPU sums depend on the thread count: the same count under every executor, the same numbers
teachers:
  - {{architecture: unet, tiny: true}}
  - {{architecture: light_unet, tiny: true}}
students:
  - {{architecture: light_unet, tiny: true, budget: {{epochs: {epochs}, iterations_per_epoch: 3, val_iterations_per_epoch: 1}}}}
modes: [multi_teacher]
evaluation: {{mirroring: false, warmup: false, overlay_cases: 0, timing_rounds: 1, timing_cases: 1}}
executor: {{poll_seconds: 0.5, slurm: {{cpus: 1, mem_gb: 2, signal_delay_s: 30{slurm_extra}}}}}
"""
SIGNALLED = "train_student:light_unet_multi"


def make_experiment(root: Path, monkeypatch, slurm_extra: str = "", repeats: int = 2) -> Path:
    from kt_nnunet.data import DOMAIN_PRESETS, ShapeConfig, synth_dataset, tiny_dataset

    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(variable, str(root / variable))
    (root / "nnUNet_raw").mkdir(parents=True)
    shapes, shifted = ShapeConfig(shape=(64, 64), num_classes=3), DOMAIN_PRESETS["shifted"]
    tiny_dataset(700, "Src", num_train=6, num_test=0)
    synth_dataset(701, "Trf", num_train=6, num_test=0, shapes=shapes, domain=shifted, labelled=False, seed=1)
    synth_dataset(702, "Tst", num_train=4, num_test=3, shapes=shapes, domain=shifted, seed=2)
    config = root / "experiment.yaml"
    config.write_text(CONFIG.format(output=root / "run", epochs=STUDENT_EPOCHS, slurm_extra=slurm_extra,
                                    repeats=repeats))
    return config


def dice_per_repeat(results_path: Path) -> dict:
    results = json.loads(Path(results_path).read_text())
    return {m["name"]: [r["dice_mean"] for r in m["repeats"]] for m in results["models"]}


def submissions(output: Path) -> list:
    return json.loads((output / "jobs" / "jobs.json").read_text())["submissions"]


@pytest.fixture(scope="module")
def serial_dice(tmp_path_factory):
    from kt_nnunet.experiment.runner import run_experiment

    with pytest.MonkeyPatch.context() as monkeypatch:
        config = make_experiment(tmp_path_factory.mktemp("serial"), monkeypatch)
        return dice_per_repeat(run_experiment(config, progress=lambda line: None))


def test_local_executor_gives_the_serial_results(serial_dice, tmp_path, monkeypatch):
    from kt_nnunet.experiment.runner import run_experiment

    config = make_experiment(tmp_path, monkeypatch)
    lines = []
    results = run_experiment(config, executor="local", workers=2, progress=lines.append)
    assert dice_per_repeat(results) == serial_dice
    assert max(int(m[1]) for line in lines if (m := re.search(r"(\d+) running", line))) == 2  # two at once
    steps = [s["step"] for s in submissions(tmp_path / "run")]
    assert len(steps) == len(set(steps)) == 15  # every step but the report (it runs in-process), once
    results_json = json.loads(results.read_text())
    assert results_json["schedule"]["workers"]["4"] <= results_json["schedule"]["serial_seconds"]


def _signal_when_training(output: Path, stop: threading.Event, sent: list) -> None:
    """SLURM's time-limit warning (USR1) to the multi-teacher student's job once it has trained 3 epochs."""
    log = output / "logs" / f"{SIGNALLED.replace(':', '_')}.log"
    while not stop.is_set() and not sent:
        book = output / "jobs" / "jobs.json"
        active = json.loads(book.read_text())["active"] if book.is_file() else {}
        if SIGNALLED in active and log.is_file() and ": Epoch 3" in log.read_text(errors="replace"):
            job_id = active[SIGNALLED]["job_id"]
            subprocess.run(["scancel", "--signal=USR1", job_id], check=True)
            sent.append(job_id)
        time.sleep(0.2)


@requires_slurm
def test_slurm_run_killed_restarted_and_signalled_gives_the_serial_results(serial_dice, tmp_path, monkeypatch):
    from kt_nnunet.experiment.runner import run_experiment

    config = make_experiment(tmp_path, monkeypatch)
    output = tmp_path / "run"
    cli = Path(sys.executable).with_name("kt-nnunet")
    first_output = open(tmp_path / "first-orchestrator.txt", "w")
    first = subprocess.Popen([str(cli), "experiment", str(config), "--executor", "slurm"], stdout=first_output,
                             stderr=subprocess.STDOUT, env=dict(os.environ))
    book = output / "jobs" / "jobs.json"
    deadline = time.monotonic() + 120
    while not (book.is_file() and json.loads(book.read_text())["active"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)  # the orchestrator dies; its SLURM jobs go on
    first.wait()
    first_output.close()
    assert book.is_file(), (tmp_path / "first-orchestrator.txt").read_text()
    assert json.loads(book.read_text())["active"]

    stop, sent = threading.Event(), []
    watcher = threading.Thread(target=_signal_when_training, args=(output, stop, sent), daemon=True)
    watcher.start()
    lines = []
    try:
        results = run_experiment(config, executor="slurm", progress=lines.append)
    finally:
        stop.set()
        watcher.join()
    assert any("found its slurm job" in line for line in lines), lines
    steps = [s["step"] for s in submissions(output)]
    assert sorted(steps) == sorted([*set(steps), SIGNALLED]), steps  # nothing twice but the signalled training

    assert sent, "the student's training was never seen running"
    assert any(f"{SIGNALLED}: slurm job {sent[0]} stopped at a safe point" in line for line in lines), lines
    state = json.loads((output / "state.json").read_text())
    fold = Path(state["steps"][SIGNALLED]["model_folder"]) / "fold_0"
    logs = "".join(p.read_text() for p in sorted(fold.glob("training_log_*.txt")))
    assert "kt-nnunet: stopped after epoch" in logs
    assert [int(n) for n in re.findall(r": Epoch (\d+) ?\n", logs)] == list(range(STUDENT_EPOCHS))

    dice = dice_per_repeat(results)
    # A resumed training restarts its augmentation stream from the seed, so that model alone may differ.
    resumed = "light_unet_multi"
    assert {k: v for k, v in dice.items() if k != resumed} == {k: v for k, v in serial_dice.items() if k != resumed}
    assert dice[resumed][1] == serial_dice[resumed][1]
    assert wait_for_queue_empty(60)


@requires_slurm
def test_slurm_job_that_fails_is_reported_and_the_others_go_on(tmp_path, monkeypatch):
    from kt_nnunet.experiment.dispatch import StepsFailed
    from kt_nnunet.experiment.runner import run_experiment

    config = make_experiment(tmp_path, monkeypatch, repeats=1)
    # A job folder others can write to: the job refuses to unpickle anything from it and ends without a result.
    exposed = tmp_path / "run" / "jobs" / "train_teacher_teacher_unet"
    exposed.mkdir(parents=True)
    exposed.chmod(0o777)
    lines = []
    with pytest.raises(StepsFailed, match=r"^1 step\(s\) failed \(train_teacher:teacher_unet\); 6 step\(s\) that"):
        run_experiment(config, executor="slurm", progress=lines.append)
    failed = next(i for i, line in enumerate(lines) if "train_teacher:teacher_unet: FAILED on slurm job" in line)
    assert "ended without a result" in lines[failed]
    assert lines[failed + 1].startswith("log: ") and lines[failed + 2].startswith("job output: ")
    assert any("refusing to run this job" in line and "can be written by other users" in line
               for line in lines[failed:]), lines[failed:]
    state = json.loads((tmp_path / "run" / "state.json").read_text())["steps"]
    assert state["evaluate:teacher_light_unet"]["finished"]  # the other teacher did not wait on the failure
    assert "train_student:light_unet_multi" not in state
    assert wait_for_queue_empty(60)
