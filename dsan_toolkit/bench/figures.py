"""Figures of a bench report, drawn with matplotlib's object-oriented API from stored arrays.

- per-video score curves (snippet scores repeated over their 16 frames) with the annotated
  intervals shaded;
- frame-level ROC and PR curves per method;
- per-class confusion of the fine-grained predictions: each test snippet's true class (the
  class of the annotated interval covering it, else normal) against the arg-max of the
  method's class probabilities, row-normalised; only for methods with a class branch;
- the protocol figures: the seeds' spread of the main metric per method and selection rule
  (strip plot) and the per-class AUC as a heatmap.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


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


# -- protocol figures ------------------------------------------------------------------------
RULE_MARKERS: dict[str, str] = {"last": "o", "best-on-val": "s", "best-on-test": "^", "none": "D"}


def figure_seed_spread(points: Sequence[tuple[str, str, float]], metric_label: str) -> bytes | None:
    """Strip plot of the main metric (%) of every run: one column per method, one marker per
    selection rule (offset side by side), one point per seed; the mean of each as a bar."""
    if not points:
        return None
    methods = list(dict.fromkeys(m for m, _, _ in points))
    rules = [r for r in RULE_MARKERS if any(p[1] == r for p in points)]
    fig = _new_figure(figsize=(max(4.5, 1.4 * len(methods) * max(1, len(rules)) / 2 + 2), 3.4))
    ax = fig.subplots()
    width = 0.7 / max(1, len(rules))
    for j, rule in enumerate(rules):
        for i, m in enumerate(methods):
            ys = np.array([v for mm, r, v in points if mm == m and r == rule])
            if ys.size == 0:
                continue
            x = i + (j - (len(rules) - 1) / 2) * width
            jitter = np.linspace(-0.25, 0.25, ys.size) * width if ys.size > 1 else np.zeros(1)
            ax.scatter(x + jitter, ys, marker=RULE_MARKERS[rule], s=22, color=f"C{j}", label=rule if i == 0 else None)
            ax.hlines(ys.mean(), x - width * 0.4, x + width * 0.4, color=f"C{j}", lw=1.5)
    ax.set_xticks(range(len(methods)), methods)
    ax.set_ylabel(f"{metric_label} (%)")
    ax.set_title("seeds' spread per method and selection rule", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return _png(fig)


def figure_class_auc(table: Mapping[str, Mapping[str, float]], classes: Sequence[str]) -> bytes | None:
    """Heatmap of per-class frame AUC (%): methods as rows, anomaly classes as columns."""
    methods = [m for m in table if table[m]]
    cols = [c for c in classes if any(c in table[m] for m in methods)]
    if not methods or not cols:
        return None
    mat = np.array([[table[m].get(c, np.nan) for c in cols] for m in methods], dtype=np.float64)
    fig = _new_figure(figsize=(1.5 + 0.6 * len(cols), 1.0 + 0.45 * len(methods)))
    ax = fig.subplots()
    im = ax.imshow(mat, cmap="viridis", vmin=max(0.0, float(np.nanmin(mat)) - 5), vmax=100, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(methods)), methods, fontsize=8)
    for i in range(len(methods)):
        for j in range(len(cols)):
            if mat[i, j] == mat[i, j]:
                ax.text(j, i, f"{mat[i, j]:.0f}", ha="center", va="center", fontsize=6, color="white")
    fig.colorbar(im, ax=ax, fraction=0.03, label="AUC (%)")
    ax.set_title("per-class frame AUC (class videos + all normal videos)", fontsize=10)
    fig.tight_layout()
    return _png(fig)
