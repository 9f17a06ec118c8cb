"""The report's PNG plots, drawn from results.json records with matplotlib's Agg backend (no display).

Each function takes the ``models`` list (results.json records), writes one PNG and returns its path, or
returns ``None`` (with nothing written) when the results hold nothing to plot, e.g. no teacher/student
pair for the scatter or no training curves.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

ROLE_COLOURS = {"teacher": "#1f77b4", "student": "#ff7f0e", "multi_teacher_student": "#2ca02c",
                "kt_finetune": "#d62728", "finetune_only": "#7f7f7f"}
ROLE_LABELS = {"teacher": "teacher", "student": "single-teacher student",
               "multi_teacher_student": "multi-teacher student", "kt_finetune": "transfer + fine-tune",
               "finetune_only": "fine-tune only"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _figure(width: float, height: float, rows: int = 1, columns: int = 1):
    """A figure whose constrained layout keeps every title, label and legend inside it, however long."""
    return _pyplot().subplots(rows, columns, figsize=(width, height), squeeze=False, layout="constrained")


def wrap(text: str, width: int) -> str:
    """``text`` broken into lines of at most ``width`` characters, preferably after a space or ``_`` (model
    names have no spaces)."""
    import textwrap

    lines = textwrap.wrap(text.replace("_", "_ "), width + 1, break_long_words=True)
    return "\n".join(line.replace("_ ", "_").strip() for line in lines)


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial.png")
    fig.savefig(tmp, dpi=110)
    _pyplot().close(fig)
    tmp.replace(path)
    return path


def _pooled_dice(model: dict) -> list:
    """Every (repeat, case) Dice of a model; the first repeat's cases when it has no repeats."""
    repeats = model.get("repeats") or []
    if not repeats:
        return list(_case_dice(model).values())
    return [d for r in repeats for d in (r.get("case_dice") or {}).values() if d is not None]


def _case_dice(model: dict) -> dict:
    return {c["case"]: c["dice_mean"] for c in model.get("cases") or [] if c.get("dice_mean") is not None}


