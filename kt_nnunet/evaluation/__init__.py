"""Evaluation: a trained model scored on a labelled test set (the ``kt.evaluate`` step), and timed.

Public API (imported lazily, so ``import kt_nnunet.evaluation`` stays cheap):

- ``evaluate_model(model_folder, test_set, out, name=, role=)`` -> ``ModelEvaluation`` (``ROLES``);
- ``hd95(prediction, reference, spacing)``, ``mean_sd(values)``;
- ``training_curves(model_folder, fold)``;
- ``time_inference(model_folders, test_folder, output)``: seconds per case of several models in interleaved
  rounds.

Modules: ``api`` (``evaluate_model``), ``prediction`` (a test set predicted for scoring, timed),
``scoring`` (nnU-Net's per-case metrics plus HD95, summary.json), ``aggregation`` (per class and overall),
``metrics`` (HD95, mean and sd), ``record`` (``ModelEvaluation``, evaluation.json and its reuse), ``curves``
(training curves of a model folder), ``timing`` (interleaved inference timing). The nnU-Net side (test sets,
predictors, ``compute_metrics``) is ``kt_nnunet.nnunet.evaluation``.
"""
from __future__ import annotations

from kt_nnunet.lazy_exports import lazy_exports

_EXPORTS = {
    "evaluate_model": "kt_nnunet.evaluation.api",
    "ModelEvaluation": "kt_nnunet.evaluation.record", "ROLES": "kt_nnunet.evaluation.record",
    "EVALUATION_FILE": "kt_nnunet.evaluation.record",
    "hd95": "kt_nnunet.evaluation.metrics", "mean_sd": "kt_nnunet.evaluation.metrics",
    "training_curves": "kt_nnunet.evaluation.curves",
    "time_inference": "kt_nnunet.evaluation.timing",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
