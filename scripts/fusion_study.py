"""The fusion study of docs/fusion-study.md: which fusion survives a weak teacher, over repeated seeds.

    python scripts/fusion_study.py --out fusion-study            # both tasks, 3 seeds (about 40 min on 2 CPUs)
    python scripts/fusion_study.py --out fusion-study --tasks demo --repeats 3

Two tasks: the embedded MNI152 demo data (source scanner -> target scanner) and a generated domain-shift
task (shapes, source appearance -> "shifted" appearance). Three teachers of different architectures per
task, one of them deliberately weak: trained for a tenth of the others' iterations. Every variant below
is an experiment (``kt_nnunet.experiment``) with ``repeats`` seeds; all variants share the nnU-Net
folders, so the teachers (and the single-teacher students) are trained once per seed and reused.

Variants: fusion ``mean``, ``staple`` and ``reliability``; ``mean`` and ``reliability`` also with
``min_confidence`` (uncertain voxels ignored) and with offline soft targets (``transfer: {soft: true}``:
the student also learns the fused probabilities, T = 2, alpha = 0.5).

Nothing is tuned on the test sets: the variants, budgets and thresholds are fixed in this file, and every
seed that ran is reported. The Markdown table is printed and written to ``<out>/fusion-study.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

BUDGET = {"epochs": 8, "iterations_per_epoch": 25, "val_iterations_per_epoch": 2}
WEAK_BUDGET = {"epochs": 1, "iterations_per_epoch": 20, "val_iterations_per_epoch": 2}   # 1/10 of the iterations
MIN_CONFIDENCE = 0.6
# (fusion, min_confidence, soft targets); the first variant also trains the single-teacher students
VARIANTS = [("mean", None, False), ("staple", None, False), ("reliability", None, False),
            ("mean", MIN_CONFIDENCE, False), ("reliability", MIN_CONFIDENCE, False),
            ("mean", None, True), ("reliability", None, True)]
TASKS = {
    "demo": {"source": 900, "transferal": 901, "test": {"dataset": 902, "split": "train"},   # as kt-nnunet demo
             "teachers": [{"architecture": "nnunet_plain", "arch_kwargs": {"base_features": 16, "max_features": 128}},
                          {"architecture": "segresnet", "arch_kwargs": {"base_features": 8}},
                          {"architecture": "nnunet_resenc", "arch_kwargs": {"base_features": 8, "max_features": 64},
                           "budget": WEAK_BUDGET, "name": "weak_nnunet_resenc"}],
             "derived": 100},
    "domain_shift": {"source": 910, "transferal": 911, "test": {"dataset": 912, "split": "test"},   # generated
                     "teachers": [{"architecture": "nnunet_plain",
                                   "arch_kwargs": {"base_features": 16, "max_features": 128}},
                                  {"architecture": "segresnet", "arch_kwargs": {"base_features": 8}},
                                  {"architecture": "nnunet_resenc",
                                   "arch_kwargs": {"base_features": 8, "max_features": 64},
                                   "budget": WEAK_BUDGET, "name": "weak_nnunet_resenc"}],
                     "derived": 300},
}


def build_data(task: str) -> None:
    from kt_nnunet.nnunet.paths import raw_folder

    raw = raw_folder()
    if task == "demo" and not any(raw.glob("Dataset900_*")):
        from kt_nnunet.data.demo import build_demo

        build_demo(raw, base_id=900)
    if task == "domain_shift" and not any(raw.glob("Dataset910_*")):
        from kt_nnunet.data import DOMAIN_PRESETS, ShapeConfig, synth_dataset

        shapes = ShapeConfig(shape=(64, 64), num_classes=3)
        synth_dataset(910, "ShiftSource", num_train=16, num_test=0, shapes=shapes, seed=0)
        synth_dataset(911, "ShiftTransferal", num_train=16, num_test=0, shapes=shapes,
                      domain=DOMAIN_PRESETS["shifted"], labelled=False, seed=1, role="transferal")
        synth_dataset(912, "ShiftTest", num_train=4, num_test=12, shapes=shapes, domain=DOMAIN_PRESETS["shifted"],
                      seed=2, role="test")


def variant_name(method: str, confidence, soft: bool) -> str:
    return method + ("" if confidence is None else f"_conf{round(confidence * 100)}") + ("_soft" if soft else "")


def run_variant(task: str, index: int, method: str, confidence, soft: bool, repeats: int, out: Path) -> dict:
    from kt_nnunet.experiment.config import parse_config
    from kt_nnunet.experiment.runner import run_experiment

    spec = TASKS[task]
    name = variant_name(method, confidence, soft)
    config = {"name": f"{task}_{name}", "output": str(out / task / name), "seed": 0, "repeats": repeats,
              "budget": BUDGET, "source": spec["source"], "transferal": spec["transferal"], "test": spec["test"],
              "teachers": spec["teachers"], "students": ["light_unet"],
              # the single-teacher students do not depend on the fusion: trained with the first variant only
              "modes": ["single_teacher", "multi_teacher"] if index == 0 else ["multi_teacher"],
              "fusion": {"method": method, **({} if confidence is None else {"min_confidence": confidence})},
              "transfer": {"mode": "offline", "soft": soft},
              "derived_dataset_ids": spec["derived"] + 15 * index,
              "evaluation": {"mirroring": True, "overlay_cases": 0, "timing_rounds": 1, "timing_cases": 1}}
    started = time.perf_counter()
    results = json.loads(run_experiment(parse_config(config, source=f"fusion study {task}/{name}"),
                                        progress=lambda message: None).read_text())
    print(f"{task}/{name}: {time.perf_counter() - started:.0f} s", flush=True)
    return results


def table(task: str, runs: dict) -> str:
    first = runs[variant_name(*VARIANTS[0])]
    models = {m["name"]: m for m in first["models"]}
    teachers = [m for m in first["models"] if m["role"] == "teacher"]
    singles = [m for m in first["models"] if m["role"] == "student"]
    best_teacher = max(teachers, key=lambda m: m["dice_mean"])
    best_single = max(singles, key=lambda m: m["dice_mean"])

    def dice(model):
        values = [r["dice_mean"] for r in model["repeats"]]
        sd = model.get("dice_sd_over_repeats")
        return f"{model['dice_mean']:.3f} ± {sd:.3f}" if sd is not None else f"{model['dice_mean']:.3f}", values

    lines = [f"### {task}", "", "| model | Dice (mean ± sd over seeds) | per seed |", "| --- | ---: | ---: |"]
    for model in teachers + singles:
        text, values = dice(model)
        lines.append(f"| {model['name']} | {text} | {' / '.join(f'{v:.3f}' for v in values)} |")
    lines += ["", f"Best teacher: {best_teacher['name']}; best single-teacher student: {best_single['name']}.", "",
              "| fusion | multi-teacher student Dice | − best teacher [95 % CI] | verdict | "
              "− best single-teacher student [95 % CI] | verdict |", "| --- | ---: | ---: | --- | ---: | --- |"]
    from kt_nnunet.experiment.claims import claim_row

    for variant in VARIANTS:
        results = runs[variant_name(*variant)]
        multi = next(m for m in results["models"] if m["role"] == "multi_teacher_student")
        text, _ = dice(multi)
        against_teacher = claim_row("multi_teacher_beats_best_teacher", multi, models[best_teacher["name"]])
        against_single = claim_row("multi_teacher_beats_best_teacher", multi, models[best_single["name"]])
        cells = [variant_name(*variant), text]
        for row in (against_teacher, against_single):
            cells += [f"{row['effect']:+.3f} [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]", row["verdict"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("fusion-study"))
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=sorted(TASKS))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    out = args.out.absolute()
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        os.environ[variable] = str(out / variable)
        (out / variable).mkdir(parents=True, exist_ok=True)
    sections = []
    started = time.perf_counter()
    for task in args.tasks:
        build_data(task)
        runs = {variant_name(*v): run_variant(task, i, *v, args.repeats, out) for i, v in enumerate(VARIANTS)}
        sections.append(table(task, runs))
    text = "\n\n".join(sections) + f"\n\n({args.repeats} seeds; {time.perf_counter() - started:.0f} s in all)\n"
    (out / "fusion-study.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