def plot_dice_per_model(models: Sequence[dict], path: Path) -> Optional[Path]:
    """Box plot of the per-case mean foreground Dice of each model (points and the mean on top)."""
    plt = _pyplot()
    names = [wrap(m["name"], 12) for m in models]  # horizontal, so that neighbours never overlap
    label_lines = max(n.count("\n") + 1 for n in names)
    fig, axes = _figure(max(6.0, 0.95 * len(models) + 2.8), 4.0 + 0.16 * label_lines)
    ax = axes[0][0]
    positions = range(1, len(models) + 1)
    values = [_pooled_dice(m) for m in models]
    for x, model, vals in zip(positions, models, values):
        colour = ROLE_COLOURS.get(model["role"], "black")
        if vals:
            box = ax.boxplot([vals], positions=[x], widths=0.6, patch_artist=True, showfliers=False)
            box["boxes"][0].set(facecolor=colour, alpha=0.35)
            jitter = [x + 0.12 * math.sin(i * 2.4) for i in range(len(vals))]
            ax.scatter(jitter, vals, s=10, color=colour, zorder=3)
        if model.get("dice_mean") is not None:
            ax.scatter([x], [model["dice_mean"]], marker="D", s=36, color="black", zorder=4)
    ax.set_xticks(list(positions))
    ax.set_xticklabels(names, fontsize=8)
    ax.set_xlim(0.4, len(models) + 0.6)
    ax.set_ylabel("Dice (mean over foreground classes)")
    ax.set_ylim(0, 1.02)
    ax.set_title("Test Dice per model\n(box: cases of every repeat; ◆: nnU-Net foreground mean)", fontsize=10)
    roles = [r for r in ROLE_COLOURS if any(m["role"] == r for m in models)]
    handles = [plt.Rectangle((0, 0), 1, 1, color=ROLE_COLOURS[r], alpha=0.5) for r in roles]
    fig.legend(handles, [ROLE_LABELS[r] for r in roles], fontsize=8, loc="outside right upper")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_student_vs_teacher(models: Sequence[dict], comparisons: Sequence[dict], path: Path) -> Optional[Path]:
    """Per-case Dice of each student (y) against its teacher, or its best teacher (x), paired by repeat and case
    as the claims pair them; identity line."""
    import numpy as np

    from kt_nnunet.experiment.claims import paired_scores

    by_name = {m["name"]: m for m in models}
    pairs = [c for c in comparisons if c["kind"] in ("student_vs_teacher", "multi_teacher_vs_best_teacher")
             and c["model"] in by_name and c["reference"] in by_name]
    if not pairs:
        return None
    plt = _pyplot()
    fig, axes = _figure(5.2, 5.2 + 0.22 * len(pairs))
    ax = axes[0][0]
    plotted = False
    for index, pair in enumerate(pairs):
        student, teacher = paired_scores(by_name[pair["model"]], by_name[pair["reference"]])
        both = np.isfinite(student) & np.isfinite(teacher)
        if not both.any():
            continue
        marker = "o" if pair["kind"] == "student_vs_teacher" else "^"
        ax.scatter(teacher[both], student[both], s=18, marker=marker,
                   color=plt.cm.tab10(index % 10), label=wrap(f"{pair['model']} vs {pair['reference']}", 60))
        plotted = True
    if not plotted:
        plt.close(fig)
        return None
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("teacher Dice per case")
    ax.set_ylabel("student Dice per case")
    ax.set_title("Students against their teachers\n(per test case and repeat)", fontsize=10)
    fig.legend(fontsize=7, loc="outside lower center", ncols=1)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_training_curves(models: Sequence[dict], path: Path) -> Optional[Path]:
    """One panel per trained model: train/val loss (left axis) and pseudo Dice with its EMA (right axis)."""
    trained = [m for m in models if (m.get("training") or {}).get("epochs")]
    if not trained:
        return None
    plt = _pyplot()
    columns = min(3, len(trained))
    rows = math.ceil(len(trained) / columns)
    fig, axes = _figure(4.4 * columns, 3.3 * rows, rows, columns)
    for ax, model in zip(axes.flat, trained):
        curves = model["training"]
        for key, style, label in (("train_losses", "-", "train loss"), ("val_losses", "--", "val loss")):
            values = curves.get(key) or []
            ax.plot(range(len(values)), [math.nan if v is None else v for v in values], style, label=label,
                    marker="." if len(values) < 20 else None)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        twin = ax.twinx()
        for key, colour, label in (("mean_fg_dice", "tab:green", "pseudo Dice"), ("ema_fg_dice", "tab:red", "EMA")):
            values = curves.get(key) or []
            twin.plot(range(len(values)), [math.nan if v is None else v for v in values], color=colour,
                      label=label, alpha=0.8, marker="." if len(values) < 20 else None)
        twin.set_ylim(0, 1)
        twin.set_ylabel("Dice")
        ax.set_title(wrap(f"{model['name']} ({ROLE_LABELS.get(model['role'], model['role'])})", 40), fontsize=9)
        legend = [a + b for a, b in zip(ax.get_legend_handles_labels(), twin.get_legend_handles_labels())]
    for ax in list(axes.flat)[len(trained):]:
        ax.axis("off")
    fig.legend(*legend, fontsize=8, loc="outside lower center", ncols=4)
    return _save(fig, path)


def choose_overlay_cases(models: Sequence[dict], count: int) -> list[str]:
    """``count`` cases spread over the Dice range (worst, median, best, ...) of the first non-teacher model."""
    if count <= 0:
        return []
    guide = next((m for m in models if m["role"] == "multi_teacher_student"),
                 next((m for m in models if m["role"] != "teacher"), models[0]))
    ranked = sorted(_case_dice(guide).items(), key=lambda item: item[1])
    if not ranked:
        ranked = [(c["case"], 0.0) for c in guide.get("cases") or []]
    if len(ranked) <= count:
        return [case for case, _ in ranked]
    picks = sorted({round(i * (len(ranked) - 1) / (count - 1)) for i in range(count)}) if count > 1 else [0]
    return [ranked[i][0] for i in picks]


def _orthogonal_views(volume, centre, spacing, fill=0):
    """Axial, coronal and sagittal slices of a (z, y, x) ``volume`` through ``centre``, side by side in one 2D
    array; rows are repeated so each view shows the voxels' true proportions (to the nearest whole factor)."""
    import numpy as np

    z, y, x = centre
    sz, sy, sx = (float(s) for s in spacing)
    views = [(volume[z], round(sy / sx) or 1),          # axial: (y, x)
             (volume[:, y, :], round(sz / sx) or 1),    # coronal: (z, x)
             (volume[:, :, x], round(sz / sy) or 1)]    # sagittal: (z, y)
    views = [np.repeat(view, factor, axis=0) for view, factor in views]
    height = max(v.shape[0] for v in views)
    padded = [np.pad(v, ((0, height - v.shape[0]), (0, 0)), constant_values=fill) for v in views]
    separator = np.full((height, 1), fill, dtype=padded[0].dtype)
    return np.concatenate([padded[0], separator, padded[1], separator, padded[2]], axis=1)


