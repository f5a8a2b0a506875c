"""PNG plots for comparison.html: both confusion matrices, metric bars with bootstrap intervals, training curves.

Figures are built with matplotlib's object API on the Agg canvas (no pyplot, so no global figure state and
no display needed) and written whole or not at all.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from dsf_dist.config.metrics import HIGHER_IS_BETTER
from dsf_dist.files import atomic_write_bytes

TRAINED, EXISTING = "#1f77b4", "#ff7f0e"  # matplotlib's first two colours, kept for both models everywhere
BETTER, WORSE, UNCLEAR = "#2ca02c", "#d62728", "#7f7f7f"
# comparison.html is about 1,100 px wide: at 100 dpi a figure up to ~11 inches shows at its own size, text unscaled.
DPI = 100
BINARY_CELLS = (("tn", "fp"), ("fn", "tp"))  # rows: true 0, 1; columns: predicted 0, 1


def write_plots(folder: Path, report: dict[str, Any], logs: list[tuple[str, Path]]) -> list[tuple[str, str]]:
    """Write the plots this report has data for; returns [(file name, title), ...] in page order."""
    figures = [
        ("metrics.png", "Metrics with bootstrap confidence intervals", metric_bars(report)),
        ("confusion_matrices.png", "Confusion matrices", confusion_matrices(report)),
        ("training_curves.png", "Training curves", training_curves(logs)),
    ]
    written = []
    for name, title, figure in figures:
        if figure is not None:
            _save(figure, folder / name)
            written.append((name, title))
    return written


def _save(figure: Any, path: Path) -> None:
    buffer = io.BytesIO()
    # The constrained layout already fits every label inside the figure: bbox_inches="tight" would draw each figure
    # a second time to measure it (about 0.4 s of the 2 s the three plots take on 2 CPU cores).
    figure.savefig(buffer, format="png", dpi=DPI)
    atomic_write_bytes(path, buffer.getvalue())


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def confusion_matrices(report: dict[str, Any]) -> Any | None:
    matrices = report["comparison"].get("confusion_matrix")
    if not matrices:
        return None
    names = report.get("classes") or [str(i) for i in range(len(_as_grid(matrices["trained"])))]
    grids = [_as_grid(matrices[side]) for side in ("trained", "eval")]
    size = len(names)
    panel = max(4.2, 0.34 * size + 1.4)
    figure = _figure(2 * panel + 1.0, panel + 0.6)
    axes = figure.subplots(1, 2)
    top = max(max(max(row) for row in grid) for grid in grids) or 1
    long_names = max(len(name) for name in names) > 3
    for ax, grid, title in zip(axes, grids, ("Trained model", "Existing model"), strict=True):
        image = ax.imshow(grid, cmap="Blues", vmin=0, vmax=top)
        correct = sum(grid[i][i] for i in range(size))
        total = sum(map(sum, grid))
        ax.set_title(f"{title}: {correct} of {total} correct")
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_xticks(range(size), names, rotation=45 if long_names else 0, ha="right" if long_names else "center")
        ax.set_yticks(range(size), names)
        if size <= 25:
            for i in range(size):
                for j in range(size):
                    if grid[i][j] or size == 2:
                        colour = "white" if grid[i][j] > top / 2 else "black"
                        # Two classes: name the cells the way the seed's tp/tn/fp/fn dictionary does.
                        text = f"{BINARY_CELLS[i][j]} {grid[i][j]}" if size == 2 else str(grid[i][j])
                        ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=8 if size > 2 else 11)
    figure.colorbar(image, ax=list(axes), shrink=0.8, label="test samples")
    figure.suptitle(f"Confusion matrices on the same {report.get('num_samples', total)} test samples")
    return figure


def _as_grid(matrix: list[list[int]] | dict[str, int]) -> list[list[int]]:
    """The seed's binary tp/tn/fp/fn form as a 2x2 grid (rows: true 0, 1; columns: predicted 0, 1)."""
    if isinstance(matrix, dict):
        return [[matrix["tn"], matrix["fp"]], [matrix["fn"], matrix["tp"]]]
    return matrix


