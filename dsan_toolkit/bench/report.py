"""Rendering benchmark results: GitHub markdown, CSV, JSON, and a self-contained HTML page
with the figures of :mod:`.figures` (computed from the stored prediction arrays, nothing re-run).

Tables: a report holds headline tables (shown first; in HTML one line per row at 1366 px),
details tables (the HTML page puts them in a collapsible ``<details>`` section) and the
protocol section (selection rules, gaps, uncertainty, per-class AUC, method-vs-method matrix;
:mod:`.protocol`) with its figures.
"""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .figures import (  # noqa: F401 - the report's inputs, importable from here as before
    PredictionSet,
    VideoPrediction,
    confusion,
    figure_confusion,
    figure_roc_pr,
    figure_score_curves,
    frame_gt,
    snippet_classes,
)

REPORT_FORMATS: tuple[str, ...] = ("md", "html", "csv", "json")


# -- tables ----------------------------------------------------------------------------------
def markdown_table(df: pd.DataFrame) -> str:
    """GitHub-flavoured markdown table (no extra dependency)."""
    if df.empty:
        return "_(no rows)_\n"

    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cell(c) for c in cols) + " |"]
    lines.append("| " + " | ".join("---:" if _numeric(df[c]) else "---" for c in df.columns) + " |")
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


_NUMBER = re.compile(
    r"[-+–]?[\d.]+(e[-+]?\d+)?( ± [\d.]+)?( \[[-\d.]+, [-\d.]+\])?[†‡]?( [kM]| ‡ \d+/\d+)?|\[[-\d.]+, [-\d.]+\]|–|n/c|n/a|✓|✗|·|nan|"
)


def _numeric(col: pd.Series) -> bool:
    """Right-align a column whose every cell is a number (or a placeholder)."""
    return all(_NUMBER.fullmatch(str(v).strip()) for v in col)


_WRAP_CHARS = 32  # a text column with a longer cell may wrap in HTML (the others stay one line)


def _column_kind(col: pd.Series) -> str:
    """HTML cell class of a column: ``num`` (right-aligned), ``txt`` or ``wrap`` (long text)."""
    if _numeric(col):
        return "num"
    return "wrap" if col.astype(str).str.len().max() > _WRAP_CHARS else "txt"


def html_table(df: pd.DataFrame) -> str:
    """An HTML table: numbers right-aligned on one line, short text left-aligned on one line,
    long text (protocol notes, hash lists) wrapped."""
    if df.empty:
        return "<p>(no rows)</p>"
    kinds = [_column_kind(df[c]) for c in df.columns]
    head = "".join(f"<th class='{k}'>{html.escape(str(c))}</th>" for c, k in zip(df.columns, kinds))
    body = "".join(
        "<tr>" + "".join(f"<td class='{k}'>{html.escape(str(v))}</td>" for v, k in zip(row, kinds)) + "</tr>"
        for row in df.itertuples(index=False)
    )
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


@dataclass
class BenchReport:
    """Everything a report shows: titled headline tables, titled details tables (shown after
    them, collapsible in HTML), notes, footnotes, and prediction sets for figures."""

    title: str
    tables: list[tuple[str, pd.DataFrame]]
    notes: list[str] = field(default_factory=list)
    rows: pd.DataFrame | None = None  # flat per-run rows (csv/json)
    predictions: dict[str, list[PredictionSet]] = field(default_factory=dict)  # dataset -> sets
    footnotes: list[str] = field(default_factory=list)
    details: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    protocol: list[tuple[str, pd.DataFrame]] = field(default_factory=list)  # selection rules, CIs, ...
    protocol_notes: list[str] = field(default_factory=list)  # what each protocol number means
    protocol_figures: list[tuple[str, bytes]] = field(default_factory=list)  # (caption, PNG)


def render_markdown(rep: BenchReport) -> str:
    parts = [f"# {rep.title}\n"]
    parts += [f"> {n}\n" for n in rep.notes]
    for title, df in rep.tables:
        parts.append(f"\n## {title}\n\n{markdown_table(df)}")
    if rep.footnotes:
        parts.append("\n" + "\n".join(f"- {f}" for f in rep.footnotes) + "\n")
    for title, df in rep.details:
        parts.append(f"\n## {title}\n\n{markdown_table(df)}")
    if rep.protocol:
        parts.append("\n## Evaluation protocol\n\n" + "".join(f"- {n}\n" for n in rep.protocol_notes))
        for title, df in rep.protocol:
            parts.append(f"\n### {title}\n\n{markdown_table(df)}")
    return "".join(parts)


def render_csv(rep: BenchReport) -> str:
    """Per-run rows (the raw numbers, one line per run) as CSV."""
    df = rep.rows if rep.rows is not None else pd.DataFrame()
    return df.to_csv(index=False)