def _slice_2d(image, reference, predictions, spacing=(1.0, 1.0, 1.0)):
    """The 2D view: the array itself for 2D data; for 3D, the axial, coronal and sagittal slices through the
    centre of the reference's labelled region, side by side (the image's own minimum fills the gaps)."""
    import numpy as np

    if image.shape[0] == 1:
        return image[0], reference[0], [p[0] for p in predictions]
    foreground = np.argwhere(reference > 0)
    centre = (foreground.mean(0).round().astype(int) if len(foreground)
              else np.array(reference.shape) // 2)
    return (_orthogonal_views(image, centre, spacing, fill=float(image.min())),
            _orthogonal_views(reference, centre, spacing), [_orthogonal_views(p, centre, spacing) for p in predictions])


def overlay_models(models: Sequence[dict], max_models: int = 6) -> list:
    """The models an overlay figure shows, in results order: one of every role first (the best teacher, the
    best single-teacher student, every multi-teacher student, fine-tuned model and fine-tune-only baseline),
    then the other models while there is room."""
    def best(role):
        return sorted((m for m in models if m["role"] == role), key=lambda m: -(m.get("dice_mean") or 0.0))[:1]

    first = best("teacher") + best("student") + [m for m in models if m["role"] in (
        "multi_teacher_student", "kt_finetune", "finetune_only")]
    chosen = (first + [m for m in models if m not in first])[:max_models]
    return [m for m in models if m in chosen]


def plot_overlays(models: Sequence[dict], path: Path, cases: Sequence[str], max_models: int = 6) -> Optional[Path]:
    """Rows = cases; columns = image, reference, then up to ``max_models`` models' predictions (see
    :func:`overlay_models`); a legend names the label colours. 3D cases show three orthogonal slices (axial,
    coronal, sagittal) through the centre of the reference's labelled region."""
    import numpy as np

    from kt_nnunet.nnunet.raw_dataset import read_images, read_seg

    shown = overlay_models(models, max_models)
    records = {m["name"]: {c["case"]: c for c in m.get("cases") or []} for m in shown}
    rows = []
    for case in cases:
        per_model = [records[m["name"]].get(case) for m in shown]
        if any(r is None for r in per_model):
            continue
        first = per_model[0]
        files = [first.get("reference_file"), *first.get("image_files", [])] + [r["prediction_file"] for r in per_model]
        if not first.get("image_files") or not all(f and Path(f).is_file() for f in files):
            continue
        images, properties = read_images(first["image_files"])
        reference = read_seg(first["reference_file"])[0][0]
        predictions = [read_seg(r["prediction_file"])[0][0] for r in per_model]
        rows.append((case, *_slice_2d(images[0], reference, predictions, properties["spacing"])))
    if not rows:
        return None
    plt = _pyplot()
    from matplotlib.colors import ListedColormap

    labels = {int(k): v for k, v in (shown[0].get("labels") or {}).items() if str(k).isdigit() and int(k) > 0}
    num_labels = max([1, *labels, *(int(array.max()) for r in rows for array in (r[2], *r[3]))])
    colours = [plt.cm.tab10(i % 10) for i in range(num_labels)]
    columns = 2 + len(shown)
    fig, axes = _figure(2.1 * columns, 2.2 * len(rows) + 1.0, len(rows), columns)
    for row, (case, image, reference, predictions) in enumerate(rows):
        low, high = np.percentile(image, [0.5, 99.5])
        panels = [("image", None), ("reference", reference)] + [(m["name"], p) for m, p in zip(shown, predictions)]
        for column, (title, label_map) in enumerate(panels):
            ax = axes[row][column]
            ax.imshow(image, cmap="gray", vmin=low, vmax=high, interpolation="nearest")
            if label_map is not None:
                masked = np.ma.masked_where(label_map == 0, label_map - 1)
                ax.imshow(masked, cmap=ListedColormap(colours), vmin=-0.5, vmax=num_labels - 0.5, alpha=0.5,
                          interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(wrap(title, 16), fontsize=8)
            if column == 0:
                ax.set_ylabel(wrap(case, 16), fontsize=8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[i - 1], alpha=0.6) for i in range(1, num_labels + 1)]
    fig.legend(handles, [labels.get(i, f"label {i}") for i in range(1, num_labels + 1)], fontsize=8,
               loc="outside lower center", ncols=min(num_labels, 6))
    return _save(fig, path)