def metric_bars(report: dict[str, Any]) -> Any | None:
    """Left: both models per metric, with each model's interval; right: trained - existing with its interval."""
    intervals = report.get("statistics", {}).get("bootstrap", {})
    entries = intervals.get("metrics", {})
    metrics = [metric for metric in report["differences"] if metric in entries]
    if not metrics:
        return None
    level = f"{intervals['confidence']:.0%}"
    labels = [m if HIGHER_IS_BETTER.get(m, True) else f"{m}\n(lower is better)" for m in metrics]
    figure = _figure(max(8.0, 1.6 * len(metrics) + 4), 4.4)
    values_ax, diff_ax = figure.subplots(1, 2, width_ratios=[3, 2])
    width = 0.38
    for offset, side, colour in ((-width / 2, "trained", TRAINED), (width / 2, "existing", EXISTING)):
        heights = [entries[m][side] for m in metrics]
        values_ax.bar(
            [i + offset for i in range(len(metrics))],
            heights,
            width,
            yerr=_errors(heights, [entries[m][f"{side}_ci"] for m in metrics]),
            capsize=4,
            color=colour,
            label=f"{side} model",
        )
    values_ax.set_xticks(range(len(metrics)), labels)
    values_ax.set_ylabel("value on the test split")
    values_ax.set_title(f"Both models, {level} bootstrap intervals")
    if all(m in ("accuracy", "precision", "recall", "f1") for m in metrics):
        values_ax.set_ylim(0, 1.02)  # fractions: the axis stops where the scale does
    figure.legend(loc="outside lower center", ncol=2, frameon=False)

    deltas = [entries[m]["difference"] for m in metrics]
    cis = [entries[m]["difference_ci"] for m in metrics]
    colours = [_verdict_colour(m, ci) for m, ci in zip(metrics, cis, strict=True)]
    diff_ax.bar(range(len(metrics)), deltas, 0.6, yerr=_errors(deltas, cis), capsize=5, color=colours)
    diff_ax.axhline(0, color="black", linewidth=0.8)
    # Bars stick to 0, so autoscaling leaves the zero line on the frame when every bar points one way.
    ends = [0.0, *deltas, *(end for ci in cis if ci for end in ci)]
    pad = 0.12 * ((max(ends) - min(ends)) or 1e-3)
    diff_ax.set_ylim(min(ends) - pad, max(ends) + pad)
    diff_ax.set_xticks(range(len(metrics)), labels)
    diff_ax.set_ylabel("trained − existing")
    diff_ax.set_title(f"Difference, {level} paired bootstrap CI")
    legend = [
        (BETTER, "trained significantly better"),
        (WORSE, "trained significantly worse"),
        (UNCLEAR, "no significant difference"),
    ]
    shown = [(colour, text) for colour, text in legend if colour in colours]
    diff_ax.legend(
        handles=[Patch(color=colour, label=text) for colour, text in shown],
        loc="best",
        fontsize="small",
        framealpha=0.9,
    )
    return figure


def _errors(values: list[float], cis: list[list[float] | None]) -> list[list[float]] | None:
    """matplotlib's asymmetric yerr: distances from each value down to the CI's low and up to its high."""
    if any(ci is None for ci in cis):
        return None
    return [
        [max(0.0, v - ci[0]) for v, ci in zip(values, cis, strict=True)],
        [max(0.0, ci[1] - v) for v, ci in zip(values, cis, strict=True)],
    ]


def _verdict_colour(metric: str, ci: list[float] | None) -> str:
    if ci is None:
        return UNCLEAR
    better_above = HIGHER_IS_BETTER.get(metric, True)
    if ci[0] > 0:
        return BETTER if better_above else WORSE
    if ci[1] < 0:
        return WORSE if better_above else BETTER
    return UNCLEAR


def training_curves(logs: list[tuple[str, Path]]) -> Any | None:
    """Loss (train per step and per epoch, validation per epoch) and validation metrics, against the epoch."""
    series = [(label, read_metrics_csv(path)) for label, path in logs if path is not None and path.is_file()]
    series = [(label, columns) for label, columns in series if columns]
    if not series:
        return None
    extra = sorted(
        {name for _, columns in series for name in columns if name.startswith("val_") and name != "val_loss"}
    )
    figure = _figure(10.5 if extra else 6.5, 4.0)
    loss_ax, *metric_axes = figure.subplots(1, 2 if extra else 1, squeeze=False)[0]
    styles = (
        ("train_loss_step", "train (per logged step)", ":"),
        ("train_loss_epoch", "train (epoch mean)", "-"),
        ("val_loss", "validation", "--"),
    )
    for run_index, (label, columns) in enumerate(series):
        colour = (TRAINED, EXISTING)[run_index % 2]
        prefix = f"{label}: " if len(series) > 1 else ""
        for column, name, style in styles:
            if column in columns:
                alpha = 0.6 if column.endswith("step") else 1.0
                loss_ax.plot(*columns[column], style, color=colour, alpha=alpha, label=prefix + name)
        for ax in metric_axes:
            for column in extra:
                if column in columns:
                    name = "validation " + ("accuracy" if column == "val_acc" else column.removeprefix("val_"))
                    ax.plot(*columns[column], "-o", markersize=3, color=colour, label=prefix + name)
    loss_ax.set_title("Loss")
    loss_ax.set_ylabel("loss")
    for ax in metric_axes:
        ax.set_title("Validation metrics")
        ax.set_ylabel("value")
    for ax in (loss_ax, *metric_axes):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    return figure


def read_metrics_csv(path: Path) -> dict[str, tuple[list[float], list[float]]]:
    """Lightning's CSVLogger file -> {column: (epochs, values)}, each column keeping only the rows that logged it.

    A row at the last step of epoch e sits at e + 1 (the end of that epoch); step rows in between sit at their
    fraction of the epoch, so per-step and per-epoch values share one axis.
    """
    with path.open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("step") and row.get("epoch")]
    last_step: dict[int, int] = {}
    for row in rows:
        epoch, step = int(float(row["epoch"])), int(float(row["step"]))
        last_step[epoch] = max(step, last_step.get(epoch, step))
    knots_step, knots_epoch = [0.0], [0.0]
    for epoch in sorted(last_step):
        knots_step.append(last_step[epoch] + 1.0)
        knots_epoch.append(epoch + 1.0)
    columns: dict[str, tuple[list[float], list[float]]] = {}
    for row in rows:
        where = _interpolate(float(row["step"]) + 1, knots_step, knots_epoch)
        for name, text in row.items():
            if name in ("epoch", "step") or not text:
                continue
            value = float(text)
            if math.isfinite(value):
                xs, values = columns.setdefault(name, ([], []))
                xs.append(where)
                values.append(value)
    return columns


def _interpolate(x: float, xs: list[float], ys: list[float]) -> float:
    return float(np.interp(x, xs, ys))
