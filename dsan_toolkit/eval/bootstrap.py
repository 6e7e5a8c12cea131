"""Uncertainty of test-set metrics: video-level bootstrap, paired comparison, spread over seeds.

The unit resampled is the test *video* (frames of one video are not independent): a resample
draws as many videos as the test set holds, with replacement, from a seeded
``numpy.random.Generator`` (``multinomial`` counts per video). Every metric of the resample is
that of the duplicated video list; :mod:`.resample` computes them for all resamples at once by
weighting, exactly (up to float summation order) as :func:`evaluate_predictions` on the
explicitly duplicated list.

* :func:`bootstrap_metrics`: per scalar metric, the value on the test set and a percentile
  interval (the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the resampled values,
  resamples where the metric is undefined left out).
* :func:`paired_bootstrap`: two sets of predictions on the same videos and the same resamples;
  the interval and two-sided bootstrap p-value of their difference.
* :func:`seed_summary`: mean, std and Student-t interval of a metric over training seeds.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .. import keys
from ..errors import InputError
from ..manifest import Manifest
from .alarm import FAR_THRESHOLD
from .classwise import class_videos
from .detection_map import DetectionMapConfig, detection_problem, match_proposals
from .gt import check_lengths, frame_gt, video_is_anomalous
from .metrics import concat_scores, select_videos
from .resample import AlarmRate, FrameCurves, WeightedMap


@dataclass(frozen=True)
class Interval:
    """A metric on the full test set and its bootstrap percentile interval."""

    value: float
    lo: float
    hi: float


@dataclass(frozen=True)
class PairedDifference:
    """``diff`` = metric(a) - metric(b) on the full set; ``lo``/``hi`` its percentile interval;
    ``p_value`` two-sided (twice the smaller share of resampled differences on either side of
    0, at most 1); ``significant``: the interval excludes 0."""

    metric: str
    diff: float
    lo: float
    hi: float
    p_value: float
    significant: bool


@dataclass(frozen=True)
class SeedSummary:
    n: int
    mean: float
    std: float
    lo: float
    hi: float


# the metrics of one branch that the bootstrap gives (the alignment branch adds the suffix)
BRANCH_METRICS: tuple[str, ...] = (
    keys.AUC,
    keys.AP,
    keys.AUC_ANOMALOUS,
    keys.AP_ANOMALOUS,
    keys.AUC_MACRO,
    keys.FAR,
    *keys.TPR_AT_FPR,
)
MAP_METRICS: tuple[str, ...] = (*keys.MAP_AT, keys.MAP_MEAN)


def resample_counts(n_videos: int, n_resamples: int, seed: int) -> np.ndarray:
    """How often each of ``n_videos`` videos is drawn in each resample: ``(n_resamples, n_videos)``."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_videos, np.full(n_videos, 1.0 / n_videos), size=n_resamples)


