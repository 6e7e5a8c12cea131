"""Alarm metrics at fixed operating points: false alarm rate and TPR at a target FPR.

Both use the frame convention of :func:`~dsan_toolkit.eval.frame_auc`: a snippet score stands
for ``snippet_len`` frames.

* :func:`false_alarm_rate` (the FAR of Sultani et al. and UR-DMU): the fraction of the frames of
  the *normal* test videos whose score is strictly above the threshold (0.5). Strict ``>``: the
  released UR-DMU test code (``henrryzh1/UR-DMU``) binarises its scores with ``score > 0.5``
  (its only 0.5 cut; it prints no FAR itself), and a score of exactly 0.5 is not an alarm.
* :func:`tpr_at_fpr`: over all test frames, the highest TPR among the ROC operating points
  (one per distinct score, plus the origin) whose FPR is ``<=`` the target; the points are those
  of scikit-learn's ``roc_curve`` on the repeated scores.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .samples import weighted_samples

FAR_THRESHOLD = 0.5


def _check_rate(name: str, value: float) -> float:
    v = float(value)
    if not np.isfinite(v) or not 0.0 <= v <= 1.0:
        raise InputError(f"{name} must be a number in [0, 1]; got {value!r}")
    return v


def false_alarm_rate(normal_scores: np.ndarray, *, threshold: float = FAR_THRESHOLD) -> float:
    """Fraction of the frames of normal videos with a score ``> threshold``.

    ``normal_scores``: the snippet scores of the normal videos, concatenated. Every snippet
    stands for the same number of frames, so the frame fraction is the snippet fraction.
    """
    s = np.asarray(normal_scores, dtype=np.float64).ravel()
    if s.size == 0:
        raise InputError("no scores of normal videos: the false alarm rate needs at least one normal video")
    if not np.all(np.isfinite(s)):
        raise InputError("scores contain NaN or infinite values")
    if not np.isfinite(threshold):
        raise InputError(f"the alarm threshold must be a finite number; got {threshold!r}")
    return float(np.count_nonzero(s > threshold) / s.size)


class SnippetRoc:
    """ROC points of snippet scores standing for frames: one sort, then any number of rates.

    ``pos`` / ``neg``: anomalous / normal frames of each snippet. :meth:`tpr_at` and :meth:`auc`
    take an optional snippet mask (a subset of the videos) without sorting again.
    """

    def __init__(self, scores: np.ndarray, pos: np.ndarray, neg: np.ndarray):
        s = np.asarray(scores, dtype=np.float64)
        self.order = np.argsort(-s, kind="stable")
        ss = s[self.order]
        self.ends = np.concatenate([np.flatnonzero(ss[1:] != ss[:-1]), [ss.size - 1]])  # last of each tie group
        self.pos = np.asarray(pos, np.float64)[self.order]
        self.neg = np.asarray(neg, np.float64)[self.order]

    def counts(self, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Cumulative anomalous (``tps``) and normal (``fps``) frames at every distinct score,
        highest first (the counts behind scikit-learn's ``roc_curve``)."""
        p, n = self.pos, self.neg
        if mask is not None:
            m = np.asarray(mask, bool)[self.order]
            p, n = p * m, n * m
        return np.cumsum(p)[self.ends], np.cumsum(n)[self.ends]

    def tpr_at(self, fpr: float, mask: np.ndarray | None = None) -> float | None:
        """Highest TPR among the points with FPR ``<= fpr`` (``None`` with one class only)."""
        tps, fps = self.counts(mask)
        if tps[-1] == 0 or fps[-1] == 0:
            return None
        ok = fps / fps[-1] <= fpr
        return float(tps[ok].max() / tps[-1]) if ok.any() else 0.0

    def auc(self, mask: np.ndarray | None = None) -> float | None:
        """ROC AUC (trapezoids between the points; ``None`` with one class only)."""
        tps, fps = self.counts(mask)
        if tps[-1] == 0 or fps[-1] == 0:
            return None
        dt = np.diff(tps, prepend=0.0)
        df = np.diff(fps, prepend=0.0)
        return float(np.sum(df * (2.0 * tps - dt)) / (2.0 * tps[-1] * fps[-1]))


def snippet_counts(gt: np.ndarray, n_snippets: int, snippet_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Anomalous and normal frames per snippet of a frame ground truth."""
    g = np.asarray(gt).ravel()
    if g.size != n_snippets * snippet_len:
        raise InputError(
            f"{n_snippets} snippet scores x {snippet_len} frames = {n_snippets * snippet_len} frames, "
            f"but the ground truth has {g.size} frames"
        )
    pos = (g.reshape(-1, snippet_len) > 0).sum(axis=1).astype(np.float64)
    return pos, snippet_len - pos


def tpr_at_fpr(scores: np.ndarray, gt: np.ndarray, fpr: float, *, snippet_len: int = 16) -> float:
    """Highest true-positive rate among the ROC points with false-positive rate ``<= fpr``
    (snippet ``scores`` repeated ``snippet_len`` times against frame labels ``gt``)."""
    target = _check_rate("the target false-positive rate", fpr)
    y, s, w = weighted_samples(scores, gt, snippet_len)  # checks sizes, NaN, both classes present
    value = SnippetRoc(s, w * (y == 1), w * (y == 0)).tpr_at(target)
    assert value is not None  # both classes are present
    return value
