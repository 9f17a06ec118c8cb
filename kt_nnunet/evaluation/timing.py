"""Seconds per case that survive a busy machine: every model timed in interleaved rounds.

A single pass per model, one model after the other, measures whatever else the machine did at that
moment (the same light student once took 0.07 s and once 5.75 s per case in one report). Here all models
are loaded first; then each round predicts the same few test cases with every model in turn, so a burst of
load hits all models alike, and a model's ``seconds_per_case`` is the median of its rounds. The
machine's load average (1 minute) before and after, and the CPU count, are recorded with the numbers.
Each model is timed twice per round: on nnU-Net's predictor with the experiment's settings
(``seconds_per_case``) and on the deployment path, ``kt-nnunet predict``'s lean predictor with TTA off
(``seconds_per_case_lean``).
"""
from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Optional, Sequence

TIMING_FORMAT = 2  # 2: adds the lean path


def _load_average() -> Optional[float]:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):  # not on every platform
        return None


def time_inference(model_folders: dict[str, Path], test_folder, output: Path, *,
                   folds: Optional[Sequence[int]] = None, mirroring: bool = True, threads: Optional[int] = None,
                   rounds: int = 3, cases: int = 3, force: bool = False) -> tuple[dict, bool]:
    """Time every model of ``model_folders`` (name -> folder) on the first ``cases`` test cases.

    Returns ``(timing, reused)``; ``timing["models"][name]`` holds ``seconds_per_case`` (median over
    rounds) and ``rounds`` (each round's seconds per case). The result is stored in ``output`` and reused
    while the models' checkpoints and the settings are unchanged.
    """
    from kt_nnunet.atomic_files import atomic_write_text
    from kt_nnunet.nnunet import evaluation as nnunet_eval
    from kt_nnunet.nnunet import lean_predictor as lean
    from kt_nnunet.nnunet.model_folder import load_trained_model, make_predictor

    test_set = nnunet_eval.load_test_set(test_folder)
    chosen = test_set.cases[:cases]
    models = {name: load_trained_model(folder, folds) for name, folder in model_folders.items()}
    fingerprint = {"format": TIMING_FORMAT, "rounds": rounds, "mirroring": mirroring, "threads": threads,
                   "cases": [c.case for c in chosen],
                   "models": {name: model.checkpoint_sha256 for name, model in models.items()}}
    output = Path(output)
    if output.is_file() and not force:
        previous = json.loads(output.read_text())
        if previous.get("fingerprint") == fingerprint:
            return previous, True
    predictors = {name: make_predictor(model, use_mirroring=mirroring) for name, model in models.items()}
    per_round: dict[str, list[float]] = {name: [] for name in predictors}
    per_round_lean: dict[str, list[float]] = {name: [] for name in predictors}
    load_before = _load_average()
    with nnunet_eval.torch_threads(threads) as used_threads:
        leans = {name: lean.LeanPredictor(model, model.load_fold_networks(), threads=used_threads)
                 for name, model in models.items()}
        for name, predictor in predictors.items():  # warm-up: one-off costs are not inference time
            nnunet_eval.predict_case(predictor, chosen[0].images)
            lean.predict_case(leans[name], chosen[0].images)
        for _ in range(rounds):
            for name, predictor in predictors.items():
                seconds = sum(nnunet_eval.predict_case(predictor, case.images)[2] for case in chosen)
                per_round[name].append(seconds / len(chosen))
                seconds = sum(lean.predict_case(leans[name], case.images)[2] for case in chosen)
                per_round_lean[name].append(seconds / len(chosen))
    timing = {"what": f"median over {rounds} interleaved rounds of the seconds per case on {len(chosen)} test "
                      "case(s), after one warm-up case per model",
              "device": "cpu", "threads": used_threads, "mirroring": mirroring, "cpu_count": os.cpu_count(),
              "load_average_before": load_before, "load_average_after": _load_average(),
              "lean": "kt-nnunet predict's lean predictor, TTA off, same threads and cases",
              "models": {name: {"seconds_per_case": statistics.median(values), "rounds": values,
                                "seconds_per_case_lean": statistics.median(per_round_lean[name]),
                                "rounds_lean": per_round_lean[name]}
                         for name, values in per_round.items()},
              "fingerprint": fingerprint}
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output, json.dumps(timing, indent=1))
    return timing, False
