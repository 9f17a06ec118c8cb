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

from kt_nnunet.lazy_exports import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("load_config", "parse_config", "ExperimentConfig", "DatasetRef", "Budget", "MODES"),
                    "kt_nnunet.experiment.config"),
    "ExperimentConfigError": "kt_nnunet.experiment.schema",
    **dict.fromkeys(("plan_steps", "Step", "ModelStep", "UseTeacher", "TrainTeacher", "LabelTransferal",
                     "TrainStudent", "MakeFinetuneSubset", "Finetune", "TrainBaseline", "Evaluate", "Report"),
                    "kt_nnunet.experiment.steps"),
    **dict.fromkeys(("build_results", "write_results", "load_results", "ResultsError", "compare_models"),
                    "kt_nnunet.experiment.results"),
    "write_report": "kt_nnunet.experiment.report", "results_table": "kt_nnunet.experiment.report",
    "run_experiment": "kt_nnunet.experiment.runner", "experiment_runner": "kt_nnunet.experiment.runner",
    # Evaluation is its own stage; these names stay importable from here as before.
    "evaluate_model": "kt_nnunet.evaluation.api", "ModelEvaluation": "kt_nnunet.evaluation.record",
    "ROLES": "kt_nnunet.evaluation.record", "hd95": "kt_nnunet.evaluation.metrics",
    "training_curves": "kt_nnunet.evaluation.curves",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
