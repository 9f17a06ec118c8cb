"""The experiment runner around its steps (none runs here): step seconds over resumed runs, and nnU-Net's folder
variables set only while an experiment runs."""
from __future__ import annotations

import json
import os

import pytest
from refusals import write_experiment_config


def test_step_seconds_add_up_over_resumed_runs(nnunet_env, tmp_path, monkeypatch):
    """After a resume, results.json timings kept only the last run's seconds. Now a step finished earlier
    keeps its seconds, and a step resumed from unfinished work adds those of every run (a kill -9 included)."""
    from kt_nnunet import progress
    from kt_nnunet.experiment import runner as runner_module
    from kt_nnunet.experiment.config import load_config
    from kt_nnunet.experiment.runner import ExperimentRunner, experiment_runner

    clock = [0.0]
    monkeypatch.setattr(runner_module.time, "perf_counter", lambda: clock[0])  # the console reads the same clock
    monkeypatch.setattr(runner_module, "UNFINISHED_SAVE_INTERVAL_S", 0.0, raising=False)
    monkeypatch.setattr(ExperimentRunner, "check", lambda self: None)
    config = load_config(write_experiment_config(tmp_path, tmp_path / "run", "timing.yaml"))
    teacher, label = "train_teacher:teacher_unet", "label:teacher_unet"
    state_path = tmp_path / "run" / "state.json"

    class Killed(BaseException):
        """kill -9: the process ends where it is; only what is on disk survives."""

    killed_with = []

    def run(plan):
        def execute(self, step):
            seconds, outcome = plan.get(step.name, (0.0, False))
            for done in (1, 2):  # two cases (or epochs): each lets the runner save the seconds so far
                clock[0] += seconds / 2
                progress.announce(progress.CASE, done=done, total=2)
            if outcome == "killed":
                killed_with.append(state_path.read_text())
                raise Killed
            return outcome

        monkeypatch.setattr(ExperimentRunner, "execute", execute)
        try:
            experiment_runner(config, progress=lambda line: None).run()
        except Killed:
            state_path.write_text(killed_with[-1])  # nothing the runner does after the kill reaches the disk
            assert json.loads(killed_with[-1])["steps"][label]["unfinished_seconds"] == 40.0
        return json.loads(state_path.read_text())["steps"]

    run({teacher: (100.0, False), label: (40.0, "killed")})
    steps = run({teacher: (1.0, True), label: (30.0, False)})  # the teacher is reused; labelling resumes
    assert steps[teacher]["seconds"] == 100.0
    assert steps[label]["seconds"] == 70.0 and "unfinished_seconds" not in steps[label]
    steps = run({teacher: (1.0, True), label: (2.0, True)})  # both finished earlier: nothing changes
    assert steps[teacher]["seconds"] == 100.0 and steps[label]["seconds"] == 70.0


def test_an_experiment_sets_nnunet_folder_variables_only_while_it_runs(nnunet_env, tmp_path, monkeypatch):
    """The runner pointed nnU-Net's folder variables into the experiment for the
    whole process and never restored them, so later work in the same process used the experiment's folders."""
    from kt_nnunet.experiment.runner import ExperimentRunner, experiment_runner

    names = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
    before = {name: os.environ[name] for name in names}
    seen = {}

    class Stop(Exception):
        pass

    def check(self):
        seen.update({name: os.environ[name] for name in names})
        raise Stop

    monkeypatch.setattr(ExperimentRunner, "check", check)
    output = tmp_path / "own"
    runner = experiment_runner(write_experiment_config(tmp_path, output, "own.yaml"), own_nnunet_folders=True)
    assert {name: os.environ[name] for name in names} == before  # building the runner changes nothing
    with pytest.raises(Stop):
        runner.run()
    assert seen == {name: str((output / name).absolute()) for name in names}
    assert {name: os.environ[name] for name in names} == before
