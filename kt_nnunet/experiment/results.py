"""``results.json``: the experiment's results in one documented file (schema: docs/experiment.md).

Top level: ``schema_version``, ``experiment`` (name, description, output folder, config file),
``created``, ``versions``, ``config`` (the parsed config, echoed), ``test_set``, ``labels``,
``timings`` (seconds per step and in total), ``models`` (one record per model, see
:class:`kt_nnunet.evaluation.record.ModelEvaluation`, combined over its repeats by
:func:`combine_repeats`), ``comparisons`` (the paper's questions: student vs its teacher, multi-teacher
student vs the best teacher, transfer + fine-tune vs fine-tune only) and ``claims`` (those questions as
verdicts with confidence intervals, ``kt_nnunet.experiment.claims``). Optional: ``schedule``, the wall time
the experiment would take with 1, 4, 8, 16 and unlimited workers and its critical path, simulated from the
recorded step times over the step graph (``kt_nnunet.experiment.schedule.schedule_summary``); results.json
files written before it existed have no such key and still load. NaN is written as ``null``; the file is
strict JSON.
"""
from __future__ import annotations

import datetime
import json
import platform
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from kt_nnunet.errors import KtNnunetError
from kt_nnunet.evaluation.record import ROLES, ModelEvaluation, clean_json
from kt_nnunet.versions import installed_versions

SCHEMA_VERSION = 2
RESULTS_FILE = "results.json"
REQUIRED_MODEL_KEYS = ("name", "role", "architecture", "dice_mean", "params", "seconds_per_case")
VERSION_PACKAGES = ("kt-nnunet", "nnunetv2", "torch", "numpy", "scipy", "dynamic_network_architectures")


class ResultsError(KtNnunetError):
    """A results.json is missing, unreadable or does not follow the schema; the message names the key."""


def collect_versions() -> dict:
    return {"python": sys.version.split()[0], "platform": platform.platform(), **installed_versions(VERSION_PACKAGES)}


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or b is None or b == 0 else a / b


def _pair(kind: str, model: dict, reference: dict) -> dict:
    dice, ref_dice = model.get("dice_mean"), reference.get("dice_mean")
    return {"kind": kind, "model": model["name"], "reference": reference["name"],
            "dice": dice, "reference_dice": ref_dice, "dice_ratio": _ratio(dice, ref_dice),
            "dice_difference": None if dice is None or ref_dice is None else dice - ref_dice,
            "params_ratio": _ratio(model.get("params"), reference.get("params")),
            "speedup": _ratio(reference.get("seconds_per_case"), model.get("seconds_per_case")),
            # deployed: the model on the lean path (TTA off) against the reference as evaluated
            "speedup_lean": _ratio(reference.get("seconds_per_case"), model.get("seconds_per_case_lean"))}


def compare_models(models: Sequence[dict]) -> list[dict]:
    """The paper's comparisons among ``models`` (results.json records), where the pair exists.

    * ``student_vs_teacher``: each single-teacher student against its teacher;
    * ``multi_teacher_vs_best_teacher``: each multi-teacher student against its best teacher (by Dice);
    * ``kt_finetune_vs_finetune_only``: each transfer + fine-tune model against the fine-tune-only model of
      the same architecture.
    """
    by_name = {m["name"]: m for m in models}
    out = []
    for model in models:
        teachers = [by_name[t] for t in model.get("teachers") or [] if t in by_name]
        if model["role"] == "student" and len(teachers) == 1:
            out.append(_pair("student_vs_teacher", model, teachers[0]))
        elif model["role"] == "multi_teacher_student" and teachers and len(teachers) == len(model["teachers"]):
            # with an unscored teacher (an exported network, a predictions folder) the best one is unknown
            best = max(teachers, key=lambda t: -1.0 if t.get("dice_mean") is None else t["dice_mean"])
            out.append(_pair("multi_teacher_vs_best_teacher", model, best))
        elif model["role"] == "kt_finetune":
            baselines = [m for m in models if m["role"] == "finetune_only"
                         and m.get("architecture") == model.get("architecture")]
            if baselines:
                out.append(_pair("kt_finetune_vs_finetune_only", model, baselines[0]))
    return out


def _mean_sd(values: Sequence[Optional[float]]) -> tuple[Optional[float], Optional[float]]:
    import statistics

    finite = [float(v) for v in values if v is not None and v == v]
    if not finite:
        return None, None
    return statistics.fmean(finite), (statistics.stdev(finite) if len(finite) > 1 else None)


