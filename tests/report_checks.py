"""Checks of what a reader sees: figure layout (text inside the figure, tick labels apart) and the HTML report
opened in headless Chromium."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(name)), None)
CHROMIUM_MISSING = ("headless Chromium is not installed (Debian: apt-get install -y chromium; .ci/run installs it "
                    "when it runs as root)")
BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--allow-file-access-from-files",
                 "--virtual-time-budget=15000"]

# Loads the report in an iframe, then reports what the page holds: images and whether each decoded, the rows of
# every table, and the results table's "Dice overall" column after one and two clicks on its header.
HARNESS = """<!doctype html><html><body><pre id="out">pending</pre>
<iframe id="report" src="REPORT" width="1200" height="800"></iframe>
<script>
document.getElementById("report").addEventListener("load", function () {
  var doc = this.contentDocument, out = {tables: {}};
  var images = Array.prototype.slice.call(doc.images);
  out.images = images.length;
  out.broken = images.filter(function (i) { return !i.complete || i.naturalWidth === 0; }).length;
  doc.querySelectorAll("table").forEach(function (t) { out.tables[t.id] = t.tBodies[0].rows.length; });
  var table = doc.getElementById("results"), headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var column = headers.map(function (h) { return h.textContent; }).indexOf("Dice overall");
  function values() {
    return Array.prototype.map.call(table.tBodies[0].rows, function (r) { return r.cells[column].textContent; });
  }
  headers[column].click(); out.ascending = values();
  headers[column].click(); out.descending = values();
  document.getElementById("out").textContent = JSON.stringify(out);
});
</script></body></html>
"""


def inspect_in_browser(report: Path) -> dict:
    """What headless Chromium finds in ``report`` (see HARNESS)."""
    harness = report.with_name(".browser-harness.html")
    harness.write_text(HARNESS.replace("REPORT", report.name))
    try:
        dom = subprocess.run([CHROMIUM, *BROWSER_FLAGS, "--dump-dom", harness.as_uri()], capture_output=True,
                             text=True, timeout=120).stdout
    finally:
        harness.unlink()
    start = dom.index('<pre id="out">') + len('<pre id="out">')
    return json.loads(dom[start:dom.index("</pre>", start)].replace("&amp;", "&").replace("&lt;", "<")
                      .replace("&gt;", ">"))


def screenshot(report: Path, png: Path) -> Path:
    subprocess.run([CHROMIUM, *BROWSER_FLAGS, "--window-size=1280,2000", f"--screenshot={png}", report.as_uri()],
                   capture_output=True, timeout=120, check=True)
    return png


def _drawn_tick_labels(axis) -> list:
    """An axis' tick labels that are drawn: matplotlib also lists ticks beyond the view limits, and skips them."""
    low, high = sorted(axis.get_view_interval())
    span = (high - low) * 1e-9
    return [label for tick in axis.get_major_ticks() if low - span <= tick.get_loc() <= high + span
            for label in (tick.label1, tick.label2) if label.get_visible() and label.get_text().strip()]


def layout_problems(fig) -> list:
    """Text that sticks out of the figure, and tick labels of one axis that overlap each other."""
    from matplotlib.text import Text

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = fig.bbox
    problems = []
    ticks = [_drawn_tick_labels(axis) for axes in fig.axes for axis in (axes.xaxis, axes.yaxis)]
    tick_labels = {id(label) for labels in ticks for label in labels}
    all_tick_labels = {id(label) for axes in fig.axes for axis in (axes.xaxis, axes.yaxis)
                       for tick in axis.get_major_ticks() for label in (tick.label1, tick.label2)}
    for text in fig.findobj(Text):
        if not text.get_visible() or not text.get_text().strip():
            continue
        if id(text) in all_tick_labels and id(text) not in tick_labels:
            continue  # a tick beyond the axis limits: not drawn
        extent = text.get_window_extent(renderer)
        if extent.x0 < frame.x0 - 1 or extent.y0 < frame.y0 - 1 or extent.x1 > frame.x1 + 1 or extent.y1 > frame.y1 + 1:
            problems.append(f"{text.get_text()!r} at {extent.bounds} lies outside the figure {frame.bounds}")
    for shown in ticks:
        extents = [t.get_window_extent(renderer) for t in shown]
        for i in range(len(shown)):
            for j in range(i + 1, len(shown)):
                if extents[i].overlaps(extents[j]):
                    problems.append(f"tick labels {shown[i].get_text()!r} and {shown[j].get_text()!r} overlap")
    return problems
