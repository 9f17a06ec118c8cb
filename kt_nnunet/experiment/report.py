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

from kt_nnunet.experiment.console import clock
from kt_nnunet.experiment.plots import (
    choose_overlay_cases,
    plot_dice_per_model,
    plot_overlays,
    plot_student_vs_teacher,
    plot_training_curves,
)
from kt_nnunet.experiment.results import RESULTS_FILE, load_results, validate_results
from kt_nnunet.experiment.tables import (
    Table,
    claim_rows,
    comparison_rows,
    labelling_rows,
    per_class_rows,
    repeated,
    results_rows,
    schedule_rows,
    timing_rows,
)

REPORT_FILE = "report.md"
HTML_FILE = "report.html"
PLOTS_FOLDER = "plots"
PLOT_TITLES = {"dice_per_model": "Dice per model", "student_vs_teacher": "Students against teachers, per case",
               "overlays": "Image / reference / predictions", "training_curves": "Training curves"}


@dataclass
class ReportFiles:
    report: Path
    html: Optional[Path] = None
    plots: dict = field(default_factory=dict)   # plot name -> Path (only the plots that were drawn)
    skipped: dict = field(default_factory=dict)  # plot name -> why it was not drawn


def results_table(results: dict) -> str:
    """The paper-style Markdown table: one row per model (mean ± sd over repeats when there are several)."""
    return results_rows(results).markdown()


def claims_table(results: dict) -> Optional[str]:
    table = claim_rows(results)
    return None if table is None else table.markdown()


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


@dataclass
class Section:
    """One part of the report: a title, an optional table and notes (Markdown prose: `code`, **bold**)."""

    title: str
    table: Optional[object] = None   # a tables.Table
    notes: list = field(default_factory=list)
    key: str = ""                     # a stable id (the HTML anchor, the browser test)


def header_lines(results: dict) -> list:
    """The lines under the title: the description and the test set."""
    experiment = results.get("experiment") or {}
    test_set = results.get("test_set") or {}
    lines = [experiment["description"]] if experiment.get("description") else []
    if test_set:
        where = test_set.get("dataset") or test_set.get("folder")
        lines.append(f"Test set: `{where}` ({test_set.get('split')} split, {test_set.get('num_cases')} cases), never "
                     "used for training.")
    return lines


def report_sections(results: dict) -> list:
    """The report's sections in order (plots, provenance and versions are added by each renderer)."""
    built = (_results_section(results), _claims_section(results), _comparisons_section(results),
             _labelling_section(results), _unscored_teachers_section(results), _per_class_section(results),
             _schedule_section(results))
    return [section for section in built if section is not None]


def _dice_note(results: dict) -> str:
    repeats = max((m.get("n_repeats") or 1) for m in results["models"])
    seed = (results.get("config") or {}).get("seed")
    if repeats > 1:
        return (f"Dice: every model trained here was trained {repeats} times (seeds {seed} to "
                f"{None if seed is None else seed + repeats - 1}); each cell is the mean ± sd over those "
                "repeats of the test-set Dice (per class, nnU-Net's per-class mean over cases; overall, "
                "nnU-Net's `foreground_mean`), and `Dice per repeat` lists each repeat's overall Dice.")
    return ("Dice: per class, mean ± sd over test cases of nnU-Net's per-case Dice; overall, nnU-Net's "
            "`foreground_mean` (the mean over classes of the per-class means) ± the sd over cases of each "
            "case's mean foreground Dice (one training per model: `repeats: 1`).")


def _results_section(results: dict) -> Section:
    first = results["models"][0].get("inference") or {}
    return Section("Results", results_rows(results), [
        _dice_note(results) + " HD95: 95th percentile of the symmetric surface distances in mm, mean over "
        "classes of the per-class means ± sd of those class means; a class missing from the prediction or "
        "the reference scores the image diagonal (see docs/experiment.md). params: parameters of the network "
        "nnU-Net builds for inference. s / case: CPU seconds per test case (preprocessing, sliding window, "
        f"resampling back) with {first.get('threads', '?')} thread(s), mirroring "
        f"{'on' if first.get('mirroring', True) else 'off'}, one case at a time"
        + _timing_note(results.get("inference_timing")) + ". s / case lean: the same cases through "
        "`kt-nnunet predict`'s lean predictor with TTA off, timed in the same rounds (the deployment path)."],
        key="results")


def _claims_section(results: dict) -> Optional[Section]:
    claims = claim_rows(results)
    if not claims:
        return None
    return Section("Claims", claims, [
        "Each claim compares per-case Dice (mean over foreground classes) of two models, paired by repeat "
        "and test case. Effect: difference of the means (or their ratio); 95 % CI: two-level bootstrap "
        "(repeats, then test cases, resampled with replacement; 2000 resamples); p: one-sided Wilcoxon "
        "signed-rank test that the paired effect exceeds the claim's threshold (−0.02 Dice for "
        "\"matches\", 0 for \"beats\", 0.97 for the ratio). Verdict: **holds** when the whole interval "
        "lies beyond the threshold and p < 0.05; **does not hold** when the whole interval lies on the "
        "wrong side; inconclusive otherwise. The best teacher is the one with the highest mean test Dice, "
        "which makes the multi-teacher claim harder, not easier. See docs/experiment.md."], key="claims")