def _repeat_summary(record: dict) -> dict:
    extra = record.get("extra") or {}
    return {"repeat": int(extra.get("repeat", 0)), "seed": extra.get("seed"), "dice_mean": record.get("dice_mean"),
            "dice_per_class": {k: v.get("dice_mean") for k, v in (record.get("per_class") or {}).items()},
            "hd95_mean": record.get("hd95_mean"), "model_folder": record.get("model_folder"),
            "evaluation_folder": record.get("evaluation_folder"),
            "case_dice": {c["case"]: c.get("dice_mean") for c in record.get("cases") or []}}


def combine_repeats(records: Sequence[dict]) -> list[dict]:
    """One record per model name (first-seen order) from per-repeat evaluation records.

    The record is the first repeat's evaluation (its cases, predictions, curves and folders) with
    ``dice_mean``, ``hd95_mean`` and each class's ``dice_mean``, ``iou_mean`` and ``hd95_mean`` replaced by
    their means over repeats, plus ``n_repeats``, ``dice_sd_over_repeats`` (and per class ``*_sd_over_repeats``,
    None with one repeat), and ``repeats``: each repeat's seed, Dice,
    folders and per-case Dice. With one repeat the numbers are that repeat's own.
    """
    groups: dict[str, list[dict]] = {}
    for record in records:
        groups.setdefault(record["name"], []).append(record)
    combined = []
    for group in groups.values():
        group = sorted(group, key=lambda r: int((r.get("extra") or {}).get("repeat", 0)))
        model = dict(group[0])
        model["repeats"] = [_repeat_summary(r) for r in group]
        model["n_repeats"] = len(group)
        model["dice_mean"], model["dice_sd_over_repeats"] = _mean_sd([r.get("dice_mean") for r in group])
        model["hd95_mean"], _ = _mean_sd([r.get("hd95_mean") for r in group])
        per_class = {}
        for key, values in (model.get("per_class") or {}).items():
            combined_class = dict(values)
            for metric in ("dice", "iou", "hd95"):
                mean, sd = _mean_sd([((r.get("per_class") or {}).get(key) or {}).get(f"{metric}_mean")
                                     for r in group])
                combined_class.update({f"{metric}_mean": mean, f"{metric}_sd_over_repeats": sd})
            per_class[key] = combined_class
        model["per_class"] = per_class
        combined.append(model)
    return combined


def build_results(models: Sequence[ModelEvaluation | dict], *, config: Any = None, test_set: Optional[dict] = None,
                  timings: Optional[dict] = None, name: Optional[str] = None,
                  output_folder: Optional[str | Path] = None, inference_timing: Optional[dict] = None,
                  labelling: Optional[Sequence[dict]] = None, unscored_teachers: Sequence[dict] = (),
                  step_graph: Optional[Sequence[dict]] = None) -> dict:
    """The results.json document; ``config`` is an ``ExperimentConfig`` or a plain dict (echoed as is).

    ``models`` are per-repeat evaluations (``extra.repeat`` tells the repeat; absent means 0), combined per
    model name. ``inference_timing`` (``kt_nnunet.evaluation.timing``) replaces each timed model's
    ``seconds_per_case`` with the interleaved measurement. ``labelling`` lists each teacher-labelled
    dataset's summary (fusion, mean teacher agreement, confidence and, for reliability fusion, the mean
    teacher weights). ``unscored_teachers`` (``name``, ``kind``, ``path``) are teachers that labelled but
    are not evaluated on the test set. ``step_graph`` lists every planned step in plan order as ``{"name",
    "depends_on": [...], "seconds"}`` (``seconds`` None when not recorded); with it, ``schedule`` says how
    long the experiment would take with more workers.
    """
    from kt_nnunet.experiment.claims import evaluate_claims
    from kt_nnunet.experiment.schedule import schedule_summary

    records = combine_repeats([m.to_dict() if isinstance(m, ModelEvaluation) else dict(m) for m in models])
    for record in records:
        timed = ((inference_timing or {}).get("models") or {}).get(record["name"])
        if timed is not None:
            record["seconds_per_case_in_evaluation"] = record.get("seconds_per_case")
            record["seconds_per_case"] = timed["seconds_per_case"]
            record["seconds_per_case_rounds"] = timed["rounds"]
            record["seconds_per_case_lean"] = timed.get("seconds_per_case_lean")
    config_echo = config.as_dict() if hasattr(config, "as_dict") else config
    experiment = {"name": name or getattr(config, "name", None) or (config_echo or {}).get("name"),
                  "description": getattr(config, "description", "") or (config_echo or {}).get("description", ""),
                  "output_folder": str(output_folder or getattr(config, "output", "") or ""),
                  "config_file": str(getattr(config, "source_file", "") or "") or None}
    labels = {}
    for record in records:
        labels.update(record.get("labels") or {})
    timings = dict(timings or {})
    if timings and "total" not in timings:
        timings["total"] = sum(v for v in timings.values() if isinstance(v, (int, float)))
    results = {"schema_version": SCHEMA_VERSION, "experiment": experiment,
               "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "versions": collect_versions(), "config": config_echo, "test_set": test_set, "labels": labels,
               "timings": timings, "inference_timing": inference_timing, "labelling": list(labelling or []),
               "models": records, "unscored_teachers": [dict(t) for t in unscored_teachers]}
    results["comparisons"] = compare_models(records)
    results["claims"] = evaluate_claims(records, results["comparisons"])
    if step_graph:
        results["schedule"] = schedule_summary([(s["name"], s.get("seconds"), s.get("depends_on") or ())
                                                for s in step_graph])
    return clean_json(results)


