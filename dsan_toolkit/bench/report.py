"""Rendering benchmark results: GitHub markdown, CSV, JSON, and a self-contained HTML page
with matplotlib figures computed from the stored prediction arrays.

Figures (all from per-video arrays, nothing re-run):
- per-video score curves (snippet scores repeated over their 16 frames) with the annotated
  intervals shaded;
- frame-level ROC and PR curves per method;
- per-class confusion of the fine-grained predictions: each test snippet's true class (the
  class of the annotated interval covering it, else normal) against the arg-max of the
  method's class probabilities, row-normalised; only for methods with a class branch
  (:attr:`PredictionSet.class_branch`), in a grid of several per row.

Tables: a report holds headline tables (shown first; in HTML one line per row at 1366 px) and
details tables (the HTML page puts them in a collapsible ``<details>`` section).
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

REPORT_FORMATS: tuple[str, ...] = ("md", "html", "csv", "json")


# -- prediction sets (inputs of the figures) -------------------------------------------------
@dataclass
class VideoPrediction:
    """One test video: per-snippet arrays plus its annotated intervals (frames [s, e))."""

    video_id: str
    scores: np.ndarray  # (T,) anomaly score of the classifier branch
    segments: tuple[tuple[int, int, str], ...] = ()
    class_probs: np.ndarray | None = None  # (T, C)
    label: str = ""  # the video's (first) class code


@dataclass
class PredictionSet:
    """One run's test predictions, enough to draw every figure."""

    method: str
    dataset: str
    classes: tuple[str, ...]  # class codes, normal first
    videos: list[VideoPrediction] = field(default_factory=list)
    snippet_len: int = 16
    class_branch: bool = True  # False: class_probs are a placeholder (no confusion is drawn)

    def frame_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """All videos' frame-level scores and 0/1 ground truth, concatenated (official rule:
        scores repeated per snippet, ground truth of length T*snippet_len)."""
        scores = [np.repeat(v.scores.astype(np.float64), self.snippet_len) for v in self.videos]
        gts = [frame_gt(len(v.scores), v.segments, self.snippet_len) for v in self.videos]
        return np.concatenate(scores), np.concatenate(gts)


def frame_gt(n_snippets: int, segments: Sequence[tuple[int, int, str]], snippet_len: int = 16) -> np.ndarray:
    """0/1 frame ground truth of length ``n_snippets * snippet_len``; intervals past it are cut."""
    n = n_snippets * snippet_len
    frames = np.arange(n)
    gt = np.zeros(n, dtype=np.int8)
    for s, e, _ in segments:
        gt |= ((frames >= s) & (frames < e)).astype(np.int8)
    return gt


def snippet_classes(pred: PredictionSet, v: VideoPrediction) -> np.ndarray:
    """True class index of each snippet: the interval covering most of its frames, else normal."""
    T, L = len(v.scores), pred.snippet_len
    idx = {c: i for i, c in enumerate(pred.classes)}
    cover = np.zeros((T, len(pred.classes)), dtype=np.int64)
    starts = np.arange(T) * L
    for s, e, lab in v.segments:
        overlap = np.clip(np.minimum(starts + L, e) - np.maximum(starts, s), 0, None)
        if lab in idx:
            cover[:, idx[lab]] += overlap
    covered = cover.sum(1) * 2 >= L  # at least half the snippet's frames annotated
    return np.where(covered, cover.argmax(1), 0)  # class 0 is the normal class


def confusion(pred: PredictionSet) -> np.ndarray:
    """(C, C) counts: rows true class, columns arg-max predicted class, over all test snippets."""
    C = len(pred.classes)
    mat = np.zeros((C, C), dtype=np.int64)
    for v in pred.videos:
        if v.class_probs is None:
            continue
        t = snippet_classes(pred, v)
        p = np.asarray(v.class_probs).argmax(1)
        np.add.at(mat, (t, p), 1)
    return mat


