"""Metrics of many video-resampled test sets at once: the kernels of the bootstrap.

A resample is a vector of video counts ``c`` (how often each test video is drawn). Evaluating
the explicitly duplicated video list is the same as weighting every video's frames (and, for the
mAP, its proposals and ground-truth segments) by its count. Every quantity the metrics need is
linear in ``c``, so each kernel precomputes a few (videos x points) tables once and evaluates
all resamples with matrix products of the ``(resamples, videos)`` count matrix; the products
sum integers, so they are exact whatever the summation order.

* :class:`FrameCurves`: frame AUC, AP and TPR at target FPRs. Snippets are grouped by distinct
  score (highest first); only the groups holding anomalous frames matter: at each of them the
  cumulative anomalous / normal frame counts ``tps``, ``fps`` and the group's own counts give
  AP = sum(d_tps * tps / (tps + fps)) / P, AUC = sum(d_tps * (N - fps + d_fps / 2)) / (P N)
  (the trapezoids of the ROC curve) and TPR@f = tps at the last group with fps / N <= f
  (the normal-only groups in between add no true positive).
* :class:`AlarmRate`: false alarms and frames of the normal videos, per video.
* :class:`WeightedMap`: detection mAP. The greedy matching is per (class, video), so every
  proposal's true-positive flags are fixed; a video drawn ``k`` times puts ``k`` adjacent copies
  of each of its proposals in the ranking (equal scores) and ``k`` copies of its segments in the
  ground-truth count. The official AP sums the precision at each true positive: the ``k``
  copies of a true positive with ``a`` true positives and ``n`` proposals of its class ranked
  before it add ``sum_{j=1..k} (a + j) / (n + j)``.

Undefined values (no anomalous or no normal frame in a resample) are NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .detection_map import MatchedProposals
from .gt import SegmentTable

_BLOCK = 1 << 21  # elements of one (resamples x points) block


def _rows_per_block(width: int) -> int:
    return max(1, _BLOCK // max(1, width))


class FrameCurves:
    """Frame ROC / precision-recall points of snippet scores under video resampling."""

    def __init__(self, scores: np.ndarray, pos: np.ndarray, neg: np.ndarray, video: np.ndarray, n_videos: int):
        """``scores``, ``pos`` (anomalous frames), ``neg`` (normal frames) and ``video`` (index)
        per snippet."""
        s = np.asarray(scores, dtype=np.float64)
        pos, neg, video = np.asarray(pos, np.float64), np.asarray(neg, np.float64), np.asarray(video)
        v = int(n_videos)
        thresholds = np.unique(s[pos > 0])[::-1]  # distinct scores of anomalous frames, highest first
        g = thresholds.size
        # per video: frames at or above each threshold (cumulative) and exactly at it
        self.cum_pos, self.cum_neg = np.zeros((v, g)), np.zeros((v, g))
        self.at_pos, self.at_neg = np.zeros((v, g)), np.zeros((v, g))
        asc = thresholds[::-1]
        order = np.lexsort((s, video))
        s_o, v_o, p_o, n_o = s[order], video[order], pos[order], neg[order]
        bounds = np.searchsorted(v_o, np.arange(v + 1))
        for u in range(v):  # one searchsorted per video
            sl = slice(bounds[u], bounds[u + 1])
            su = s_o[sl]
            if su.size == 0:
                continue
            tail_p = np.concatenate([np.cumsum(p_o[sl][::-1])[::-1], [0.0]])  # frames at index >= i
            tail_n = np.concatenate([np.cumsum(n_o[sl][::-1])[::-1], [0.0]])
            lo = np.searchsorted(su, asc, side="left")[::-1]  # first snippet with score >= threshold
            hi = np.searchsorted(su, asc, side="right")[::-1]  # first snippet with score > threshold
            self.cum_pos[u], self.cum_neg[u] = tail_p[lo], tail_n[lo]
            self.at_pos[u], self.at_neg[u] = tail_p[lo] - tail_p[hi], tail_n[lo] - tail_n[hi]
        self.total_pos = np.bincount(video, weights=pos, minlength=v)
        self.total_neg = np.bincount(video, weights=neg, minlength=v)
        self.n_points = g

    def values(self, counts: np.ndarray, fpr_targets: Sequence[float] = ()) -> dict[str, np.ndarray]:
        """``auc``, ``ap`` and ``tpr@<target>`` (keyed by the target) per row of ``counts``."""
        b = counts.shape[0]
        out = {"auc": np.full(b, np.nan), "ap": np.full(b, np.nan)}
        out.update({f"tpr@{f:g}": np.full(b, np.nan) for f in fpr_targets})
        p_all, n_all = counts @ self.total_pos, counts @ self.total_neg
        step = _rows_per_block(self.n_points)
        for a in range(0, b, step):
            c = np.asarray(counts[a : a + step], dtype=np.float64)
            sl = slice(a, a + c.shape[0])
            p, n = p_all[sl], n_all[sl]
            ok = (p > 0) & (n > 0)
            tps, fps = c @ self.cum_pos, c @ self.cum_neg  # (rows, points)
            dtp, dfp = c @ self.at_pos, c @ self.at_neg
            total = tps + fps
            prec = np.divide(tps, total, out=np.zeros_like(tps), where=total > 0)
            with np.errstate(invalid="ignore", divide="ignore"):
                below = np.sum(dtp * (n[:, None] - fps + dfp / 2.0), axis=1)
                out["auc"][sl] = np.where(ok, below / (p * n), np.nan)
                out["ap"][sl] = np.where(ok, np.sum(dtp * prec, axis=1) / p, np.nan)
                fpr = fps / n[:, None]
                for f in fpr_targets:
                    k = np.count_nonzero(fpr <= f, axis=1)  # fpr rises along the points
                    at = np.where(k > 0, tps[np.arange(c.shape[0]), np.maximum(k - 1, 0)], 0.0)
                    out[f"tpr@{f:g}"][sl] = np.where(ok, at / p, np.nan)
        return out


class AlarmRate:
    """False alarm rate of the normal videos' frames under video resampling."""

    def __init__(self, alarms: np.ndarray, frames: np.ndarray):
        """``alarms`` and ``frames`` per video (0 frames for the videos that do not count)."""
        self.alarms = np.asarray(alarms, np.float64)
        self.frames = np.asarray(frames, np.float64)

    def values(self, counts: np.ndarray) -> np.ndarray:
        total = counts @ self.frames
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, (counts @ self.alarms) / total, np.nan)