def validate_results(results: Any, source: str = RESULTS_FILE) -> dict:
    """Check the parts of the schema the report relies on; one :class:`ResultsError` naming the key."""
    if not isinstance(results, dict):
        raise ResultsError(f"{source}: expected a JSON object at the top level")
    version = results.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ResultsError(f"{source}: schema_version: expected {SCHEMA_VERSION}, got {version!r}; regenerate the "
                           "results with this kt-nnunet")
    models = results.get("models")
    if not isinstance(models, list) or not models:
        raise ResultsError(f"{source}: models: expected a non-empty list of model records")
    names = set()
    for index, model in enumerate(models):
        key = f"models[{index}]"
        if not isinstance(model, dict):
            raise ResultsError(f"{source}: {key}: expected an object")
        for required in REQUIRED_MODEL_KEYS:
            if required not in model:
                raise ResultsError(f"{source}: {key}.{required}: missing")
        if model["role"] not in ROLES:
            raise ResultsError(f"{source}: {key}.role: {model['role']!r} is not one of {', '.join(ROLES)}")
        if model["name"] in names:
            raise ResultsError(f"{source}: {key}.name: {model['name']!r} appears twice")
        names.add(model["name"])
        for number in ("dice_mean", "params", "seconds_per_case"):
            value = model[number]
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ResultsError(f"{source}: {key}.{number}: expected a number or null, got {value!r}")
    if "schedule" in results:  # optional: results.json files from before it existed have none
        _validate_schedule(results["schedule"], source)
    return results


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _validate_schedule(schedule: Any, source: str) -> None:
    """The parts of ``schedule`` the report reads."""
    if not isinstance(schedule, dict):
        raise ResultsError(f"{source}: schedule: expected an object")
    for number in ("serial_seconds", "unlimited_seconds"):
        if not _is_number(schedule.get(number)):
            raise ResultsError(f"{source}: schedule.{number}: expected a number, got {schedule.get(number)!r}")
    if not isinstance(schedule.get("critical_path"), list):
        raise ResultsError(f"{source}: schedule.critical_path: expected a list of step names")
    workers = schedule.get("workers")
    if not isinstance(workers, dict) or not all(_is_number(v) for v in workers.values()):
        raise ResultsError(f"{source}: schedule.workers: expected {{worker count: seconds}}, got {workers!r}")


def write_results(results: dict, path: str | Path) -> Path:
    """Validate and write ``results`` atomically (strict JSON, NaN as null)."""
    from kt_nnunet.atomic_files import atomic_write_text

    path = Path(path)
    cleaned = clean_json(results)
    validate_results(cleaned, str(path))
    atomic_write_text(path, json.dumps(cleaned, indent=1, allow_nan=False) + "\n")
    return path


def load_results(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"{path} does not exist; run the experiment (or its evaluation steps) first")
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path} is not valid JSON ({exc}); rerun the report step to rewrite it") from exc
    return validate_results(results, str(path))
