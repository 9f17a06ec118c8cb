"""Evaluate one trained model folder on a labelled test set: predictions, metrics, size, speed, curves.

:func:`evaluate_model` writes into its output folder:

* ``predictions/{case}{ending}``: the model's segmentation of every test case (``prediction``);
* ``summary.json``: nnU-Net's own format (``nnUNetv2_evaluate_folder``): Dice, IoU, TP/FP/FN/TN per case
  and label, their ``nanmean`` per label and the ``foreground_mean`` (``scoring``);
* ``evaluation.json``: the model record that goes into results.json (``record``; see docs/experiment.md),
  which adds per-class HD95 (``metrics``, ``aggregation``), the parameter count, CPU seconds per case and
  the training curves (``curves``).

A finished evaluation is reused when the model's checkpoints (sha256), folds, test cases and settings
are unchanged, so a resumed experiment never predicts a model twice.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

from kt_nnunet.evaluation.aggregation import aggregate
from kt_nnunet.evaluation.curves import training_curves
from kt_nnunet.evaluation.prediction import predict_test_set
from kt_nnunet.evaluation.record import (EVALUATION_FILE, ROLES, ModelEvaluation, evaluation_fingerprint,
                                         load_previous, relabel_previous, write_evaluation)
from kt_nnunet.evaluation.scoring import score_test_set


def evaluate_model(model_folder: str | Path, test_set, output_folder: str | Path, *, name: str, role: str,
                   folds: Optional[Sequence[int]] = None, checkpoint_name: str = "checkpoint_final.pth",
                   mirroring: bool = True, threads: Optional[int] = None, warmup: bool = True,
                   teachers: Sequence[str] = (), extra: Optional[dict] = None, force: bool = False,
                   progress: Optional[Callable[[str], None]] = None) -> ModelEvaluation:
    """Predict ``test_set`` (a ``TestSet`` or a raw dataset folder) with the model and score it.

    ``role`` is one of ``ROLES``; ``teachers`` names the teachers a student learnt from (for comparisons);
    ``extra`` is stored as is. With ``force=False`` a matching earlier evaluation in ``output_folder``
    is returned without predicting again.
    """
    from kt_nnunet.nnunet import evaluation as nnunet_eval
    from kt_nnunet.nnunet.model_folder import load_trained_model, make_predictor

    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {ROLES}")
    say = progress or (lambda message: None)
    output_folder = Path(output_folder)
    if not isinstance(test_set, nnunet_eval.TestSet):
        test_set = nnunet_eval.load_test_set(test_set)
    model = load_trained_model(model_folder, folds, checkpoint_name)
    nnunet_eval.check_compatible(model, test_set)
    fingerprint = evaluation_fingerprint(model, test_set, checkpoint_name, mirroring)
    previous = None if force else load_previous(output_folder, fingerprint)
    if previous is not None:
        say(f"{name}: evaluation exists, reused ({output_folder / EVALUATION_FILE})")
        return relabel_previous(previous, output_folder, name=name, role=role, teachers=teachers, extra=extra)

    predictions = output_folder / "predictions"
    seconds, used_threads = predict_test_set(make_predictor(model, use_mirroring=mirroring), test_set, predictions,
                                             threads=threads, warmup=warmup, say=lambda text: say(f"{name}: {text}"))
    scores = score_test_set(model, test_set, predictions, seconds, output_folder / "summary.json")
    evaluation = ModelEvaluation(
        name=name, role=role, architecture=_architecture_name(model), network_class=model.architecture,
        model_folder=str(Path(model_folder).resolve()), folds=list(model.folds), checkpoint=checkpoint_name,
        params=nnunet_eval.count_parameters(model.build_network()), **aggregate(scores, seconds),
        inference={"device": "cpu", "threads": used_threads, "mirroring": mirroring, "warmup": warmup,
                   "sequential": True},
        evaluation_folder=str(output_folder.resolve()), summary_file=str(Path(scores.summary_file).resolve()),
        teachers=list(teachers), training=training_curves(model_folder, model.folds[0]), extra=dict(extra or {}),
        fingerprint=fingerprint)
    return write_evaluation(evaluation, output_folder)


def _architecture_name(model) -> str:
    """kt-nnunet's architecture name when kt-nnunet planned the model, else the network class name."""
    planned = (model.plans.get("kt_nnunet") or {}).get("architecture")
    return planned or model.architecture.rsplit(".", 1)[-1]
