"""The experiment console: nnU-Net's output goes to per-step logs, kt-nnunet's own lines to the console."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from kt_nnunet import progress
from kt_nnunet.experiment.console import ExperimentConsole, _Estimates, clock, log_name, output_to_log


def noisy_step(text: str) -> None:
    """Output the way nnU-Net and its libraries produce it: Python prints, raw descriptors, a child process."""
    print(f"print {text}")
    print(f"stderr {text}", file=sys.stderr)
    os.write(1, f"fd1 {text}\n".encode())
    os.write(2, f"fd2 {text}\n".encode())
    subprocess.run(["sh", "-c", f"echo child {text}"], check=True)


def test_every_kind_of_output_goes_to_the_log(tmp_path, capfd):
    log = tmp_path / "logs" / "step.log"
    with output_to_log(log):
        noisy_step("one")
    written = log.read_text()
    for line in ("print one", "stderr one", "fd1 one", "fd2 one", "child one"):
        assert line in written
    out, err = capfd.readouterr()
    assert "one" not in out + err
    print("after")  # descriptors and sys.stdout are restored
    assert "after" in capfd.readouterr().out


def test_plain_console_prints_one_line_per_step_with_the_last_event(tmp_path):
    stream = io.StringIO()
    console = ExperimentConsole(tmp_path, stream=stream, interactive=False)
    console.start([("train:a", "Train", "training"), ("evaluate:a", "Evaluate", "Evaluate"),
                   ("train:b", "Train", "training")], {})
    with console.step(1, "train:a"):
        noisy_step("a")
        for epoch in (1, 2):
            progress.announce(progress.EPOCH, epoch=epoch, epochs=2, train_loss=-0.5 * epoch, pseudo_dice=0.4)
    with console.step(2, "evaluate:a") as outcome:
        progress.announce(progress.CASE, done=0, total=3)
        progress.announce(progress.CASE, done=3, total=3)
        outcome.reused = False
    with console.step(3, "train:b") as outcome:
        outcome.reused = True
    console.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith("[1/3] train:a: done in ") and "(epoch 2/2, loss -1.000, pseudo Dice 0.400)" in lines[0]
    assert "about" in lines[0] and "left" in lines[0]  # the train step's time estimates train:b
    assert "(3/3 cases" in lines[1] and "cases/s" in lines[1]
    assert lines[2].startswith("[3/3] train:b: already done in ") and "left" not in lines[2]
    assert "fd1 a" in (tmp_path / "logs" / "train_a.log").read_text()


def test_a_failing_step_shows_its_error_log_path_and_only_this_runs_tail(tmp_path):
    stream = io.StringIO()
    log = tmp_path / "logs" / log_name("train:x@r1")
    log.parent.mkdir()
    log.write_text("an earlier run's output\n")
    console = ExperimentConsole(tmp_path, stream=stream, interactive=False)
    console.start([("train:x@r1", "Train", "training")], {})
    with pytest.raises(RuntimeError), console.step(1, "train:x@r1"):
        for index in range(30):
            print(f"nnU-Net line {index}")
        raise RuntimeError("out of patience")
    text = stream.getvalue()
    lines = text.splitlines()
    assert lines[0].startswith("[1/1] train:x@r1: FAILED after") and "RuntimeError: out of patience" in lines[0]
    assert lines[1] == f"log: {log}" and lines[2] == "last 20 lines of the log:"
    assert len(lines) == 23 and lines[-1] == "  | RuntimeError: out of patience"
    assert "an earlier run" not in text and "nnU-Net line 29" in text
    assert "Traceback" in log.read_text() and log.read_text().startswith("an earlier run's output")


def test_verbose_streams_the_output_and_still_logs_it(tmp_path):
    stream = io.StringIO()
    console = ExperimentConsole(tmp_path, stream=stream, verbose=True)
    console.start([("s", "S", "S")], {})
    with console.step(1, "s"):
        noisy_step("v")
    console.close()
    for line in ("print v", "fd1 v", "child v"):
        assert line in stream.getvalue() and line in (tmp_path / "logs" / "s.log").read_text()


def test_interactive_console_draws_and_keeps_the_step_lines(tmp_path):
    stream = io.StringIO()
    console = ExperimentConsole(tmp_path, stream=stream, interactive=True)
    console.start([("train:a", "Train", "training"), ("label:a", "Label", "Label")], {})
    with console.step(1, "train:a"):
        progress.announce(progress.EPOCH, epoch=1, epochs=1, train_loss=0.1, pseudo_dice=0.2)
    with console.step(2, "label:a"):
        progress.announce(progress.CASE, done=1, total=2)
    console.close()
    text = stream.getvalue()
    assert "[1/2] train:a: done in" in text and "[2/2] label:a: done in" in text


def test_time_left_from_earlier_runs_then_steps_of_the_same_kind_then_family():
    kinds = {"a": ("TrainTeacher", "training"), "b": ("TrainTeacher", "training"), "c": ("TrainTeacher", "training"),
             "d": ("TrainStudent", "training"), "e": ("Evaluate", "Evaluate")}
    estimates = _Estimates(previous={"c": 30.0}, kinds=kinds)
    assert estimates.left(["b", "d", "e"]) == (0.0, 3)  # nothing known yet
    estimates.done["a"] = 10.0
    estimates.done["x"] = 100.0  # a step of another kind and family
    kinds["x"] = ("Label", "Label")
    # same kind; an earlier run's seconds; the family's mean; nothing known about evaluations
    assert estimates.left(["b", "c", "d", "e"]) == (10.0 + 30.0 + 10.0, 1)
    assert clock(3725) == "1:02:05" and clock(65) == "1:05"


def test_a_resumed_run_estimates_from_the_work_an_earlier_run_timed():
    """Resuming after a failure: finished steps are expected to take no time, but how long their work took
    still tells how long the unfinished steps of the same kind will take."""
    kinds = {"t1": ("TrainTeacher", "training"), "s1": ("TrainStudent", "training"), "e1": ("Evaluate", "Evaluate")}
    estimates = _Estimates(previous={"t1": 0.0}, kinds=kinds, worked_before={"t1": 60.0})
    assert estimates.left(["t1", "s1", "e1"]) == (60.0, 1)  # t1 reused (0 s), s1 like the training family
    console = ExperimentConsole(Path("/nonexistent"), stream=io.StringIO(), interactive=False)
    console.start([("t1", "TrainTeacher", "training"), ("e1", "Evaluate", "Evaluate")], {"t1": 0.0})
    assert console._left_text(0) == "1 step(s) not timed yet"  # not "about 0:00 left + 1 ..."


@click.command()
@click.argument("folder")
def failing_experiment(folder):
    """A command whose step fails with a bug (not a KtNnunetError), as a crashing nnU-Net step would."""
    console = ExperimentConsole(Path(folder), interactive=False)
    console.start([("train:x", "Train", "training")], {})
    with console.step(1, "train:x"):
        raise RuntimeError("CUDA out of memory")


def test_the_command_line_shows_a_failed_step_once_without_a_second_traceback(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from kt_nnunet.cli import COMMANDS, main

    monkeypatch.setitem(COMMANDS, "failing-experiment", f"{__name__}:failing_experiment")
    result = CliRunner().invoke(main, ["failing-experiment", str(tmp_path)])
    # SystemExit: Python prints no traceback of its own (an escaping RuntimeError would print a second one).
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("[1/1] train:x: FAILED after") and "RuntimeError: CUDA out of memory" in lines[0]
    assert lines[1] == f"log: {tmp_path / 'logs' / log_name('train:x')}"
    # The traceback is shown once, inside the log's tail, not again by the command line.
    assert sum("Traceback" in line for line in lines) == 1
