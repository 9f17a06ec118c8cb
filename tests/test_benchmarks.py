"""Every script in benchmarks/ runs end to end in its ``--smoke`` mode and prints its result line.

CI never runs the full measurements (minutes to an hour each), so without this a benchmark breaks unnoticed
when the package changes under it. ``--smoke`` runs the same steps, including the comparison against stock
nnU-Net and the benchmark's own checks (identical results), at sizes that take seconds; its numbers mean
nothing, so only their form is checked here. The scripts are found in the folder: a new benchmark fails this
test until it has a smoke mode and its result line is listed below.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
NUMBER = r"\d+\.\d+"  # not nan or inf: a ratio of two real measurements


def ratios(*names: str) -> str:
    return " ".join(f"{name}={NUMBER}" for name in names)


# The line each benchmark prints its result in (the whole line), against the stock nnU-Net way measured in the run.
RESULT_LINES = {
    "architectures.py": rf"\| nnunet_plain \| builtin \| {NUMBER} M \| 1\.00 \| {NUMBER} ms \| 1\.00 "
                        rf"\| {NUMBER} ms \| 1\.00 \|",
    "executor_scaling.py": ratios("local_over_serial", "graph_allows", "step_slowdown"),
    "label_throughput.py": ratios("speedup_vs_stock", "label_agreement", "peak_mem_k5_over_k1",
                                  "wall_over_bare_forward"),
    "seeded_augmentation.py": ratios("single_process_over_workers"),
    "student_speed.py": ratios("student_speedup_vs_teacher", "lean_over_bare_forward", "onnx_speedup_vs_torch",
                               "student_lean_vs_teacher_stock"),
    "trainer_overhead.py": ratios("offline_over_stock", "online_over_expected"),
}


@pytest.mark.parametrize("script", sorted(path.name for path in BENCHMARKS.glob("*.py")))
def test_smoke_mode_runs_and_prints_the_result_line(script, nnunet_env, tmp_path):
    assert script in RESULT_LINES, (f"benchmarks/{script} has no entry in RESULT_LINES: give it a --smoke mode "
                                    "and list the line it prints its result in")
    # TMPDIR: the benchmarks' own temporary work folders land in tmp_path too, and go with it.
    env = dict(os.environ, OMP_NUM_THREADS="1", TMPDIR=str(tmp_path))
    run = subprocess.run([sys.executable, str(BENCHMARKS / script), "--smoke"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900)
    output = f"stdout (end):\n{run.stdout[-4000:]}\nstderr (end):\n{run.stderr[-4000:]}"
    assert run.returncode == 0, f"benchmarks/{script} --smoke exited with {run.returncode}\n{output}"
    assert re.search(rf"^{RESULT_LINES[script]}$", run.stdout, re.MULTILINE), \
        f"benchmarks/{script} --smoke did not print its result line\n{output}"