def _check_options(n_resamples: int, level: float, seed: int) -> None:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise InputError(f"the number of bootstrap resamples must be a positive integer; got {n_resamples!r}")
    if not isinstance(level, (int, float)) or not 0.0 < float(level) < 1.0:
        raise InputError(f"the interval level must lie in (0, 1), e.g. 0.95; got {level!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"the bootstrap seed must be a non-negative integer; got {seed!r}")


class ResampledMetrics:
    """Raw per-resample values (the tests' and benchmarks' oracle access): the evaluated videos
    and their frame ground truth, shared by every metric group; :meth:`branch` and
    :meth:`detection` give one value per row of a count matrix."""

    def __init__(self, manifest: Manifest, lengths: Mapping[str, int], scores, video_ids, split):
        self.manifest = manifest
        self.videos = select_videos(manifest, scores, split=split, video_ids=video_ids)
        self.snip = manifest.info.snippet_len
        self.t = check_lengths(self.videos, lengths)
        gt = frame_gt(manifest, self.videos, lengths, snippet_len=self.snip)
        self.pos = (gt.reshape(-1, self.snip) > 0).sum(axis=1).astype(np.float64)  # anomalous frames per snippet
        self.neg = self.snip - self.pos
        self.n = len(self.videos)
        self.video = np.repeat(np.arange(self.n), self.t)
        self.anomalous = video_is_anomalous(manifest, self.videos)
        self.classes = class_videos(manifest, self.videos)

    def branch(self, label: str, preds: Mapping[str, np.ndarray], counts: np.ndarray) -> dict[str, np.ndarray]:
        """Every frame metric of one score branch, per row of ``counts``."""
        s = concat_scores(label, preds, self.videos, self.t)
        if not np.all(np.isfinite(s)):
            raise InputError(f"{label} contain NaN or infinite values")
        curves = FrameCurves(s, self.pos, self.neg, self.video, self.n).values(counts, keys.FPR_TARGETS)
        out = {keys.AUC: curves["auc"], keys.AP: curves["ap"]}
        for f, key in zip(keys.FPR_TARGETS, keys.TPR_AT_FPR):
            out[key] = curves[f"tpr@{f:g}"]
        an = self.anomalous[self.video]
        anomalous_only = self._subset_curves(s, self.anomalous, counts)
        out[keys.AUC_ANOMALOUS], out[keys.AP_ANOMALOUS] = anomalous_only["auc"], anomalous_only["ap"]
        # per-class AUC (its videos + every normal video), averaged over the classes defined in each resample
        per_class = [self._subset_curves(s, mask | ~self.anomalous, counts)["auc"] for mask in self.classes.values()]
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a resample without any defined class: NaN
            out[keys.AUC_MACRO] = (
                np.nanmean(np.vstack(per_class), axis=0) if per_class else np.full(len(counts), np.nan)
            )
        alarms = np.bincount(self.video, weights=((s > FAR_THRESHOLD) & ~an).astype(np.float64), minlength=self.n)
        frames = np.where(self.anomalous, 0, self.t).astype(np.float64)
        out[keys.FAR] = AlarmRate(alarms, frames).values(counts)
        return out

    def _subset_curves(self, s: np.ndarray, videos: np.ndarray, counts: np.ndarray) -> dict[str, np.ndarray]:
        """Frame AUC and AP (``auc``, ``ap``) of a subset of the videos (bool mask) per row of ``counts``."""
        idx = np.flatnonzero(videos)
        if idx.size == 0:
            return {"auc": np.full(counts.shape[0], np.nan), "ap": np.full(counts.shape[0], np.nan)}
        remap = np.full(self.n, -1)
        remap[idx] = np.arange(idx.size)
        keep = videos[self.video]
        sub = FrameCurves(s[keep], self.pos[keep], self.neg[keep], remap[self.video[keep]], idx.size)
        return sub.values(counts[:, idx])

    def detection(
        self, class_probs: Mapping[str, np.ndarray], counts: np.ndarray, config: DetectionMapConfig
    ) -> dict[str, np.ndarray]:
        ids = [v.id for v in self.videos]
        wrong = [i for i in ids if i in class_probs and np.shape(class_probs[i])[0] != self.t[ids.index(i)]]
        if wrong:
            raise InputError(f"class probabilities of video {wrong[0]!r} do not have one row per snippet")
        probs, gt, evaluated, _mode = detection_problem(self.manifest, class_probs, video_ids=ids, config=config)
        matched = match_proposals(probs, gt, self.manifest.class_codes, config=config, snippet_len=self.snip)
        wm = WeightedMap(matched, gt, self.n, evaluated, zero_map_on_empty=config.empty_class == "zero-map")
        per_iou = wm.values(counts)
        out = {keys.map_at(t): per_iou[:, i] for i, t in enumerate(config.iou_thresholds)}
        out[keys.MAP_MEAN] = per_iou.mean(axis=1)
        return out


def counts_with_full_set(n_videos: int, n_resamples: int, seed: int) -> np.ndarray:
    """Row 0: the test set itself (every count 1); rows 1..: the resamples (float64)."""
    counts = resample_counts(n_videos, n_resamples, seed).astype(np.float64)
    return np.vstack([np.ones((1, n_videos)), counts])


def _interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    d = draws[np.isfinite(draws)]
    if d.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(d, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(lo), float(hi)


def bootstrap_metrics(
    manifest: Manifest,
    lengths: Mapping[str, int],
    scores: Mapping[str, np.ndarray],
    align_scores: Mapping[str, np.ndarray] | None = None,
    class_probs: Mapping[str, np.ndarray] | None = None,
    *,
    video_ids: Sequence[str] | None = None,
    split: str | None = "test",
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    detection: DetectionMapConfig = DetectionMapConfig(),
) -> dict[str, Interval]:
    """Value and percentile interval of every scalar metric of :func:`evaluate_predictions`
    (frame AUC/AP, AUC on anomalous videos, macro per-class AUC, FAR, TPR@FPR per branch; mAP
    per IoU and its mean with class probabilities) under ``n_resamples`` video resamples drawn with ``seed``.

    Arguments as :func:`evaluate_predictions`. A metric undefined on the test set itself (e.g. FAR
    without a normal video) is left out; resamples where a metric is undefined are left out of its
    interval.
    """
    _check_options(n_resamples, level, seed)
    prob = ResampledMetrics(manifest, lengths, scores, video_ids, split)
    counts = counts_with_full_set(prob.n, int(n_resamples), int(seed))
    draws = prob.branch("classifier scores", scores, counts)
    if align_scores is not None:
        draws.update({keys.align(k): v for k, v in prob.branch("alignment scores", align_scores, counts).items()})
    if class_probs is not None:
        draws.update(prob.detection(class_probs, counts, detection))
    out: dict[str, Interval] = {}
    for key, d in draws.items():
        if np.isfinite(d[0]):
            out[key] = Interval(float(d[0]), *_interval(d[1:], level))
    return out


def paired_bootstrap(
    manifest: Manifest,
    lengths: Mapping[str, int],
    scores_a: Mapping[str, np.ndarray],
    scores_b: Mapping[str, np.ndarray],
    *,
    metric: str = keys.AUC,
    video_ids: Sequence[str] | None = None,
    split: str | None = "test",
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    class_probs_a: Mapping[str, np.ndarray] | None = None,
    class_probs_b: Mapping[str, np.ndarray] | None = None,
    detection: DetectionMapConfig = DetectionMapConfig(),
) -> PairedDifference:
    """Difference ``a - b`` of one metric of two prediction sets on the same videos, with its
    interval and p-value over the same resamples for both. ``metric``: one of
    :data:`BRANCH_METRICS` (on ``scores_a`` / ``scores_b``) or :data:`MAP_METRICS` (on
    ``class_probs_a`` / ``class_probs_b``)."""
    _check_options(n_resamples, level, seed)
    if metric not in BRANCH_METRICS + MAP_METRICS:
        raise InputError(
            f"no paired bootstrap for metric {metric!r}; choose one of {', '.join(BRANCH_METRICS + MAP_METRICS)}"
        )
    prob = ResampledMetrics(manifest, lengths, scores_a, video_ids, split)
    select_videos(manifest, scores_b, split=split, video_ids=video_ids)  # same checks for b
    counts = counts_with_full_set(prob.n, int(n_resamples), int(seed))
    if metric in MAP_METRICS:
        if class_probs_a is None or class_probs_b is None:
            raise InputError(
                f"{metric} needs class probabilities of both prediction sets (class_probs_a, class_probs_b)"
            )
        da = prob.detection(class_probs_a, counts, detection)[metric]
        db = prob.detection(class_probs_b, counts, detection)[metric]
    else:
        da = prob.branch("scores a", scores_a, counts)[metric]
        db = prob.branch("scores b", scores_b, counts)[metric]
    d = da - db
    if not np.isfinite(d[0]):
        raise InputError(f"{metric} is undefined on these videos (one class of ground truth only)")
    rest = d[1:][np.isfinite(d[1:])]
    lo, hi = _interval(rest, level)
    p = min(1.0, 2.0 * min(np.mean(rest <= 0), np.mean(rest >= 0))) if rest.size else float("nan")
    return PairedDifference(metric, float(d[0]), lo, hi, float(p), bool(lo > 0 or hi < 0))


def seed_summary(values: Sequence[float], level: float = 0.95) -> SeedSummary:
    """Mean, sample std (ddof=1) and Student-t interval of the mean of a metric over seeds
    (one value: std and interval NaN)."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise InputError("no values to summarise")
    if not np.all(np.isfinite(v)):
        raise InputError("the values to summarise contain NaN or infinite values")
    if not 0.0 < float(level) < 1.0:
        raise InputError(f"the interval level must lie in (0, 1), e.g. 0.95; got {level!r}")
    mean = float(v.mean())
    if v.size == 1:
        return SeedSummary(1, mean, float("nan"), float("nan"), float("nan"))
    std = float(v.std(ddof=1))
    half = float(stats.t.ppf((1 + level) / 2, v.size - 1)) * std / np.sqrt(v.size)
    return SeedSummary(int(v.size), mean, std, mean - half, mean + half)