class WeightedMap:
    """Detection mAP (in %) of duplicated videos, from the proposals matched once."""

    def __init__(
        self,
        matched: MatchedProposals,
        gt: SegmentTable,
        n_videos: int,
        evaluated: np.ndarray,
        *,
        zero_map_on_empty: bool,
    ):
        v, n_cls = int(n_videos), evaluated.size
        self.evaluated = np.asarray(evaluated, bool)
        self.zero_map = zero_map_on_empty
        self.gt_per_video = np.zeros((v, n_cls))
        np.add.at(self.gt_per_video, (gt.video, gt.label), 1.0)
        self.props_per_video = np.zeros((v, n_cls))
        np.add.at(self.props_per_video, (matched.video, matched.cls), 1.0)
        bounds = np.searchsorted(matched.cls, np.arange(n_cls + 1))
        start = bounds[matched.cls]  # first proposal of each proposal's class
        self.n_cls = n_cls
        self.hits: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        for tp in matched.tp:  # per IoU threshold: the true positives only
            hit = np.flatnonzero(tp > 0)
            before = self._ranked_before(matched.video, np.ones(tp.size), start, hit, v)
            tp_before = self._ranked_before(matched.video, tp, start, hit, v)
            self.hits.append((matched.video[hit], matched.cls[hit], before, tp_before))

    @staticmethod
    def _ranked_before(video: np.ndarray, weight: np.ndarray, start: np.ndarray, hit: np.ndarray, v: int) -> np.ndarray:
        """(videos, hits): per video, the weight of its proposals ranked before each hit within
        the hit's class."""
        out = np.zeros((v, hit.size))
        for j, k in enumerate(hit):
            sl = slice(start[k], k)
            out[:, j] = np.bincount(video[sl], weights=weight[sl], minlength=v)
        return out

    def values(self, counts: np.ndarray) -> np.ndarray:
        """mAP (%) per row of ``counts`` and IoU threshold: (rows, n_iou)."""
        b = counts.shape[0]
        out = np.empty((b, len(self.hits)))
        width = max([1] + [h[0].size for h in self.hits])
        step = _rows_per_block(width)
        for a in range(0, b, step):
            c = np.asarray(counts[a : a + step], dtype=np.float64)
            out[a : a + c.shape[0]] = self._block(c)
        return out

    def _block(self, c: np.ndarray) -> np.ndarray:
        n_gt = c @ self.gt_per_video  # (rows, classes)
        empty = (c @ self.props_per_video == 0) & self.evaluated
        maps = np.empty((c.shape[0], len(self.hits)))
        for i, (vid, cls, before, tp_before) in enumerate(self.hits):
            n_b, t_b, k = c @ before, c @ tp_before, c[:, vid]  # (rows, hits)
            prec_sum = np.zeros_like(k)
            for j in range(1, int(k.max(initial=0)) + 1):  # the j-th copy of each true positive
                prec_sum += np.where(k >= j, (t_b + j) / (n_b + j), 0.0)
            per_cls = np.zeros((c.shape[0], self.n_cls))
            for cc in np.unique(cls):
                per_cls[:, cc] = prec_sum[:, cls == cc].sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                ap = np.where(per_cls > 0, per_cls / n_gt, 0.0)
            mean = 100.0 * np.mean(ap[:, self.evaluated], axis=1)
            if self.zero_map:
                mean = np.where(empty.any(axis=1), 0.0, mean)
            maps[:, i] = mean
        return maps
