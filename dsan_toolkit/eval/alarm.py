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


def roc_counts(scores: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative anomalous (``tps``) and normal (``fps``) weights at every distinct score, from
    the highest score down (the counts behind scikit-learn's ``roc_curve``)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    s = np.asarray(scores, dtype=np.float64)[order]
    last = np.flatnonzero(np.diff(s) != 0)  # last sample of every group of equal scores
    ends = np.concatenate([last, [s.size - 1]])
    return np.cumsum(pos[order])[ends], np.cumsum(neg[order])[ends]


def tpr_at_fpr(scores: np.ndarray, gt: np.ndarray, fpr: float, *, snippet_len: int = 16) -> float:
    """Highest true-positive rate among the ROC points with false-positive rate ``<= fpr``
    (snippet ``scores`` repeated ``snippet_len`` times against frame labels ``gt``)."""
    target = _check_rate("the target false-positive rate", fpr)
    y, s, w = weighted_samples(scores, gt, snippet_len)
    tps, fps = roc_counts(s, w * (y == 1), w * (y == 0))
    ok = fps / fps[-1] <= target
    return float(tps[ok].max() / tps[-1]) if ok.any() else 0.0
