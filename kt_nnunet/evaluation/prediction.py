"""A model's predictions of a test set, for scoring: every case in this process, timed.

Prediction runs one case at a time (no worker pools), with ``threads`` torch threads; the first case is
predicted once untimed (``warmup``) so one-off costs do not count as inference time.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from kt_nnunet.progress import CASE, announce


def prediction_file(folder: Path, case, test_set) -> Path:
    return folder / f"{case.case}{test_set.file_ending}"


def predict_test_set(predictor, test_set, folder: Path, *, threads: Optional[int], warmup: bool,
                     say: Callable[[str], None]) -> tuple[dict[str, float], int]:
    """Write every case's segmentation into ``folder`` (nnU-Net's writer, atomic); returns
    ``({case: seconds}, the torch threads used)``."""
    from kt_nnunet.nnunet import evaluation as nnunet_eval

    folder.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    with nnunet_eval.torch_threads(threads) as used_threads:
        if warmup:
            nnunet_eval.predict_case(predictor, test_set.cases[0].images)
        announce(CASE, done=0, total=len(test_set.cases))
        for index, case in enumerate(test_set.cases):
            segmentation, properties, took = nnunet_eval.predict_case(predictor, case.images)
            seconds[case.case] = took
            nnunet_eval.write_segmentation(predictor, segmentation, properties, prediction_file(folder, case, test_set))
            say(f"predicted {index + 1}/{len(test_set.cases)} ({took:.2f} s)")
            announce(CASE, done=index + 1, total=len(test_set.cases))
    return seconds, used_threads
