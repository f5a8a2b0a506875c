"""Rank-zero reports of a comparison: comparison.json, comparison.md (fits a pull-request comment),
comparison.html with its PNG plots, and the table printed at the end of a run. Only rendering lives here;
the numbers come from report.py."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from dsf_dist import files
from dsf_dist.config.metrics import HIGHER_IS_BETTER

COLUMNS = ("metric", "trained", "existing", "difference", "CI of difference", "relative")


def write_reports(folder: Path, report: dict[str, Any], logs: list[tuple[str, Path]]) -> list[Path]:
    """comparison.json, comparison.md, the PNG plots and comparison.html, all in `folder`."""
    from dsf_dist.comparison.plots import write_plots

    plots = write_plots(folder, report, logs)
    report["plots"] = [name for name, _ in plots]
    written = [folder / "comparison.json", folder / "comparison.md", folder / "comparison.html"]
    files.write_json(written[0], report)
    files.write_text(written[1], comparison_markdown(report))
    files.write_text(written[2], comparison_html(report, plots))
    return written + [folder / name for name, _ in plots]


# -- shared pieces ----------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _ci(interval: list[float] | None) -> str:
    return f"[{interval[0]:+.4f}, {interval[1]:+.4f}]" if interval else "n/a"


def _bootstrap(report: dict[str, Any]) -> dict[str, Any]:
    return report.get("statistics", {}).get("bootstrap", {})


def _rows(report: dict[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    intervals = _bootstrap(report).get("metrics", {})
    rows = []
    for metric, diff in report["differences"].items():
        pair = report["comparison"][metric]
        relative = diff["relative"]
        interval = intervals.get(metric, {}).get("difference_ci")
        rows.append(
            (
                metric if HIGHER_IS_BETTER.get(metric, True) else f"{metric} (lower is better)",
                _fmt(pair["trained"]),
                _fmt(pair["eval"]),
                f"{diff['absolute']:+.4f}",
                _ci(interval),
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
    line = (
        f"trained model is {verdict} the existing model on {primary}: "
        f"{_fmt(pair['trained'])} vs {_fmt(pair['eval'])} ({diff['absolute']:+.4f})"
    )
    interval = _bootstrap(report).get("metrics", {}).get(primary, {}).get("difference_ci")
    if interval:
        level = f"{_bootstrap(report)['confidence']:.0%}"
        noise = interval[0] <= 0 <= interval[1]
        line += f"; the {level} CI of the difference {_ci(interval)} "
        line += "includes 0, so this is within noise" if noise else "excludes 0"
    return line


def gate_verdict(report: dict[str, Any]) -> str:
    gates = report.get("gates")
    if not gates or not gates["configured"]:
        return "gates: none configured"
    checks = gates["checks"]
    failed = sum(not check["passed"] for check in checks)
    if failed:
        return f"gates: FAILED ({failed} of {len(checks)} failed)"
    return f"gates: passed (all {len(checks)})"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _gate_lines(report: dict[str, Any]) -> list[str]:
    checks = report.get("gates", {}).get("checks", [])
    return [f"{'PASS' if c['passed'] else 'FAIL'} {c['metric']} {c['gate']}: {c['reason']}" for c in checks]


def statistics_lines(report: dict[str, Any]) -> list[str]:
    """How the intervals were made, and McNemar's test, as sentences."""
    lines = []
    bootstrap = _bootstrap(report)
    if bootstrap.get("metrics"):
        average = bootstrap.get("average")
        averaged = (
            f"; precision, recall and f1 are {average} averages" if average in ("macro", "micro", "weighted") else ""
        )
        # A task whose samples are resampled in groups (a language model's test blocks) says what it resampled.
        resampled = bootstrap.get("resampled") or f"the {report['num_samples']:,} test samples"
        lines.append(
            f"{bootstrap['confidence']:.0%} confidence intervals: {bootstrap['method']}, "
            f"{bootstrap['resamples']:,} resamples of {resampled} (seed {bootstrap['seed']}){averaged}."
        )
    mcnemar = report.get("statistics", {}).get("mcnemar")
    if mcnemar:
        outcome = "significant" if mcnemar["significant"] else "not significant"
        lines.append(
            f"McNemar's test ({mcnemar['test'].removeprefix('McNemar, ')}) on the {mcnemar['discordant']} samples "
            f"where exactly one model is right: the trained model alone is right on "
            f"{mcnemar['trained_only_correct']}, the existing model alone on {mcnemar['existing_only_correct']}; "
            f"p = {mcnemar['p_value']:.3g}, {outcome} at {mcnemar['alpha']:.3g}."
        )
    return lines


# -- markdown ---------------------------------------------------------------------------------------