def render_json(rep: BenchReport) -> str:
    from .table import METRICS, TABLE_UNIT

    def records(tables: list[tuple[str, pd.DataFrame]]) -> dict[str, Any]:
        return {t: json.loads(df.to_json(orient="records", force_ascii=False)) for t, df in tables}

    out = {
        "title": rep.title,
        "notes": rep.notes,
        "tables": records(rep.tables),
        "details": records(rep.details),
        "protocol": records(rep.protocol),
        "runs": [] if rep.rows is None else json.loads(rep.rows.to_json(orient="records")),
        "units": {
            "tables": "percent" if TABLE_UNIT == "%" else TABLE_UNIT,
            "runs": {k: m.stored_unit for k, m in METRICS.items()},
        },
        "footnotes": rep.footnotes,
    }
    return json.dumps(out, indent=2, ensure_ascii=False) + "\n"


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1500px;margin:1.5em auto;padding:0 1.5em;color:#222}"
    "h1{margin:.2em 0 .5em}h2{margin:1.2em 0 .3em;font-size:1.3em}h3{margin:1em 0 .3em;font-size:1.1em}"
    ".note{background:#fff4d6;border-left:4px solid #e0a800;padding:.4em 1em;margin:.4em 0}"
    ".scroll{overflow-x:auto}"
    "table{border-collapse:collapse;font-size:13px;margin:.3em 0 .8em}"
    "td,th{border:1px solid #ccc;padding:3px 8px;white-space:nowrap;vertical-align:top}"
    "th{background:#f3f3f3}tbody tr:nth-child(even){background:#fafafa}"
    ".num{text-align:right;font-variant-numeric:tabular-nums}.txt{text-align:left}"
    ".wrap{text-align:left;white-space:normal;min-width:14em;max-width:36em}"
    ".foot{font-size:13px;color:#444;padding-left:1.2em}.aside{font-size:13px;color:#444}"
    "details{margin:1em 0}summary{cursor:pointer;font-weight:600;font-size:1.2em}"
    ".grid{display:grid;gap:1em;align-items:start}"
    "figure{margin:0 0 1em}figcaption{font-size:13px;color:#555}img{max-width:100%;height:auto}"
)


def confusion_cell_px(n_classes: int) -> int:
    """Smallest grid cell (px) for a confusion of ``n_classes`` classes: ~40 px per class, so
    that its labels stay legible (UCF's 14 classes: two per row at 1366 px, XD's 7: three)."""
    return int(min(640, max(340, 40 * n_classes)))


def _figure(cap: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f"<figure><img alt='{html.escape(cap)}' src='data:image/png;base64,{data}'>"
        f"<figcaption>{html.escape(cap)}</figcaption></figure>"
    )


def render_html(rep: BenchReport) -> str:
    """A single self-contained page (PNG figures embedded as data URIs): the headline tables,
    the footnotes they use, the details tables in a collapsible section, then the figures
    with the confusion matrices in a grid."""
    body = [f"<h1>{html.escape(rep.title)}</h1>"]
    body += [f"<p class='note'>{html.escape(n)}</p>" for n in rep.notes]
    for title, df in rep.tables:
        body.append(f"<h2>{html.escape(title)}</h2>")
        body.append(html_table(df))
    if rep.footnotes:
        body.append("<ul class='foot'>" + "".join(f"<li>{html.escape(f)}</li>" for f in rep.footnotes) + "</ul>")
    if rep.details:
        body.append("<details open><summary>Details: further metrics, runs and protocol</summary>")
        for title, df in rep.details:
            body.append(f"<h3>{html.escape(title)}</h3>")
            body.append(html_table(df))
        body.append("</details>")
    if rep.protocol:
        body.append("<h2>Evaluation protocol</h2>")
        body.append("<ul class='aside'>" + "".join(f"<li>{html.escape(n)}</li>" for n in rep.protocol_notes) + "</ul>")
        for title, df in rep.protocol:
            body.append(f"<h3>{html.escape(title)}</h3>")
            body.append(html_table(df))
        if rep.protocol_figures:
            body.append(
                "<div class='grid' style='grid-template-columns:repeat(auto-fill,minmax(520px,1fr))'>"
                + "".join(_figure(cap, png) for cap, png in rep.protocol_figures)
                + "</div>"
            )
    for dataset, preds in rep.predictions.items():
        if not preds:
            continue
        body.append(f"<h2>Figures: {html.escape(dataset)}</h2>")
        figs: list[tuple[str, bytes | None]] = [
            ("Per-video scores (annotated intervals shaded)", figure_score_curves(preds)),
            ("ROC and precision-recall", figure_roc_pr(preds)),
        ]
        body += [_figure(cap, png) for cap, png in figs if png is not None]
        confusions = [(p.method, figure_confusion(p)) for p in preds]
        cells = [_figure(f"{m}: fine-grained confusion", png) for m, png in confusions if png is not None]
        if cells:
            cell = confusion_cell_px(max(len(p.classes) for p in preds))
            body.append("<h3>Fine-grained confusion (test snippets, rows normalised)</h3>")
            body.append(
                f"<div class='grid' style='grid-template-columns:repeat(auto-fill,minmax({cell}px,1fr))'>"
                + "".join(cells)
                + "</div>"
            )
        without = [p.method for p in preds if not p.class_branch]
        if without:
            body.append(
                f"<p class='aside'>No confusion for {html.escape(', '.join(without))}: no class branch "
                "(one anomaly score per snippet, no class probabilities).</p>"
            )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'><title>"
        + html.escape(rep.title)
        + f"</title><style>{_CSS}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )


RENDERERS = {"md": render_markdown, "html": render_html, "csv": render_csv, "json": render_json}


def render(rep: BenchReport, fmt: str) -> str:
    from ..errors import InputError

    try:
        return RENDERERS[fmt](rep)
    except KeyError:
        raise InputError(f"unknown report format {fmt!r}; choose one of {', '.join(REPORT_FORMATS)}") from None
