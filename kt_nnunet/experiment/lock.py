"""One orchestrator per experiment folder.

Two runs on one folder would train the same models into the same folders and overwrite each other's
``state.json``; with jobs on a cluster they would also submit every step twice. The lock is an exclusive
``flock`` on ``<output>/.kt-nnunet.lock``, which the kernel releases when its process ends however it ends, so a
killed orchestrator never leaves a stale lock behind. The file names its holder for the refusal message.
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
import sys
from pathlib import Path
from typing import Iterator

from kt_nnunet.errors import KtNnunetError

LOCK_FILE = ".kt-nnunet.lock"


class ExperimentLockedError(KtNnunetError):
    """Another kt-nnunet process is running this experiment."""


@contextlib.contextmanager
def experiment_lock(output: Path) -> Iterator[None]:
    path = Path(output) / LOCK_FILE
    handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            try:
                holder = json.loads(handle.read() or "{}")
            except ValueError:
                holder = {}
            who = (f"process {holder.get('pid', '?')} on {holder.get('host', '?')}, started "
                   f"{holder.get('started', '?')}: {holder.get('command', '?')}") if holder else "another process"
            raise ExperimentLockedError(f"{output} is already being run by {who}; wait for it to finish or stop it "
                                        "(a stopped run resumes where it left off)") from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": datetime.datetime.now().isoformat(timespec="seconds"),
                                 "command": " ".join(sys.argv)}))
        handle.flush()
        yield
    finally:
        handle.close()  # closing the descriptor releases the lock