def comparison_markdown(report: dict[str, Any]) -> str:
    gates = report.get("gates", {})
    lines = ["# Comparison: trained vs existing model", ""]
    if gates.get("configured"):
        lines += [f"**{_sentence(gate_verdict(report))}**", ""]
        lines += [
            f"- **{'PASS' if c['passed'] else 'FAIL'}** {c['metric']} `{c['gate']}`: {c['reason']}"
            for c in gates["checks"]
        ] + [""]
    lines += [
        f"- trained model: `{report['trained_model']}`",
        f"- existing model: `{report['existing_model']}`",
    ]
    if "num_samples" in report:
        lines.append(f"- test samples: {report['num_samples']:,}, the same for both models")
    lines += [f"- {summary_line(report)}", ""]
    level = f"{_bootstrap(report).get('confidence', 0.95):.0%}"
    header = [column.replace("CI", f"{level} CI") for column in COLUMNS]
    lines += [f"| {' | '.join(header)} |", "|---|" + "---:|" * (len(COLUMNS) - 1)]
    lines += [f"| {' | '.join(row)} |" for row in _rows(report)]
    for line in statistics_lines(report):
        lines += ["", line]
    if report.get("per_class"):
        lines += ["", "## Per-class precision, recall and F1", "", *_per_class_markdown(report["per_class"])]
    matrices = report["comparison"].get("confusion_matrix")
    if matrices:
        names = report.get("classes")
        for side, label in (("trained", "trained"), ("eval", "existing")):
            summary = f"Confusion matrix, {label} model (rows: true class, columns: predicted)"
            lines += ["", f"<details><summary>{summary}</summary>", ""]
            lines += _matrix_markdown(matrices[side], names) + ["", "</details>"]
    if report.get("notes"):
        lines += ["", *(f"> {note}" for note in report["notes"])]
    return "\n".join(lines) + "\n"


def _per_class_markdown(rows: list[dict[str, Any]]) -> list[str]:
    header = "| class | support |" + "".join(
        f" {m} trained | {m} existing | {m} Δ |" for m in ("precision", "recall", "F1")
    )
    out = [header, "|---|---:|" + "---:|" * 9]
    for row in rows:
        cells = [html.escape(str(row["class"])), str(row["support"])]
        for metric in ("precision", "recall", "f1"):
            values = row[metric]
            cells += [f"{values['trained']:.3f}", f"{values['existing']:.3f}", f"{values['difference']:+.3f}"]
        out.append(f"| {' | '.join(cells)} |")
    return out


def _matrix_markdown(matrix: list[list[int]] | dict[str, int], names: list[str] | None = None) -> list[str]:
    if isinstance(matrix, dict):
        return [f"tp={matrix['tp']} tn={matrix['tn']} fp={matrix['fp']} fn={matrix['fn']}"]
    names = names or [str(i) for i in range(len(matrix))]
    header = "| true \\ pred | " + " | ".join(html.escape(name) for name in names) + " |"
    rule = "|---|" + "---:|" * len(matrix)
    return [header, rule] + [
        f"| {html.escape(names[i])} | " + " | ".join(str(v) for v in row) + " |" for i, row in enumerate(matrix)
    ]


# -- terminal ---------------------------------------------------------------------------------------


def print_comparison(report: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title="trained vs existing model (test split)")
    level = f"{_bootstrap(report).get('confidence', 0.95):.0%}"
    for column in COLUMNS:
        table.add_column(column.replace("CI", f"{level} CI"), justify="left" if column == "metric" else "right")
    for row in _rows(report):
        table.add_row(*row)
    console.print(table)
    for line in statistics_lines(report):
        console.print(line, highlight=False)
    console.print(summary_line(report), highlight=False)
    for line in _gate_lines(report):
        console.print(line, style=None if line.startswith("PASS") else "bold red", highlight=False)
    console.print(gate_verdict(report), highlight=False)
    for note in report.get("notes", []):
        console.print(f"note: {note}", highlight=False)


# -- html -------------------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 1120px;
       padding: 0 1rem; color: #1b1f24; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: .3rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: .6rem 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d0d7de; padding: .3rem .6rem; } th { background: #f6f8fa; }
