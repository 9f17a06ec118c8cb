"""The executor machinery without a cluster: config keys, names, the experiment lock, the job-folder guard,
jobs that pickle, and a training that stops at an epoch end when asked and resumes with no epoch lost."""
from __future__ import annotations

import os
import pickle
import re
import stat
from pathlib import Path

import pytest

from kt_nnunet.errors import KtNnunetError
from kt_nnunet.experiment.config import parse_config
from kt_nnunet.experiment.schema import ExperimentConfigError

BASE = {"name": "x", "output": "out", "source": 700, "transferal": 701, "test": {"dataset": 702},
        "teachers": [{"architecture": "unet"}], "students": [{"architecture": "light_unet"}],
        "modes": ["single_teacher"]}


def config_with(**extra):
    return parse_config({**BASE, **extra})


def test_serial_is_the_default_and_a_name_alone_is_enough():
    assert config_with().executor.name == "serial"
    assert config_with(executor="local").executor.name == "local"


def test_unknown_executor_and_keys_are_named():
    with pytest.raises(ExperimentConfigError, match=r"executor\.name.*'slrum'.*did you mean 'slurm'"):
        config_with(executor={"name": "slrum"})
    with pytest.raises(ExperimentConfigError, match=r"executor\.slurm\.training.*gpu"):
        config_with(executor={"name": "slurm", "slurm": {"training": {"gpu": 1}}})
    with pytest.raises(ExperimentConfigError, match=r"executor\.workers"):
        config_with(executor={"name": "local", "workers": 0})


def test_slurm_settings_per_kind_over_the_shared_ones_over_the_defaults():
    cfg = config_with(device="cuda", executor={"name": "slurm", "slurm": {
        "partition": "gpu", "account": "lab", "sbatch": {"constraint": "a100"},
        "training": {"cpus": 8, "time_min": 600, "max_jobs": 4, "sbatch": {"exclusive": True}},
        "evaluation": {"partition": "cpu"}}})
    training = cfg.executor.job_settings("training", cfg.device)
    assert (training.partition, training.account, training.cpus, training.time_min, training.max_jobs) == \
        ("gpu", "lab", 8, 600, 4)
    assert training.gpus == 1 and training.sbatch == {"constraint": "a100", "exclusive": True}
    evaluation = cfg.executor.job_settings("evaluation", cfg.device)
    assert evaluation.partition == "cpu" and evaluation.gpus == 0 and evaluation.cpus == 2
    labelling = config_with().executor.job_settings("labelling", "cpu")  # no settings: fits any CPU node
    assert (labelling.gpus, labelling.cpus, labelling.mem_gb, labelling.partition) == (0, 2, 8.0, None)


def test_the_command_line_wins_over_the_config():
    from kt_nnunet.experiment.runner import with_executor

    cfg = with_executor(config_with(executor={"name": "local", "workers": 3}), "slurm", None)
    assert (cfg.executor.name, cfg.executor.workers) == ("slurm", 3)
    assert with_executor(cfg, None, 5).executor.workers == 5
    with pytest.raises(KtNnunetError, match="unknown executor 'lokal'; did you mean 'local'"):
        with_executor(cfg, "lokal", None)


def test_a_second_orchestrator_is_refused_naming_the_first(tmp_path):
    from kt_nnunet.experiment.lock import ExperimentLockedError, experiment_lock

    with experiment_lock(tmp_path):
        with pytest.raises(ExperimentLockedError, match=rf"already being run by process {os.getpid()} on "):
            with experiment_lock(tmp_path):
                pass
    with experiment_lock(tmp_path):  # released when the first ended
        pass


def test_job_folders_are_private_and_the_guard_refuses_others_writable_ones(tmp_path, capsys):
    from kt_nnunet.experiment.executors import job_guard
    from kt_nnunet.experiment.executors.submitit_executors import jobs_folder

    jobs = jobs_folder(tmp_path / "run")
    assert stat.S_IMODE(jobs.stat().st_mode) == 0o700
    step = jobs / "train_teacher_unet"
    step.mkdir(mode=0o700)
    assert job_guard.unsafe_reason(step) is None
    step.chmod(0o777)
    assert "can be written by other users" in job_guard.unsafe_reason(step)
    assert job_guard.main(["-u", "-m", "submitit.core._submit", str(step)]) == 1
    assert "refusing to run this job" in capsys.readouterr().err
    assert "not inside an experiment's jobs folder" in job_guard.unsafe_reason(tmp_path)


