"""Snippet scores as weighted frame samples (the convention of every frame-level metric).

A snippet score stands for ``snippet_len`` frames; a curve (ROC, precision-recall) depends only
on the cumulative anomalous / normal frame counts at each distinct score, so a snippet is passed
as at most two weighted samples instead of ``snippet_len`` copies.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError, UndefinedMetric


def weighted_samples(scores: np.ndarray, gt: np.ndarray, snippet_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Snippet scores and frame labels as weighted samples: every snippet becomes at most two
    samples (label 1 weighted by its anomalous frames, label 0 by its normal frames); returns
    ``(labels, scores, weights)``. Refuses mismatched sizes, NaN and one-class ground truth."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    g = np.asarray(gt).ravel()
    if s.size * snippet_len != g.size:
        raise InputError(
            f"{s.size} snippet scores x {snippet_len} frames = {s.size * snippet_len} frames, "
            f"but the ground truth has {g.size} frames"
        )
    if s.size == 0:
        raise InputError("no scores to evaluate")
    if not np.all(np.isfinite(s)):
        raise InputError("scores contain NaN or infinite values")
    pos = (g.reshape(-1, snippet_len) > 0).sum(axis=1)
    neg = snippet_len - pos
    if pos.sum() == 0 or neg.sum() == 0:
        raise UndefinedMetric("the frame ground truth has only one class; AUC and AP are undefined")
    y = np.concatenate([np.ones(s.size, np.int8), np.zeros(s.size, np.int8)])
    w = np.concatenate([pos, neg]).astype(np.float64)
    keep = w > 0
    return y[keep], np.concatenate([s, s])[keep], w[keep]
