"""The paper's protocol: experiment config, step plan, results.json, claims and the report.

Public API (imported lazily, so ``import kt_nnunet.experiment`` stays cheap):

- ``load_config(path)`` / ``parse_config(mapping)`` -> ``ExperimentConfig`` (``.steps()``, ``.check_inputs()``);
- ``plan_steps(config)``: the ordered steps (``TrainTeacher``, ``LabelTransferal``, ``TrainStudent``, ...);
- ``evaluate_model``, ``ModelEvaluation``, ``ROLES``, ``hd95``, ``training_curves``: re-exported from
  ``kt_nnunet.evaluation``, where evaluation lives;
- ``build_results(...)``, ``write_results(results, path)``, ``load_results(path)``;
- ``write_report(results_or_path, folder)``, ``results_table(results)``;
- ``run_experiment(config, force=, verbose=, progress=)`` -> the path of results.json; ``experiment_runner(...)``
  (``.run()``, ``.dry_run()``).
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "load_config": "config", "parse_config": "config", "ExperimentConfig": "config", "DatasetRef": "config",
    "Budget": "config", "MODES": "config", "ExperimentConfigError": "schema",
    "plan_steps": "steps", "Step": "steps", "ModelStep": "steps", "UseTeacher": "steps", "TrainTeacher": "steps",
    "LabelTransferal": "steps", "TrainStudent": "steps", "MakeFinetuneSubset": "steps", "Finetune": "steps",
    "TrainBaseline": "steps", "Evaluate": "steps", "Report": "steps",
    "build_results": "results", "write_results": "results", "load_results": "results", "ResultsError": "results",
    "compare_models": "results", "write_report": "report", "results_table": "report",
    "run_experiment": "runner", "experiment_runner": "runner",
}
# Evaluation is its own stage (kt_nnunet.evaluation); these names stay importable from here as before.
_EVALUATION_EXPORTS = {
    "evaluate_model": "api", "ModelEvaluation": "record", "ROLES": "record", "hd95": "metrics",
    "training_curves": "curves",
}
__all__ = sorted({**_EXPORTS, **_EVALUATION_EXPORTS})


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"kt_nnunet.experiment.{_EXPORTS[name]}"), name)
    if name in _EVALUATION_EXPORTS:
        return getattr(importlib.import_module(f"kt_nnunet.evaluation.{_EVALUATION_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'kt_nnunet.experiment' has no attribute {name!r}")
