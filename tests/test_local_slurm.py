"""The SLURM cluster the tests get (CI's, from scripts/local-slurm.sh) really runs jobs: a batch job's output
arrives where it was sent."""
from __future__ import annotations

import subprocess
import time

from slurm_support import requires_slurm


@requires_slurm
def test_a_batch_job_runs_and_writes_its_output(tmp_path):
    output = tmp_path / "hello.out"
    submitted = subprocess.run(
        ["sbatch", "--parsable", "--job-name=kt-nnunet-hello", "--time=1", f"--chdir={tmp_path}",
         f"--output={output}", "--wrap", "echo hello"],
        capture_output=True, text=True, timeout=30)
    assert submitted.returncode == 0, f"sbatch failed: {submitted.stderr}"
    job_id = submitted.stdout.strip().split(";")[0]
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            # The file appears when the job starts; its text when `echo` has run.
            if output.exists() and "hello" in output.read_text():
                break
            time.sleep(0.2)
        else:
            job = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
            raise AssertionError(f"job {job_id} wrote no 'hello' to {output} in 60 s:\n{job}")
        assert output.read_text().strip() == "hello"
    finally:
        subprocess.run(["scancel", job_id], capture_output=True)