td.num { text-align: right; } .better { color: #1a7f37; } .worse { color: #cf222e; }
.verdict { display: inline-block; padding: .35rem .8rem; border-radius: 6px; font-weight: 600; }
.pass { background: #dafbe1; color: #1a7f37; } .fail { background: #ffebe9; color: #cf222e; }
.none { background: #f6f8fa; color: #57606a; }
img { max-width: 100%; border: 1px solid #d0d7de; margin: .5rem 0; }
p.small, li.small { color: #57606a; font-size: .92rem; } code { font-size: .9rem; }
"""


def comparison_html(report: dict[str, Any], plots: list[tuple[str, str]]) -> str:
    e = html.escape
    gates = report.get("gates", {})
    state = "none" if not gates.get("configured") else ("pass" if gates["passed"] else "fail")
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>dsf comparison: {e(report['trained_model'])}</title><style>{STYLE}</style></head><body>",
        "<h1>Comparison: trained vs existing model</h1>",
        f'<p><span class="verdict {state}">{e(_sentence(gate_verdict(report)))}</span></p>',
        "<ul>",
        f"<li>trained model: <code>{e(report['trained_model'])}</code></li>",
        f"<li>existing model: <code>{e(report['existing_model'])}</code></li>",
    ]
    if "num_samples" in report:
        parts.append(f"<li>test samples: {report['num_samples']:,}, the same for both models</li>")
    parts += [f"<li><strong>{e(summary_line(report))}</strong></li>", "</ul>"]
    if gates.get("checks"):
        parts += ["<h2>Gates</h2>", _html_table(("result", "metric", "gate", "detail"), _gate_rows(gates["checks"]))]
    parts += ["<h2>Metrics</h2>", _html_metrics(report)]
    parts += [f'<p class="small">{e(line)}</p>' for line in statistics_lines(report)]
    figures = dict(plots)
    if "metrics.png" in figures:
        parts.append(_img("metrics.png", figures["metrics.png"]))
    if report.get("per_class"):
        parts += ["<h2>Per-class precision, recall and F1</h2>", _html_per_class(report["per_class"])]
    for name in ("confusion_matrices.png", "training_curves.png"):
        if name in figures:
            parts += [f"<h2>{e(figures[name])}</h2>", _img(name, figures[name])]
    parts += [f'<p class="small">Note: {e(note)}</p>' for note in report.get("notes", [])]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _img(name: str, title: str) -> str:
    return f'<img src="{html.escape(name)}" alt="{html.escape(title)}">'


def _html_table(header: tuple[str, ...] | None, rows: list[list[str]], head: str = "") -> str:
    """Cells are HTML already (escaped by the caller); a cell starting with '<td' is used as-is.
    `head` replaces the one-row header built from `header` (for grouped columns)."""
    if header is not None:
        head = "<tr>" + "".join(f"<th>{html.escape(column)}</th>" for column in header) + "</tr>"
    body = "".join(
        "<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead>{head}</thead><tbody>{body}</tbody></table>"


def _gate_rows(checks: list[dict[str, Any]]) -> list[list[str]]:
    verdicts = {
        True: '<td class="better"><strong>PASS</strong></td>',
        False: '<td class="worse"><strong>FAIL</strong></td>',
    }
    return [
        [
            verdicts[c["passed"]],
            html.escape(c["metric"]),
            f"<code>{html.escape(c['gate'])}</code>",
            html.escape(c["reason"]),
        ]
        for c in checks
    ]


def _signed(value: float, metric: str, digits: int = 4) -> str:
    """A difference cell, green when the trained model is better, red when worse."""
    better = value > 0 if HIGHER_IS_BETTER.get(metric, True) else value < 0
    css = "num better" if better else ("num worse" if value else "num")
    return f'<td class="{css}">{value:+.{digits}f}</td>'


def _html_metrics(report: dict[str, Any]) -> str:
    level = f"{_bootstrap(report).get('confidence', 0.95):.0%}"
    header = tuple(column.replace("CI", f"{level} CI") for column in COLUMNS)
    rows = []
    for metric, row in zip(report["differences"], _rows(report), strict=True):
        cells = [html.escape(row[0])] + [f'<td class="num">{html.escape(cell)}</td>' for cell in row[1:]]
        cells[3] = _signed(report["differences"][metric]["absolute"], metric)
        rows.append(cells)
    return _html_table(header, rows)


def _html_per_class(rows: list[dict[str, Any]]) -> str:
    groups = "".join(f'<th colspan="3">{metric}</th>' for metric in ("precision", "recall", "F1"))
    sides = "<th>trained</th><th>existing</th><th>Δ</th>" * 3
    head = f'<tr><th rowspan="2">class</th><th rowspan="2">support</th>{groups}</tr><tr>{sides}</tr>'
    body = []
    for row in rows:
        cells = [html.escape(str(row["class"])), f'<td class="num">{row["support"]}</td>']
        for metric in ("precision", "recall", "f1"):
            values = row[metric]
            cells += [f'<td class="num">{values["trained"]:.3f}</td>', f'<td class="num">{values["existing"]:.3f}</td>']
            cells.append(_signed(values["difference"], metric, digits=3))
        body.append(cells)
    return _html_table(None, body, head)