def _comparisons_section(results: dict) -> Optional[Section]:
    comparisons = comparison_rows(results)
    if not comparisons:
        return None
    return Section("Comparisons", comparisons, [
        "Dice ratio = model / reference; speed-up = reference seconds per case / model seconds per case; "
        "speed-up lean = the same with the model on `kt-nnunet predict`'s lean path, TTA off (s / case lean)."],
        key="comparisons")


def _labelling_section(results: dict) -> Optional[Section]:
    labelling = labelling_rows(results)
    if not labelling:
        return None
    return Section("Teacher labels", labelling, [
        "Agreement: mean pairwise Dice between the teachers' label maps on the transferal images; "
        "confidence: the fused probability of the chosen label; weights (reliability fusion): each "
        "teacher's weight, estimated from the teachers alone (no labels), averaged over the images."],
        key="labelling")


def _unscored_teachers_section(results: dict) -> Optional[Section]:
    unscored = results.get("unscored_teachers") or []
    if not unscored:
        return None
    table = Table(["teacher", "kind", "path"])
    table.rows.extend([t["name"], t["kind"], t["path"]] for t in unscored)
    return Section("Teachers not scored on the test set", table, [
        "These teachers labelled the transferal images but have no test-set score: a predictions folder holds "
        "only the transferal cases, and an exported network has no model folder to evaluate. Claims against "
        "\"the best teacher\" are not made for students that learnt from them."], key="unscored_teachers")


def _per_class_section(results: dict) -> Section:
    return Section("IoU and HD95 per class", per_class_rows(results), [
        "Mean ± sd over repeats." if repeated(results) else "Mean ± sd over test cases.",
        "HD95 penalised / both empty: counts of the first repeat's cases."], key="per_class")


def _schedule_section(results: dict) -> Optional[Section]:
    schedule = schedule_rows(results)
    if not schedule:
        return None
    return Section("How long with more workers", schedule, schedule_notes(results["schedule"]), key="schedule")


def schedule_notes(schedule: dict) -> list:
    """What the schedule table assumes, naming the critical path's ends (the steps that bound the wall time)."""
    path = schedule.get("critical_path") or []
    ends = f"from `{path[0]}` to `{path[-1]}`" if len(path) > 1 else f"`{path[0]}`" if path else "empty"
    notes = [f"Simulated from each step's recorded time over the experiment's step graph: a free worker starts "
             f"the earliest-planned step whose dependencies have finished. The critical path runs {ends} "
             f"({len(path)} step{'s' if len(path) != 1 else ''}, {clock(schedule['unlimited_seconds'])}); no number "
             "of workers finishes sooner. Queue wait and per-job start-up (scheduling, loading nnU-Net and the "
             "data) are not counted, so a cluster run takes longer."]
    untimed = schedule.get("untimed") or []
    if untimed:
        notes.append("Counted as 0 s (no recorded time): " + ", ".join(f"`{name}`" for name in untimed) + ".")
    return notes


def render_report(results: dict, plots: dict, skipped: dict, plots_relative: str = PLOTS_FOLDER) -> str:
    experiment = results.get("experiment") or {}
    out = [f"# Knowledge-transfer experiment: {experiment.get('name') or 'unnamed'}", ""]
    for line in header_lines(results):
        out += [line, ""]
    for section in report_sections(results):
        out += [f"## {section.title}", ""]
        if section.table is not None:
            out += [section.table.markdown(), ""]
        out += ["\n".join(section.notes), ""] if section.notes else []
    if plots or skipped:
        out += ["## Plots", ""]
        for name, title in PLOT_TITLES.items():
            if name in plots:
                out += [f"### {title}", "", f"![{title}]({plots_relative}/{Path(plots[name]).name})", ""]
            elif name in skipped:
                out += [f"### {title}", "", f"Not drawn: {skipped[name]}.", ""]
    timings = timing_rows(results)
    if timings:
        out += ["## Timings", "", timings.markdown(), ""]
    versions = results.get("versions") or {}
    if versions:
        out += ["## Versions", "", ", ".join(f"{k} {v}" for k, v in versions.items() if v), ""]
    out += [f"The same report with sortable tables, the per-case Dice and each model's provenance: [{HTML_FILE}]"
            f"({HTML_FILE}).", ""]
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
    """Write ``report.md``, ``report.html`` (self-contained) and ``plots/*.png`` into ``folder`` (default: the
    folder holding results.json)."""
    from kt_nnunet.atomic_files import atomic_write_text

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
    from kt_nnunet.experiment.html_report import render_html

    plots, skipped = draw_plots(results, folder / PLOTS_FOLDER, overlay_cases)
    report = atomic_write_text(folder / REPORT_FILE, render_report(results, plots, skipped))
    html = atomic_write_text(folder / HTML_FILE, render_html(results, plots, skipped))
    return ReportFiles(report, html, plots, skipped)
