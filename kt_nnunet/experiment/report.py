"""``report.md`` and its plots, written from results.json into the experiment folder.

The main table has one row per model (teachers, single-teacher students, multi-teacher students,
transfer + fine-tune, fine-tune only, in the order of results.json) and the columns of the paper:
Dice mean ± sd per class and overall, HD95, parameters and CPU seconds per case.
:func:`results_table` returns that table alone, for a command that prints it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from kt_nnunet.experiment.plots import (
    ROLE_LABELS,
    choose_overlay_cases,
    plot_dice_per_model,
    plot_overlays,
    plot_student_vs_teacher,
    plot_training_curves,
)
from kt_nnunet.experiment.results import RESULTS_FILE, load_results, validate_results

REPORT_FILE = "report.md"
PLOTS_FOLDER = "plots"
DASH = "–"
COMPARISON_TITLES = {"student_vs_teacher": "single-teacher student vs its teacher",
                     "multi_teacher_vs_best_teacher": "multi-teacher student vs the best teacher",
                     "kt_finetune_vs_finetune_only": "transfer + fine-tune vs fine-tune only"}


@dataclass
class ReportFiles:
    report: Path
    plots: dict = field(default_factory=dict)   # plot name -> Path (only the plots that were drawn)
    skipped: dict = field(default_factory=dict)  # plot name -> why it was not drawn


def mean_sd(mean: Optional[float], sd: Optional[float], digits: int = 3) -> str:
    if mean is None:
        return DASH
    return f"{mean:.{digits}f}" if sd is None else f"{mean:.{digits}f} ± {sd:.{digits}f}"


def human_params(count: Optional[int]) -> str:
    if count is None:
        return DASH
    if count >= 1e6:
        return f"{count / 1e6:.2f} M"
    if count >= 1e3:
        return f"{count / 1e3:.1f} k"
    return str(count)


def seconds(value: Optional[float]) -> str:
    return DASH if value is None else (f"{value:.3f}" if value < 1 else f"{value:.2f}")


def _ratio(value: Optional[float], digits: int = 3) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


def _labels(results: dict) -> dict:
    labels = dict(results.get("labels") or {})
    for model in results["models"]:
        for key, values in (model.get("per_class") or {}).items():
            labels.setdefault(key, values.get("name", key))
    return labels


def _row(cells) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def _repeated(results: dict) -> bool:
    return any((m.get("n_repeats") or 1) > 1 for m in results["models"])


def results_table(results: dict) -> str:
    """The paper-style Markdown table: one row per model (mean ± sd over repeats when there are several)."""
    labels = _labels(results)
    repeated = _repeated(results)
    sd_key = "dice_sd_over_repeats" if repeated else "dice_sd"
    header = ["model", "role", "architecture", *(f"Dice {name}" for name in labels.values()), "Dice overall",
              *(["Dice per repeat"] if repeated else []), "HD95 (mm)", "params", "s / case",
              "s / case lean"]
    lines = [_row(header), _row(["---"] * 3 + ["---:"] * (len(header) - 3))]
    for model in results["models"]:
        per_class = model.get("per_class") or {}
        cells = [model["name"], ROLE_LABELS.get(model["role"], model["role"]), model.get("architecture") or DASH]
        cells += [mean_sd((per_class.get(k) or {}).get("dice_mean"), (per_class.get(k) or {}).get(sd_key))
                  for k in labels]
        cells.append(mean_sd(model.get("dice_mean"), model.get(sd_key)))
        if repeated:
            cells.append(" / ".join(DASH if r.get("dice_mean") is None else f"{r['dice_mean']:.3f}"
                                    for r in model.get("repeats") or []))
        cells += [
                  mean_sd(model.get("hd95_mean"), model.get("hd95_sd"), 2),
                  human_params(model.get("params")), seconds(model.get("seconds_per_case")),
                  seconds(model.get("seconds_per_case_lean"))]
        lines.append(_row(cells))
    return "\n".join(lines)


def per_class_table(results: dict) -> str:
    labels = _labels(results)
    over_repeats = _repeated(results)
    iou_sd, hd_sd = ("iou_sd_over_repeats", "hd95_sd_over_repeats") if over_repeats else ("iou_sd", "hd95_sd")
    header = ["model", *(f"IoU {n}" for n in labels.values()), *(f"HD95 {n} (mm)" for n in labels.values()),
              "HD95 penalised / both empty"]
    lines = [_row(header), _row(["---"] + ["---:"] * (len(header) - 1))]
    for model in results["models"]:
        per_class = model.get("per_class") or {}
        pc = [per_class.get(k) or {} for k in labels]
        penalised = sum(p.get("hd95_n_penalised") or 0 for p in pc)
        both = sum(p.get("hd95_n_both_empty") or 0 for p in pc)
        lines.append(_row([model["name"], *(mean_sd(p.get("iou_mean"), p.get(iou_sd)) for p in pc),
                           *(mean_sd(p.get("hd95_mean"), p.get(hd_sd), 2) for p in pc), f"{penalised} / {both}"]))
    return "\n".join(lines)


def comparisons_table(results: dict) -> Optional[str]:
    comparisons = results.get("comparisons") or []
    if not comparisons:
        return None
    lines = [_row(["comparison", "model", "against", "Dice", "its Dice", "Dice ratio", "Dice difference",
                   "params ratio", "speed-up", "speed-up lean"]), _row(["---"] * 3 + ["---:"] * 7)]
    for c in comparisons:
        difference = c.get("dice_difference")
        lines.append(_row([COMPARISON_TITLES.get(c["kind"], c["kind"]), c["model"], c["reference"],
                           _ratio(c.get("dice")), _ratio(c.get("reference_dice")), _ratio(c.get("dice_ratio")),
                           DASH if difference is None else f"{difference:+.3f}", _ratio(c.get("params_ratio")),
                           DASH if c.get("speedup") is None else f"{c['speedup']:.2f}×",
                           DASH if c.get("speedup_lean") is None else f"{c['speedup_lean']:.2f}×"]))
    return "\n".join(lines)


def claims_table(results: dict) -> Optional[str]:
    claims = results.get("claims") or []
    if not claims:
        return None
    lines = [_row(["claim", "model", "against", "effect", "95 % CI", "p (Wilcoxon)", "repeats × cases",
                   "verdict"]), _row(["---"] * 3 + ["---:"] * 4 + ["---"])]
    for c in claims:
        ratio = c.get("statistic") == "ratio"
        form = (lambda v: f"{v:.3f}") if ratio else (lambda v: f"{v:+.3f}")
        effect = DASH if c.get("effect") is None else form(c["effect"])
        interval = DASH if c.get("ci_low") is None else f"[{form(c['ci_low'])}, {form(c['ci_high'])}]"
        p_value = DASH if c.get("p_value") is None else f"{c['p_value']:.3g}"
        pairs = c.get("n_pairs") or 0
        cases = pairs // max(c.get("n_repeats") or 1, 1)
        verdict = {"holds": "**holds**", "does not hold": "**does not hold**"}.get(c["verdict"], c["verdict"])
        lines.append(_row([c["claim"], c["model"], c["against"], effect, interval, p_value,
                           f"{c.get('n_repeats')} × {cases}", verdict]))
    return "\n".join(lines)


def labelling_table(results: dict) -> Optional[str]:
    rows = [r for r in results.get("labelling") or [] if len(r.get("teachers") or []) > 1]
    if not rows:
        return None
    lines = [_row(["labelled dataset", "repeat", "fusion", "teachers (weight)", "agreement", "confidence",
                   "ignored"]), _row(["---", "---:", "---", "---", "---:", "---:", "---:"])]
    for r in rows:
        weights = r.get("mean_teacher_weights")
        teachers = ", ".join(t if weights is None else f"{t} ({w:.2f})" for t, w in
                             zip(r["teachers"], weights or [None] * len(r["teachers"])))
        lines.append(_row([r.get("dataset"), r.get("repeat", 0), r.get("fusion"), teachers,
                           _ratio(r.get("mean_teacher_agreement")), _ratio(r.get("mean_confidence")),
                           _ratio(r.get("mean_ignored_fraction"))]))
    return "\n".join(lines)


def draw_plots(results: dict, folder: Path, overlay_cases: int = 3) -> tuple[dict, dict]:
    """Every plot the results allow, into ``folder``; returns ``(drawn, skipped-with-reason)``."""
    import matplotlib

    models = results["models"]
    drawn, skipped = {}, {}
    # nnU-Net's logger calls seaborn's set(font_scale=2.5) whenever a model trains in this process: draw with
    # matplotlib's own defaults, whatever the process did before.
    defaults = {k: v for k, v in matplotlib.rcParamsDefault.items() if k != "backend"}
    jobs = {
        "dice_per_model": (lambda p: plot_dice_per_model(models, p), "no model has per-case Dice"),
        "student_vs_teacher": (lambda p: plot_student_vs_teacher(models, results.get("comparisons") or [], p),
                               "no student with a teacher evaluated on the same cases"),
        "overlays": (lambda p: plot_overlays(models, p, choose_overlay_cases(models, overlay_cases)),
                     "no case whose image, reference and predictions are all readable"
                     if overlay_cases else "overlay_cases is 0"),
        "training_curves": (lambda p: plot_training_curves(models, p), "no model has training curves"),
    }
    for name, (draw, reason) in jobs.items():
        with matplotlib.rc_context(defaults):
            path = draw(folder / f"{name}.png")
        if path is None:
            skipped[name] = reason
        else:
            drawn[name] = path
    return drawn, skipped


def render_report(results: dict, plots: dict, skipped: dict, plots_relative: str = PLOTS_FOLDER) -> str:
    experiment = results.get("experiment") or {}
    test_set = results.get("test_set") or {}
    first = results["models"][0].get("inference") or {}
    out = [f"# Knowledge-transfer experiment: {experiment.get('name') or 'unnamed'}", ""]
    if experiment.get("description"):
        out += [experiment["description"], ""]
    if test_set:
        where = test_set.get("dataset") or test_set.get("folder")
        out += [f"Test set: `{where}` ({test_set.get('split')} split, {test_set.get('num_cases')} cases), never used "
                "for training.", ""]
    repeats = max((m.get("n_repeats") or 1) for m in results["models"])
    seed = (results.get("config") or {}).get("seed")
    if repeats > 1:
        dice_text = (f"Dice: every model trained here was trained {repeats} times (seeds {seed} to "
                     f"{None if seed is None else seed + repeats - 1}); each cell is the mean ± sd over those "
                     "repeats of the test-set Dice (per class, nnU-Net's per-class mean over cases; overall, "
                     "nnU-Net's `foreground_mean`), and `Dice per repeat` lists each repeat's overall Dice.")
    else:
        dice_text = ("Dice: per class, mean ± sd over test cases of nnU-Net's per-case Dice; overall, nnU-Net's "
                     "`foreground_mean` (the mean over classes of the per-class means) ± the sd over cases of each "
                     "case's mean foreground Dice (one training per model: `repeats: 1`).")
    out += ["## Results", "", results_table(results), "",
            dice_text + " HD95: 95th percentile of the symmetric surface distances in mm, mean over "
            "classes of the per-class means ± sd of those class means; a class missing from the prediction or "
            "the reference scores the image diagonal (see docs/experiment.md). params: parameters of the network "
            "nnU-Net builds for inference. s / case: CPU seconds per test case (preprocessing, sliding window, "
            f"resampling back) with {first.get('threads', '?')} thread(s), mirroring "
            f"{'on' if first.get('mirroring', True) else 'off'}, one case at a time"
            + _timing_note(results.get("inference_timing")) + ".", ""]
    claims = claims_table(results)
    if claims:
        out += ["## Claims", "", claims, "",
                "Each claim compares per-case Dice (mean over foreground classes) of two models, paired by repeat "
                "and test case. Effect: difference of the means (or their ratio); 95 % CI: two-level bootstrap "
                "(repeats, then test cases, resampled with replacement; 2000 resamples); p: one-sided Wilcoxon "
                "signed-rank test that the paired effect exceeds the claim's threshold (−0.02 Dice for "
                "\"matches\", 0 for \"beats\", 0.97 for the ratio). Verdict: **holds** when the whole interval "
                "lies beyond the threshold and p < 0.05; **does not hold** when the whole interval lies on the "
                "wrong side; inconclusive otherwise. The best teacher is the one with the highest mean test Dice, "
                "which makes the multi-teacher claim harder, not easier. See docs/experiment.md.", ""]
    comparisons = comparisons_table(results)
    if comparisons:
        out += ["## Comparisons", "", comparisons, "",
                "Dice ratio = model / reference; speed-up = reference seconds per case / model seconds per case; "
                "speed-up lean = the same with the model on `kt-nnunet predict`'s lean path, TTA off (s / case lean).",
                ""]
    labelling = labelling_table(results)
    if labelling:
        out += ["## Teacher labels", "", labelling, "",
                "Agreement: mean pairwise Dice between the teachers' label maps on the transferal images; "
                "confidence: the fused probability of the chosen label; weights (reliability fusion): each "
                "teacher's weight, estimated from the teachers alone (no labels), averaged over the images.", ""]
    out += ["## IoU and HD95 per class", "", per_class_table(results), "",
            "Mean ± sd over repeats." if _repeated(results) else "Mean ± sd over test cases.",
            "HD95 penalised / both empty: counts of the first repeat's cases.", ""]
    if plots or skipped:
        out += ["## Plots", ""]
        titles = {"dice_per_model": "Dice per model", "student_vs_teacher": "Students against teachers, per case",
                  "overlays": "Image / reference / predictions", "training_curves": "Training curves"}
        for name, title in titles.items():
            if name in plots:
                out += [f"### {title}", "", f"![{title}]({plots_relative}/{Path(plots[name]).name})", ""]
            elif name in skipped:
                out += [f"### {title}", "", f"Not drawn: {skipped[name]}.", ""]
    timings = results.get("timings") or {}
    if timings:
        out += ["## Timings", "", _row(["step", "seconds"]), _row(["---", "---:"])]
        out += [_row([step, f"{value:.1f}"]) for step, value in timings.items() if isinstance(value, (int, float))]
        out.append("")
    versions = results.get("versions") or {}
    if versions:
        out += ["## Versions", "", ", ".join(f"{k} {v}" for k, v in versions.items() if v), ""]
    return "\n".join(out)


def _timing_note(timing: Optional[dict]) -> str:
    if not timing:
        return ""
    load = [timing.get("load_average_before"), timing.get("load_average_after")]
    load_text = "" if None in load else f"; load average {load[0]:.2f} before, {load[1]:.2f} after, on " \
                                        f"{timing.get('cpu_count')} CPUs"
    return f": {timing.get('what', 'interleaved rounds')}{load_text}"


def write_report(results: dict | str | Path, folder: Optional[str | Path] = None, *,
                 overlay_cases: int = 3) -> ReportFiles:
    """Write ``report.md`` and ``plots/*.png`` into ``folder`` (default: the folder holding results.json)."""
    from kt_nnunet.data.atomic import atomic_write_text

    if isinstance(results, (str, Path)):
        path = Path(results)
        path = path / RESULTS_FILE if path.is_dir() else path
        folder = Path(folder) if folder is not None else path.parent
        results = load_results(path)
    else:
        results = validate_results(results, "results")
        if folder is None:
            raise ValueError("write_report needs `folder` when given a results dict")
        folder = Path(folder)
    plots, skipped = draw_plots(results, folder / PLOTS_FOLDER, overlay_cases)
    report = atomic_write_text(folder / REPORT_FILE, render_report(results, plots, skipped))
    return ReportFiles(report, plots, skipped)
