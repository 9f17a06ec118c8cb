"""``report.html``: the report as one self-contained page (plots embedded, no network access, sortable tables).

It holds what report.md holds (the same sections, tables and notes, from ``report.report_sections``), plus
the per-case Dice of every model and each model's provenance: its teachers and their fusion, checkpoints
with checksums, seeds and folders per repeat, and the software versions. Clicking a column header sorts a
table by it (numbers by value, "–" last); the few lines of script needed are inline.
"""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from kt_nnunet.experiment.plots import ROLE_LABELS
from kt_nnunet.experiment.tables import DASH, EMPHASISED, Table, per_case_rows, timing_rows

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 78rem;
       padding: 0 1rem; color: #1b1b1b; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
nav a { margin-right: 1rem; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.6rem 0; }
th, td { border: 1px solid #d0d0d0; padding: 0.25rem 0.5rem; white-space: nowrap; }
th { background: #f3f3f3; cursor: pointer; user-select: none; position: sticky; top: 0; }
th[aria-sort="ascending"]::after { content: " ▲"; } th[aria-sort="descending"]::after { content: " ▼"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafafa; }
.note { font-size: 0.85rem; color: #444; max-width: 60rem; }
strong.holds { color: #1a7f37; } strong.does-not-hold { color: #b42318; }
figure { margin: 1rem 0; } figure img { max-width: 100%; border: 1px solid #eee; }
details { margin: 0.4rem 0; } summary { cursor: pointer; font-weight: 600; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.15rem 1rem; font-size: 0.85rem; }
dt { color: #555; } dd { margin: 0; word-break: break-all; }
code { background: #f3f3f3; padding: 0 0.2rem; }
"""

# Sorts a table by the clicked column: numbers by value ("0.745 ± 0.01" by 0.745, "12.3 k" by 12300), text
# alphabetically, "–" always last.
SCRIPT = """
(function () {
  var units = {k: 1e3, M: 1e6};
  function key(text) {
    var m = text.trim().match(/^[\\[(]?([-+\\u2212]?\\d+(?:\\.\\d+)?(?:e[-+]?\\d+)?)\\s*([kM])?/i);
    if (!m) return null;
    return parseFloat(m[1].replace("\\u2212", "-")) * (units[m[2]] || 1);
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("th").forEach(function (th, column) {
      th.addEventListener("click", function () {
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        table.querySelectorAll("th").forEach(function (other) { other.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = a.cells[column].textContent, y = b.cells[column].textContent;
          if (x === "\\u2013" || y === "\\u2013") return (x === "\\u2013") - (y === "\\u2013");
          var kx = key(x), ky = key(y), order;
          if (kx !== null && ky !== null) order = kx - ky; else order = x.localeCompare(y);
          return ascending ? order : -order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });
})();
"""


def inline(text: str) -> str:
    """The report's Markdown prose (`code`, **bold**) as HTML, everything else escaped."""
    text = html.escape(str(text), quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)


def html_table(table: Table, table_id: str) -> str:
    def bold(text):
        return f'<strong class="{text.replace(" ", "-")}">{html.escape(text)}</strong>'

    head = "".join(f'<th scope="col">{html.escape(str(h))}</th>' for h in table.header)
    body = []
    for row in table.rows:
        cells = []
        for index in range(len(row)):
            text = str(row[index])
            content = bold(text) if index in table.emphasis and text in EMPHASISED else html.escape(text)
            cells.append(f'<td class="num">{content}</td>' if index in table.numeric else f"<td>{content}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="table-wrap"><table class="sortable" id="{table_id}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _embedded_image(path: Path, title: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(title)}">'
            f"<figcaption>{html.escape(title)}</figcaption></figure>")


def _fusion_of(model: dict, labelling: list, repeat: int = 0) -> str:
    teachers = list(model.get("teachers") or [])
    for record in labelling:
        if list(record.get("teachers") or []) == teachers and record.get("repeat", 0) == repeat:
            return record.get("fusion") or DASH
    return DASH


def _definition_list(items: list) -> str:
    return "<dl>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def provenance_html(results: dict) -> str:
    """One collapsible block per model: what it is, what it learnt from, which files, per repeat."""
    labelling = results.get("labelling") or []
    blocks = []
    for model in results["models"]:
        esc = html.escape
        fingerprint = model.get("fingerprint") or {}
        items = [("role", esc(ROLE_LABELS.get(model["role"], model["role"]))),
                 ("architecture", esc(str(model.get("architecture") or DASH))),
                 ("network class", f"<code>{esc(str(model.get('network_class') or DASH))}</code>")]
        if model.get("teachers"):
            items += [("teachers", esc(", ".join(model["teachers"]))),
                      ("fusion of their labels", esc(_fusion_of(model, labelling)))]
        items += [("folds", esc(", ".join(str(f) for f in model.get("folds") or []) or DASH)),
                  ("checkpoint", esc(str(model.get("checkpoint") or DASH)))]
        for fold, digest in (fingerprint.get("checkpoint_sha256") or {}).items():
            items.append((f"sha256 (fold {fold}, repeat 0)", f"<code>{esc(digest)}</code>"))
        training = model.get("training") or {}
        if training.get("source"):
            items.append(("training curves from", f"<code>{esc(str(training['source']))}</code>"))
        repeats = model.get("repeats") or [{"repeat": 0, "seed": (model.get("extra") or {}).get("seed"),
                                            "model_folder": model.get("model_folder"),
                                            "evaluation_folder": model.get("evaluation_folder")}]
        for r in repeats:
            items.append((f"repeat {r.get('repeat', 0)} (seed {r.get('seed')})",
                          f"<code>{esc(str(r.get('model_folder') or DASH))}</code>"))
        blocks.append(f"<details><summary>{esc(model['name'])}</summary>{_definition_list(items)}</details>")
    return "".join(blocks)


def render_html(results: dict, plots: dict, skipped: dict) -> str:
    from kt_nnunet.experiment.report import PLOT_TITLES, header_lines, report_sections

    experiment = results.get("experiment") or {}
    title = f"Knowledge-transfer experiment: {experiment.get('name') or 'unnamed'}"
    sections = report_sections(results)
    per_case, timings = per_case_rows(results), timing_rows(results)
    parts = [f"<h1>{html.escape(title)}</h1>"]
    parts += [f"<p>{inline(line)}</p>" for line in header_lines(results)]
    anchors = [(s.key, s.title) for s in sections] + ([("per_case", "Per case")] if per_case else []) + \
              [("plots", "Plots"), ("provenance", "Provenance")]
    parts.append("<nav>" + "".join(f'<a href="#{k}-section">{html.escape(t)}</a>' for k, t in anchors) + "</nav>")
    for section in sections:
        parts.append(f'<section id="{section.key}-section"><h2>{html.escape(section.title)}</h2>')
        if section.table is not None:
            parts.append(html_table(section.table, section.key))
        parts += [f'<p class="note">{inline(note)}</p>' for note in section.notes]
        parts.append("</section>")
    if per_case:
        parts.append('<section id="per_case-section"><h2>Per case</h2>' + html_table(per_case, "per_case") +
                     '<p class="note">Dice (mean over foreground classes) of each test case, averaged over the '
                     "model's repeats. Click a model's column to sort the cases by it.</p></section>")
    parts.append('<section id="plots-section"><h2>Plots</h2>')
    for name, plot_title in PLOT_TITLES.items():
        if name in plots:
            parts.append(_embedded_image(plots[name], plot_title))
        elif name in skipped:
            parts.append(f"<p>{html.escape(plot_title)}: not drawn ({html.escape(skipped[name])}).</p>")
    parts.append("</section>")
    parts.append('<section id="provenance-section"><h2>Provenance</h2>' + provenance_html(results) + "</section>")
    if timings:
        parts.append('<section id="timings-section"><h2>Timings</h2>' + html_table(timings, "timings") + "</section>")
    versions = results.get("versions") or {}
    if versions:
        parts.append('<section id="versions-section"><h2>Versions</h2><p>' +
                     html.escape(", ".join(f"{k} {v}" for k, v in versions.items() if v)) +
                     (f"; results.json written {html.escape(str(results.get('created')))}"
                      if results.get("created") else "") + "</p></section>")
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>'
            f"<body>{''.join(parts)}<script>{SCRIPT}</script></body></html>\n")
