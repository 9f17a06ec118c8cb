"""The first thing a step job runs: refuse a job folder that someone else could have written to, then hand over
to submitit, which unpickles the job and runs it.

A pickled call is code. The job folders live inside the experiment folder, private to the user
(``submitit_executors.jobs_folder``), so a pickle there was written by the user's own orchestrator; a folder on
the way that others can write to, or that another user owns, could hold someone else's pickle instead.
Started as ``python -m kt_nnunet.experiment.executors.job_guard -u -m submitit.core._submit FOLDER``. Imports
nothing heavy before the check.
"""
from __future__ import annotations

import os
import runpy
import stat
import sys
from pathlib import Path

SUBMITIT_MAIN = "submitit.core._submit"


def unsafe_reason(job_folder: Path) -> str | None:
    """Why ``job_folder`` (``<output>/jobs/<step>``) must not be trusted, or None."""
    folder = Path(job_folder).absolute()
    jobs_root = next((p for p in [folder, *folder.parents] if p.name == "jobs"), None)
    if jobs_root is None:
        return f"{folder} is not inside an experiment's jobs folder"
    for path in [p for p in [folder, *folder.parents] if len(p.parts) >= len(jobs_root.parts)]:
        if not path.exists():
            continue
        info = path.stat()
        if info.st_uid != os.getuid():
            return f"{path} belongs to another user (uid {info.st_uid})"
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return f"{path} can be written by other users (mode {stat.filemode(info.st_mode)})"
    return None


def main(argv: list[str]) -> int:
    if not argv:
        print("job_guard: no job folder given", file=sys.stderr)
        return 2
    reason = unsafe_reason(Path(argv[-1]))
    if reason:
        print(f"kt-nnunet: refusing to run this job: {reason}. A job's pickled call runs code; make the "
              "experiment's jobs folder private (chmod -R go-w) and start the experiment again.", file=sys.stderr)
        return 1
    sys.argv = [SUBMITIT_MAIN, argv[-1]]
    sys.stdout.reconfigure(line_buffering=True)  # what submitit's `python -u` would give
    sys.stderr.reconfigure(line_buffering=True)
    runpy.run_module(SUBMITIT_MAIN, run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