def test_a_step_job_pickles_with_everything_it_needs(tmp_path):
    from kt_nnunet.experiment.executors.jobs import StepJob, job_kind
    from kt_nnunet.experiment.steps import plan_steps

    cfg = config_with(repeats=2, threads=1)
    steps = {s.name: s for s in plan_steps(cfg)}
    assert [job_kind(steps[n]) for n in ("train_teacher:teacher_unet@r1", "label:teacher_unet", "evaluate:teacher_unet",
                                          "time_inference", "report")] == \
        ["training", "labelling", "evaluation", "evaluation", None]
    job = StepJob(cfg, "train_student:light_unet_from_teacher_unet@r1", {"nnUNet_raw": str(tmp_path)}, False,
                  {"label:teacher_unet@r1": {"finished": True, "labelling": {}}}, cores=(0,), gpu=None)
    again = pickle.loads(pickle.dumps(job))
    assert again == job and again.config.threads == 1


def test_a_training_asked_to_stop_saves_its_epoch_and_resumes_without_losing_one(nnunet_env):
    from kt_nnunet import interruption, progress
    from kt_nnunet.data import tiny_dataset
    from kt_nnunet.training.supervised import train_model

    tiny_dataset(980, "Stop", num_train=4, num_test=0)
    from kt_nnunet.training.settings import Budget

    settings = dict(configuration="2d", tiny=True, budget=Budget(4, 2, 1), seed=0, num_processes=1, validate=False)

    def stop_after_two(event, fields):
        if event == progress.EPOCH and fields["epoch"] == 2:
            interruption.request_stop("test")

    with progress.listening(stop_after_two), pytest.raises(interruption.StopRequested,
                                                           match="stopped after epoch 2 of 4"):
        train_model(980, "light_unet", **settings)
    interruption.clear()
    folder = train_model(980, "light_unet", continue_training=True, **settings)
    fold = Path(folder) / "fold_0"
    assert (fold / "checkpoint_final.pth").is_file()
    logs = "".join(p.read_text() for p in sorted(fold.glob("training_log_*.txt")))
    epochs = [int(n) for n in re.findall(r": Epoch (\d+) ?\n", logs)]
    assert epochs == [0, 1, 2, 3], epochs  # each epoch once: none lost, none repeated


def test_a_local_worker_dies_with_its_orchestrator_even_by_kill_9(tmp_path):
    """So a restarted orchestrator never finds a step of the earlier run still running, and runs it only once."""
    import signal
    import subprocess
    import sys
    import time

    orchestrator = tmp_path / "orchestrator.py"
    orchestrator.write_text(
        "import multiprocessing, os, sys, time\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        "from kt_nnunet.experiment.executors.local_pool import start_worker\n"
        "if __name__ == '__main__':\n"
        f"    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context('spawn'), initializer=start_worker,"
        f" initargs=(None, None, 1, {str(tmp_path / 'worker.log')!r}))\n"
        "    print(pool.submit(os.getpid).result(), flush=True)\n"
        "    pool.submit(time.sleep, 120)\n"
        "    time.sleep(120)\n")
    process = subprocess.Popen([sys.executable, str(orchestrator)], stdout=subprocess.PIPE, text=True)
    worker = int(process.stdout.readline())
    os.kill(worker, 0)  # running, and busy with the long step
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{worker}/status").read_text()
        except FileNotFoundError:
            return
        if "\nState:\tZ" in state:  # dead, waiting for whoever adopted it to reap it
            return
        time.sleep(0.1)
    os.kill(worker, signal.SIGKILL)
    pytest.fail(f"the worker {worker} outlived its orchestrator")
