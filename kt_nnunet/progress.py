"""Progress events from deep inside a step (an epoch ended, a case was labelled) to whoever shows them.

Trainers and the labeller run inside nnU-Net's machinery, several calls below the experiment runner, and
their output is sent to a log file while an experiment runs. They announce progress here instead of
printing; a console (``kt_nnunet.experiment.console``) listens and draws it. With nobody listening an
event costs one empty loop. Torch-free, so any module may import it.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

Listener = Callable[[str, dict], None]
_listeners: list[Listener] = []

STEP = "step"     # fields: index (1-based), total, name (an experiment step starts)
EPOCH = "epoch"   # fields: epoch (1-based, finished), epochs, train_loss, pseudo_dice
CASE = "case"     # fields: done, total (cases labelled or predicted in this step)


def announce(event: str, **fields) -> None:
    for listener in list(_listeners):
        listener(event, fields)


@contextlib.contextmanager
def listening(listener: Listener) -> Iterator[None]:
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)
