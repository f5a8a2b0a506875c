"""Rank-zero reports: results/*.json, comparison.md, and the table printed at the end of a run."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from dsf_dist.compare import differences


def comparison_report(comparison: dict[str, Any], primary: str, trained: str, existing: str) -> dict[str, Any]:
    """comparison.json: the seed's dictionary under 'comparison', differences and provenance beside it."""
    return {
        "comparison": comparison,
        "differences": differences(comparison),
        "primary_metric": primary,
        "trained_model": trained,
        "existing_model": existing,
    }


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _rows(report: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    rows = []
    for metric, diff in report["differences"].items():
        pair = report["comparison"][metric]
        relative = diff["relative"]
        rows.append(
            (
                metric,
                _fmt(pair["trained"]),
                _fmt(pair["eval"]),
                f"{diff['absolute']:+.4f}",
                f"{relative:+.2%}" if relative is not None else "n/a",
            )
        )
    return rows


def summary_line(report: dict[str, Any]) -> str:
    primary = report["primary_metric"]
    diff = report["differences"].get(primary)
    if diff is None:
        return f"primary metric '{primary}' was not computed for both models"
    verdict = "better than" if diff["trained_better"] else ("equal to" if diff["absolute"] == 0 else "worse than")
    pair = report["comparison"][primary]
    return (
        f"trained model is {verdict} the existing model on {primary}: "
        f"{_fmt(pair['trained'])} vs {_fmt(pair['eval'])} ({diff['absolute']:+.4f})"
    )


def comparison_markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Comparison: trained vs existing model",
        "",
        f"- trained model: `{report['trained_model']}`",
        f"- existing model: `{report['existing_model']}`",
        f"- {summary_line(report)}",
        "",
        "| metric | trained | existing | difference | relative |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [f"| {' | '.join(row)} |" for row in _rows(report)]
    matrices = report["comparison"].get("confusion_matrix")
    if matrices:
        for side, label in (("trained", "trained"), ("eval", "existing")):
            lines += ["", f"## Confusion matrix, {label} model (rows: true class, columns: predicted)", ""]
            lines += _matrix_markdown(matrices[side])
    return "\n".join(lines) + "\n"


def _matrix_markdown(matrix: list[list[int]] | dict[str, int]) -> list[str]:
    if isinstance(matrix, dict):
        return [f"tp={matrix['tp']} tn={matrix['tn']} fp={matrix['fp']} fn={matrix['fn']}"]
    header = "| true \\ pred | " + " | ".join(str(i) for i in range(len(matrix))) + " |"
    rule = "|---|" + "---:|" * len(matrix)
    return [header, rule] + [f"| {i} | " + " | ".join(str(v) for v in row) + " |" for i, row in enumerate(matrix)]


def print_comparison(report: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title="trained vs existing model (test split)")
    for column in ("metric", "trained", "existing", "difference", "relative"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for row in _rows(report):
        table.add_row(*row)
    console.print(table)
    console.print(summary_line(report))
