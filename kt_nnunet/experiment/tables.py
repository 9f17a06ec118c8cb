"""The report's tables, built once from results.json and rendered as Markdown (report.md, the console) or HTML.

Each ``*_rows`` function returns a :class:`Table` (header, rows of display strings, which columns are
numbers) or ``None`` when the results hold nothing for it. The cells are the same text in both renderings;
only a verdict is emphasised (``**holds**`` in Markdown, ``<strong>`` in HTML).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from kt_nnunet.experiment.console import clock
from kt_nnunet.experiment.plots import ROLE_LABELS

DASH = "–"
EMPHASISED = ("holds", "does not hold")
COMPARISON_TITLES = {"student_vs_teacher": "single-teacher student vs its teacher",
                     "multi_teacher_vs_best_teacher": "multi-teacher student vs the best teacher",
                     "kt_finetune_vs_finetune_only": "transfer + fine-tune vs fine-tune only"}


@dataclass
class Table:
    header: list
    rows: list = field(default_factory=list)
    numeric: set = field(default_factory=set)   # indices of right-aligned (number) columns
    emphasis: set = field(default_factory=set)  # indices of columns whose EMPHASISED values are bold

    def markdown(self) -> str:
        def line(cells):
            return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

        def cell(index, value):
            return f"**{value}**" if index in self.emphasis and value in EMPHASISED else value

        rule = ["---:" if i in self.numeric else "---" for i in range(len(self.header))]
        body = [line([cell(i, str(value)) for i, value in enumerate(row)]) for row in self.rows]
        return "\n".join([line(self.header), line(rule), *body])


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


def ratio(value: Optional[float], digits: int = 3) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


def labels_of(results: dict) -> dict:
    labels = dict(results.get("labels") or {})
    for model in results["models"]:
        for key, values in (model.get("per_class") or {}).items():
            labels.setdefault(key, values.get("name", key))
    return labels


def repeated(results: dict) -> bool:
    return any((m.get("n_repeats") or 1) > 1 for m in results["models"])


def results_rows(results: dict) -> Table:
    """The paper-style table: one row per model (mean ± sd over repeats when there are several)."""
    labels = labels_of(results)
    several = repeated(results)
    sd_key = "dice_sd_over_repeats" if several else "dice_sd"
    header = ["model", "role", "architecture", *(f"Dice {name}" for name in labels.values()), "Dice overall",
              *(["Dice per repeat"] if several else []), "HD95 (mm)", "params", "s / case", "s / case lean"]
    table = Table(header, numeric=set(range(3, len(header))))
    for model in results["models"]:
        per_class = model.get("per_class") or {}
        cells = [model["name"], ROLE_LABELS.get(model["role"], model["role"]), model.get("architecture") or DASH]
        cells += [mean_sd((per_class.get(k) or {}).get("dice_mean"), (per_class.get(k) or {}).get(sd_key))
                  for k in labels]
        cells.append(mean_sd(model.get("dice_mean"), model.get(sd_key)))
        if several:
            cells.append(" / ".join(DASH if r.get("dice_mean") is None else f"{r['dice_mean']:.3f}"
                                    for r in model.get("repeats") or []))
        cells += [mean_sd(model.get("hd95_mean"), model.get("hd95_sd"), 2), human_params(model.get("params")),
                  seconds(model.get("seconds_per_case")), seconds(model.get("seconds_per_case_lean"))]
        table.rows.append(cells)
    return table


def per_class_rows(results: dict) -> Table:
    labels = labels_of(results)
    iou_sd, hd_sd = ("iou_sd_over_repeats", "hd95_sd_over_repeats") if repeated(results) else ("iou_sd", "hd95_sd")
    header = ["model", *(f"IoU {n}" for n in labels.values()), *(f"HD95 {n} (mm)" for n in labels.values()),
              "HD95 penalised / both empty"]
    table = Table(header, numeric=set(range(1, len(header))))
    for model in results["models"]:
        per_class = model.get("per_class") or {}
        pc = [per_class.get(k) or {} for k in labels]
        penalised = sum(p.get("hd95_n_penalised") or 0 for p in pc)
        both = sum(p.get("hd95_n_both_empty") or 0 for p in pc)
        table.rows.append([model["name"], *(mean_sd(p.get("iou_mean"), p.get(iou_sd)) for p in pc),
                           *(mean_sd(p.get("hd95_mean"), p.get(hd_sd), 2) for p in pc), f"{penalised} / {both}"])
    return table


def comparison_rows(results: dict) -> Optional[Table]:
    comparisons = results.get("comparisons") or []
    if not comparisons:
        return None
    table = Table(["comparison", "model", "against", "Dice", "its Dice", "Dice ratio", "Dice difference",
                   "params ratio", "speed-up", "speed-up lean"], numeric=set(range(3, 10)))
    for c in comparisons:
        difference = c.get("dice_difference")
        table.rows.append([COMPARISON_TITLES.get(c["kind"], c["kind"]), c["model"], c["reference"],
                           ratio(c.get("dice")), ratio(c.get("reference_dice")), ratio(c.get("dice_ratio")),
                           DASH if difference is None else f"{difference:+.3f}", ratio(c.get("params_ratio")),
                           DASH if c.get("speedup") is None else f"{c['speedup']:.2f}×",
                           DASH if c.get("speedup_lean") is None else f"{c['speedup_lean']:.2f}×"])
    return table


def claim_rows(results: dict) -> Optional[Table]:
    claims = results.get("claims") or []
    if not claims:
        return None
    table = Table(["claim", "model", "against", "effect", "95 % CI", "p (Wilcoxon)", "repeats × cases", "verdict"],
                  numeric={3, 4, 5, 6}, emphasis={7})
    for c in claims:
        form = (lambda v: f"{v:.3f}") if c.get("statistic") == "ratio" else (lambda v: f"{v:+.3f}")
        effect = DASH if c.get("effect") is None else form(c["effect"])
        interval = DASH if c.get("ci_low") is None else f"[{form(c['ci_low'])}, {form(c['ci_high'])}]"
        p_value = DASH if c.get("p_value") is None else f"{c['p_value']:.3g}"
        cases = (c.get("n_pairs") or 0) // max(c.get("n_repeats") or 1, 1)
        table.rows.append([c["claim"], c["model"], c["against"], effect, interval, p_value,
                           f"{c.get('n_repeats')} × {cases}", c["verdict"]])
    return table


def labelling_rows(results: dict) -> Optional[Table]:
    records = [r for r in results.get("labelling") or [] if len(r.get("teachers") or []) > 1]
    if not records:
        return None
    table = Table(["labelled dataset", "repeat", "fusion", "teachers (weight)", "agreement", "confidence",
                   "ignored"], numeric={1, 4, 5, 6})
    for r in records:
        weights = r.get("mean_teacher_weights")
        teachers = ", ".join(t if weights is None else f"{t} ({w:.2f})" for t, w in
                             zip(r["teachers"], weights or [None] * len(r["teachers"])))
        table.rows.append([r.get("dataset"), r.get("repeat", 0), r.get("fusion"), teachers,
                           ratio(r.get("mean_teacher_agreement")), ratio(r.get("mean_confidence")),
                           ratio(r.get("mean_ignored_fraction"))])
    return table


def per_case_rows(results: dict) -> Optional[Table]:
    """One row per test case, one column per model: the case's Dice (mean over foreground classes), averaged
    over the model's repeats."""
    models = results["models"]
    per_model = []
    for model in models:
        repeats = [r.get("case_dice") or {} for r in model.get("repeats") or []]
        if not repeats:
            repeats = [{c["case"]: c.get("dice_mean") for c in model.get("cases") or []}]
        per_model.append(repeats)
    cases = list(dict.fromkeys(case for repeats in per_model for r in repeats for case in r))
    if not cases:
        return None
    table = Table(["case", *(m["name"] for m in models)], numeric=set(range(1, len(models) + 1)))
    for case in cases:
        cells = [case]
        for repeats in per_model:
            values = [r[case] for r in repeats if r.get(case) is not None]
            cells.append(f"{sum(values) / len(values):.3f}" if values else DASH)
        table.rows.append(cells)
    return table


def timing_rows(results: dict) -> Optional[Table]:
    timings = {k: v for k, v in (results.get("timings") or {}).items() if isinstance(v, (int, float))}
    if not timings:
        return None
    return Table(["step", "seconds"], [[step, f"{value:.1f}"] for step, value in timings.items()], numeric={1})


def schedule_rows(results: dict) -> Optional[Table]:
    """The simulated wall time with 1, 4, 8, 16 and unlimited workers (results.json's ``schedule``) and the
    speed-up over running the steps one after another."""
    schedule = results.get("schedule")
    if not schedule:
        return None
    serial = schedule["serial_seconds"]
    counts = sorted(schedule["workers"], key=int)
    rows = [("1 worker (as run serially)" if count == "1" else f"{count} workers", schedule["workers"][count])
            for count in counts]
    rows.append(("unlimited (critical path)", schedule["unlimited_seconds"]))
    table = Table(["workers", "wall time", "seconds", "speed-up"], numeric={1, 2, 3})
    for label, wall in rows:
        table.rows.append([label, clock(wall), f"{wall:.1f}", DASH if not wall else f"{serial / wall:.2f}×"])
    return table