# -- figures ---------------------------------------------------------------------------------
def _new_figure(**kwargs: Any) -> Any:
    """A matplotlib Figure drawn with the object-oriented API (no pyplot, no global backend
    switch: the library leaves the caller's matplotlib state alone)."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return buf.getvalue()


def figure_score_curves(preds: Sequence[PredictionSet], max_videos: int = 4) -> bytes | None:
    """Per-video score curves of each method, annotated intervals shaded."""
    ref = preds[0]
    anomalous = [v for v in ref.videos if v.segments]
    normal = [v for v in ref.videos if not v.segments]
    chosen = (anomalous[: max(1, max_videos - 1)] + normal[:1])[:max_videos]
    if not chosen:
        return None
    fig = _new_figure(figsize=(9, 2.0 * max(1, len(chosen))))
    axes = fig.subplots(len(chosen), 1, squeeze=False)
    for ax, v in zip(axes[:, 0], chosen):
        for p in preds:
            match = next((w for w in p.videos if w.video_id == v.video_id), None)
            if match is not None:
                ax.plot(np.repeat(match.scores, p.snippet_len), label=p.method, lw=1.2)
        for s, e, lab in v.segments:
            ax.axvspan(s, e, color="tab:red", alpha=0.18, lw=0)
            ax.text((s + e) / 2, 1.02, lab, ha="center", va="bottom", fontsize=7)
        ax.set_ylim(-0.02, 1.12)
        ax.set_ylabel("score")
        ax.set_title(f"{v.video_id} ({'anomalous' if v.segments else 'normal'})", fontsize=9)
    axes[-1, 0].set_xlabel("frame")
    axes[0, 0].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return _png(fig)


def figure_roc_pr(preds: Sequence[PredictionSet]) -> bytes:
    """Frame-level ROC and PR curves, one line per method."""
    from sklearn.metrics import auc as _auc
    from sklearn.metrics import precision_recall_curve, roc_curve

    fig = _new_figure(figsize=(9, 3.8))
    a1, a2 = fig.subplots(1, 2)
    for p in preds:
        s, y = p.frame_arrays()
        if y.min() == y.max():
            continue
        fpr, tpr, _ = roc_curve(y, s)
        prec, rec, _ = precision_recall_curve(y, s)
        a1.plot(fpr, tpr, label=f"{p.method} (AUC {100 * _auc(fpr, tpr):.1f})")
        a2.plot(rec, prec, label=p.method)
    a1.plot([0, 1], [0, 1], "k:", lw=0.8)
    a1.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (frames)")
    a2.set(xlabel="recall", ylabel="precision", title="precision-recall (frames)")
    a1.legend(fontsize=7)
    a2.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def figure_confusion(pred: PredictionSet) -> bytes | None:
    """Row-normalised confusion of the fine-grained predictions (None without class probs or
    without a class branch)."""
    if not pred.class_branch:
        return None
    mat = confusion(pred)
    if mat.sum() == 0:
        return None
    norm = mat / np.maximum(mat.sum(1, keepdims=True), 1)
    C = len(pred.classes)
    fig = _new_figure(figsize=(1.2 + 0.55 * C, 1.0 + 0.5 * C))
    ax = fig.subplots()
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(C), pred.classes, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(C), pred.classes, fontsize=7)
    for i in range(C):
        for j in range(C):
            if mat[i, j]:
                ax.text(
                    j,
                    i,
                    f"{norm[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
    ax.set(xlabel="predicted (arg-max class prob.)", ylabel="true (snippet)", title=f"{pred.method}: snippet classes")
    fig.tight_layout()
    return _png(fig)


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


_NUMBER = re.compile(r"[-+–]?[\d.]+(e[-+]?\d+)?( ± [\d.]+)?†?( [kM])?|–|n/c|n/a|✓|✗|nan|")


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


def render_markdown(rep: BenchReport) -> str:
    parts = [f"# {rep.title}\n"]
    parts += [f"> {n}\n" for n in rep.notes]
    for title, df in rep.tables:
        parts.append(f"\n## {title}\n\n{markdown_table(df)}")
    if rep.footnotes:
        parts.append("\n" + "\n".join(f"- {f}" for f in rep.footnotes) + "\n")
    for title, df in rep.details:
        parts.append(f"\n## {title}\n\n{markdown_table(df)}")
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
