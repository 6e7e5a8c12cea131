"""Fine-grained detection mAP, identical in value to the official ``getDetectionMAP``.

The official VadCLIP/DSANet code (``src/utils/{ucf,xd}_detectionMAP.py``) works on frame-level
class probabilities (snippet probabilities repeated 16 times) and, per IoU threshold:

1. class score of a video = mean of the top ``frames / 16`` frame values of each class column;
   columns whose class score is ``<= 0`` are zeroed;
2. per video and class: one threshold at ``max - (max - min) * 0.6``; every run of frames above
   it that is at least 2 frames long is a proposal, scored ``max over the run + 0.7 * class score``;
3. per-video NMS at IoU 0.6 (a no-op: the runs of one threshold are disjoint);
4. per class, proposals of all videos in descending score order are matched greedily to the
   unmatched ground truth of the same video with the best IoU ``>= th`` (IoU over integer frame
   sets; ties go to the earlier ground truth);
5. AP = sum of the precisions at true positives / number of ground truths (0 without a true
   positive), mAP = 100 * mean over classes; if any class has no proposal at all the mAP is 0.

This module computes the same numbers with numpy on flat arrays: proposals come from run
boundaries of a thresholded matrix, the greedy matching runs over all videos, classes and IoU
thresholds at once (its sequential steps are the ranks of competing proposals inside one video,
a handful), and every floating-point reduction is done in the same order and precision as the
official code, so values are bit-identical, not just close.

Two behaviours of the official code are options (:class:`DetectionMapConfig`), defaulting to the
official behaviour so published numbers are reproduced:

* ``normal_class``: the official UCF ground truth labels normal videos with a code (``"A"``) that
  is not in the UCF class list, so the Normal class never has ground truth, scores AP 0 and still
  counts in the mean over 14 classes. XD's normal code *is* in its list, so there every normal
  test video is one Normal ground-truth segment over its whole length. ``"official"`` picks the
  dataset's official behaviour (UCF ``"no-gt"``, XD and any other dataset ``"whole-video"``);
  ``"whole-video"`` is the honest variant for UCF, ``"exclude"`` averages the anomaly classes only.
* ``empty_class``: ``"zero-map"`` (official) makes the mAP 0 when a class has no proposal;
  ``"zero-ap"`` scores just that class 0.

``float_semantics`` chooses the numpy scalar-promotion rules the official code ran under:
``"numpy1"`` (the authors' environment pins numpy 1.26: proposal scores in float64, the threshold
compared in the input's precision) or ``"numpy2"`` (NEP 50: scores in float32, the threshold
compared in float64). They differ only when a value is within one float32 ulp of a threshold or
two proposal scores are that close.

Tie order: the official code sorts proposals with numpy's default (unstable) sort; with exactly
equal scores its order is unspecified. Here ties keep video order, then time order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .. import keys
from ..config import config_hash, register_config
from ..errors import InputError
from ..manifest import Manifest
from .gt import SegmentTable, check_lengths, segment_table, video_is_anomalous

NORMAL_CLASS_MODES: tuple[str, ...] = ("official", "no-gt", "whole-video", "exclude")
EMPTY_CLASS_MODES: tuple[str, ...] = ("zero-map", "zero-ap")
FLOAT_SEMANTICS: tuple[str, ...] = ("numpy1", "numpy2")

# What the official ground-truth scripts do with the normal class, per built-in dataset
# (list/make_gt_mAP_{ucf,xd}.py). Other datasets get the consistent "whole-video" protocol.
OFFICIAL_NORMAL_CLASS: dict[str, str] = {"ucf": "no-gt", "xd": "whole-video"}

_PAD_BUDGET = 1 << 22  # elements per padded block when summing top frames


@register_config
@dataclass(frozen=True)
class DetectionMapConfig:
    """Settings of the fine-grained detection mAP (defaults = the official protocol)."""

    iou_thresholds: tuple[float, ...] = keys.IOU_THRESHOLDS
    threshold_ratio: float = 0.6
    class_score_weight: float = 0.7
    min_proposal_frames: int = 2
    normal_class: str = "official"
    empty_class: str = "zero-map"
    float_semantics: str = "numpy1"

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("normal_class", self.normal_class, NORMAL_CLASS_MODES),
            ("empty_class", self.empty_class, EMPTY_CLASS_MODES),
            ("float_semantics", self.float_semantics, FLOAT_SEMANTICS),
        ):
            if value not in allowed:
                raise InputError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
        if not self.iou_thresholds or any(not 0.0 < t <= 1.0 for t in self.iou_thresholds):
            raise InputError(f"IoU thresholds must lie in (0, 1]; got {self.iou_thresholds}")


@dataclass(frozen=True)
class DetectionMapResult:
    """mAP (in %) per IoU threshold, their mean, and the AP (in %) of every class."""

    iou_thresholds: tuple[float, ...]
    map: tuple[float, ...]
    mean: float
    class_ap: np.ndarray  # (n_iou, n_classes), NaN for classes left out of the mean
    class_codes: tuple[str, ...]
    normal_class: str  # the resolved mode
    classes_without_proposals: tuple[str, ...]

    config_hash: str = ""

    def to_dict(self) -> dict[str, float | str]:
        out: dict[str, float | str] = {keys.map_at(t): m for t, m in zip(self.iou_thresholds, self.map)}
        out[keys.MAP_MEAN] = self.mean
        out[keys.MAP_NORMAL_CLASS] = self.normal_class
        out[keys.MAP_CONFIG_HASH] = self.config_hash
        return out


def resolve_normal_class(mode: str, dataset: str) -> str:
    """The concrete normal-class mode: ``"official"`` becomes the dataset's official one."""
    if mode == "official":
        return OFFICIAL_NORMAL_CLASS.get(dataset, "whole-video")
    return mode


def installed_float_semantics() -> str:
    """The promotion rules of the numpy running now (to compare with the official code run here)."""
    return "numpy2" if int(np.__version__.split(".")[0]) >= 2 else "numpy1"


# ---------------------------------------------------------------------------------------------
# Core: arrays in, numbers out.
# ---------------------------------------------------------------------------------------------


def _stack_probs(probs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    if len(probs) == 0:
        raise InputError("no predictions to evaluate")
    arrays = [np.asarray(p) for p in probs]
    dtype = np.result_type(*arrays)
    if dtype not in (np.float32, np.float64):
        dtype = np.dtype(np.float64)
    if any(a.ndim != 2 for a in arrays):
        raise InputError("class probabilities must be 2-D arrays (snippets x classes)")
    widths = {a.shape[1] for a in arrays}
    if len(widths) != 1:
        raise InputError(f"class probabilities have different numbers of classes: {sorted(widths)}")
    lengths = np.fromiter((a.shape[0] for a in arrays), dtype=np.int64, count=len(arrays))
    if np.any(lengths < 1):
        raise InputError("every video needs at least one snippet of class probabilities")
    x = np.concatenate(arrays, axis=0).astype(dtype, copy=False)
    if not np.all(np.isfinite(x)):
        raise InputError("class probabilities contain NaN or infinite values")
    return x, lengths


def _length_blocks(lengths: np.ndarray, width: int) -> list[np.ndarray]:
    """Video indices grouped by similar length, each group's padded size within a budget."""
    order = np.argsort(lengths, kind="stable")
    sizes = lengths[order] * width
    blocks: list[np.ndarray] = []
    start = 0
    while start < order.size:
        # largest stop such that (stop - start) * the longest length in the block fits
        count = np.arange(1, order.size - start + 1)
        fits = count * sizes[start:] <= _PAD_BUDGET
        stop = start + max(1, int(np.count_nonzero(fits)))
        blocks.append(order[start:stop])
        start = stop
    return blocks


def class_scores(x: np.ndarray, lengths: np.ndarray, snippet_len: int = 16) -> np.ndarray:
    """Per video and class: the mean of the top ``T`` frame-level values (``T`` = snippets; the
    official ``int(frames / 16)``), accumulated frame by frame in the input precision like numpy's
    ``mean(axis=0)`` on the official (frames x classes) array. Returns (videos, classes)."""
    v, c = lengths.size, x.shape[1]
    offsets = np.concatenate(([0], np.cumsum(lengths)))
    out = np.empty((v, c), dtype=x.dtype)
    for block in _length_blocks(lengths, c):  # a few blocks of similar length: little padding
        t = lengths[block]
        k = int(t.max())
        j = np.arange(k)
        rows = offsets[block][:, None] + np.minimum(j[None, :], t[:, None] - 1)
        neg = -x[rows].transpose(0, 2, 1)  # (videos, classes, snippets)
        neg[np.broadcast_to((j[None, :] >= t[:, None])[:, None, :], neg.shape)] = np.inf
        q = -(-k // snippet_len)  # snippets that hold the top T frames, at most
        if q < k:
            neg = np.partition(neg, q - 1, axis=-1)[:, :, :q]
        top = -np.sort(neg, axis=-1)[:, :, j // snippet_len]  # frame j of the sorted frames
        total = np.cumsum(top, axis=-1)[np.arange(block.size), :, t - 1]  # sequential sum of T frames
        out[block] = total / t[:, None].astype(x.dtype)
    return out


@dataclass(frozen=True)
class Proposals:
    """Proposals of all videos and classes: class, video, frame interval, score (float64)."""

    cls: np.ndarray
    video: np.ndarray
    start: np.ndarray
    end: np.ndarray
    score: np.ndarray


def make_proposals(x: np.ndarray, lengths: np.ndarray, cfg: DetectionMapConfig, snippet_len: int = 16) -> Proposals:
    """Threshold each (video, class) column and turn runs above it into scored proposals."""
    n, c = x.shape
    v = lengths.size
    offsets = np.concatenate(([0], np.cumsum(lengths)))
    vid = np.repeat(np.arange(v), lengths)
    cs = class_scores(x, lengths, snippet_len)
    xm = x * (cs > 0.0)[vid]
    mx = np.maximum.reduceat(xm, offsets[:-1], axis=0)
    mn = np.minimum.reduceat(xm, offsets[:-1], axis=0)
    thr = mx.astype(np.float64) - (mx - mn).astype(np.float64) * cfg.threshold_ratio
    if cfg.float_semantics == "numpy1":
        above = xm > thr.astype(x.dtype)[vid]  # legacy: the float64 scalar is cast to the array's type
    else:
        above = xm.astype(np.float64) > thr[vid]
    first = np.zeros(n, dtype=bool)
    first[offsets[:-1]] = True
    last = np.zeros(n, dtype=bool)
    last[offsets[1:] - 1] = True
    prev = np.vstack([np.zeros((1, c), bool), above[:-1]]) & ~first[:, None]
    nxt = np.vstack([above[1:], np.zeros((1, c), bool)]) & ~last[:, None]
    cls_s, row_s = np.nonzero((above & ~prev).T)  # class-major, then video and time order
    cls_e, row_e = np.nonzero((above & ~nxt).T)
    row_e = row_e + 1
    video = vid[row_s]
    local_s = row_s - offsets[video]
    local_e = row_e - offsets[video]
    keep = (local_e - local_s) * snippet_len >= cfg.min_proposal_frames
    cls_s, row_s, row_e, video, local_s, local_e = (a[keep] for a in (cls_s, row_s, row_e, video, local_s, local_e))
    # max of each run: reduceat over the class-major flattened matrix, with a sentinel at the end
    flat = np.concatenate([xm.T.ravel(), np.zeros(1, x.dtype)])
    bounds = np.stack([cls_s * n + row_s, cls_s * n + row_e], axis=1).ravel()
    run_max = np.maximum.reduceat(flat, bounds)[::2] if bounds.size else np.zeros(0, x.dtype)
    cls_score = cs[video, cls_s]
    if cfg.float_semantics == "numpy1":
        score = run_max.astype(np.float64) + cfg.class_score_weight * cls_score.astype(np.float64)
    else:
        w = x.dtype.type(cfg.class_score_weight)
        score = (run_max + w * cls_score).astype(np.float64)
    return Proposals(
        cls=cls_s,
        video=video,
        start=local_s * snippet_len,
        end=local_e * snippet_len,
        score=score,
    )


def _greedy_match(
    prop_key: np.ndarray,
    prop_start: np.ndarray,
    prop_end: np.ndarray,
    gt_key: np.ndarray,
    gt_start: np.ndarray,
    gt_end: np.ndarray,
    thresholds: np.ndarray,
) -> np.ndarray:
    """True positives (n_iou, n_props) of the official greedy matching.

    Proposals must be in matching order (descending score); ``*_key`` identifies the
    (class, video) group a proposal or ground truth belongs to; ground truths of one group are
    given in their official order (earlier wins ties of IoU).
    """
    n_p, n_iou = prop_key.size, thresholds.size
    tp = np.zeros((n_iou, n_p), dtype=np.float64)
    if n_p == 0 or gt_key.size == 0:
        return tp
    g_order = np.argsort(gt_key, kind="stable")
    gk = gt_key[g_order]
    lo = np.searchsorted(gk, prop_key, side="left")
    hi = np.searchsorted(gk, prop_key, side="right")
    cnt = hi - lo
    p_idx = np.repeat(np.arange(n_p), cnt)
    within = np.arange(p_idx.size) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    g_idx = g_order[np.repeat(lo, cnt) + within]
    ps, pe, gs, ge = prop_start[p_idx], prop_end[p_idx], gt_start[g_idx], gt_end[g_idx]
    inter = np.maximum(0, np.minimum(pe, ge) - np.maximum(ps, gs))
    union = (pe - ps) + np.maximum(0, ge - gs) - inter
    iou = inter / union
    # every (threshold, pair) with IoU >= threshold is a candidate
    t_idx, pair = np.nonzero(iou[None, :] >= thresholds[:, None])
    if pair.size == 0:
        return tp
    cp, cg, ciou = p_idx[pair], g_idx[pair], iou[pair]
    # rank of each candidate proposal among the candidate proposals of its group (same threshold)
    grp = t_idx * (int(prop_key.max()) + 1) + prop_key[cp]
    order = np.lexsort((cg, -ciou, cp, grp))
    t_idx, cp, cg, ciou, grp = t_idx[order], cp[order], cg[order], ciou[order], grp[order]
    new_prop = np.ones(cp.size, dtype=bool)
    new_prop[1:] = (cp[1:] != cp[:-1]) | (grp[1:] != grp[:-1])
    new_grp = np.ones(cp.size, dtype=bool)
    new_grp[1:] = grp[1:] != grp[:-1]
    prop_count = np.cumsum(new_prop)
    rank = prop_count - np.maximum.accumulate(np.where(new_grp, prop_count, 0))
    step_order = np.argsort(rank, kind="stable")
    t_idx, cp, cg, rank = t_idx[step_order], cp[step_order], cg[step_order], rank[step_order]
    edges = np.flatnonzero(np.diff(rank)) + 1
    used = np.zeros((n_iou, gt_key.size), dtype=bool)
    for sl in np.split(np.arange(rank.size), edges):  # one step per competing-proposal rank
        t, p, g = t_idx[sl], cp[sl], cg[sl]
        free = ~used[t, g]
        t, p, g = t[free], p[free], g[free]
        if p.size == 0:
            continue
        # candidates are in preference order per proposal: keep the first free one
        head = np.ones(p.size, dtype=bool)
        head[1:] = (p[1:] != p[:-1]) | (t[1:] != t[:-1])
        used[t[head], g[head]] = True
        tp[t[head], p[head]] = 1.0
    return tp


def _average_precision(tp: np.ndarray, n_gt: int) -> float:
    """Official AP: sum of precisions at true positives / number of ground truths."""
    if tp.sum() == 0:
        return 0.0
    tp_c = np.cumsum(tp)
    fp_c = np.cumsum(1.0 - tp)
    return float(np.sum((tp_c / (fp_c + tp_c)) * tp) / n_gt)


@dataclass(frozen=True)
class MatchedProposals:
    """The proposals of all videos in matching order (class, then descending score) and their
    true-positive flags per IoU threshold (``tp``: n_iou x n_proposals, 0/1)."""

    cls: np.ndarray
    video: np.ndarray
    score: np.ndarray
    tp: np.ndarray
    thresholds: np.ndarray


def match_proposals(
    probs: Sequence[np.ndarray],
    gt: SegmentTable,
    class_codes: Sequence[str],
    *,
    config: DetectionMapConfig = DetectionMapConfig(),
    snippet_len: int = 16,
) -> MatchedProposals:
    """Proposals of every (video, class) and the official greedy matching against ``gt``.

    The matching is per (class, video), so a proposal's flags depend on its own video only.
    """
    x, lengths = _stack_probs(probs)
    n_cls = x.shape[1]
    if n_cls != len(class_codes):
        raise InputError(f"class probabilities have {n_cls} columns but the class table has {len(class_codes)} classes")
    if n_cls < 2:
        raise InputError("detection mAP needs at least two classes")
    if len(gt) and (gt.video.max() >= lengths.size or gt.label.max() >= n_cls):
        raise InputError("ground truth refers to a video or class that has no predictions")
    thresholds = np.asarray(config.iou_thresholds, dtype=np.float64)
    props = make_proposals(x, lengths, config, snippet_len)
    v = lengths.size
    # matching order: class, then descending score, ties in video/time order (stable)
    order = np.lexsort((-props.score, props.cls))
    p_cls, p_vid = props.cls[order], props.video[order]
    tp = _greedy_match(
        p_cls * v + p_vid,
        props.start[order],
        props.end[order],
        gt.label * v + gt.video,
        gt.start,
        gt.end,
        thresholds,
    )
    return MatchedProposals(cls=p_cls, video=p_vid, score=props.score[order], tp=tp, thresholds=thresholds)


def fine_grained_map_arrays(
    probs: Sequence[np.ndarray],
    gt: SegmentTable,
    class_codes: Sequence[str],
    *,
    evaluated: np.ndarray | None = None,
    config: DetectionMapConfig = DetectionMapConfig(),
    snippet_len: int = 16,
    normal_mode: str = "whole-video",
) -> DetectionMapResult:
    """Detection mAP from per-video snippet class probabilities (``(T_i, C)`` each; the official
    frame-level input is these repeated ``snippet_len`` times) and a complete ground-truth table.

    ``evaluated`` (bool per class, default all) selects the classes averaged into the mAP.
    """
    matched = match_proposals(probs, gt, class_codes, config=config, snippet_len=snippet_len)
    n_cls, thresholds, tp, p_cls = len(class_codes), matched.thresholds, matched.tp, matched.cls
    evaluated = np.ones(n_cls, bool) if evaluated is None else np.asarray(evaluated, bool)
    class_bounds = np.searchsorted(p_cls, np.arange(n_cls + 1))
    n_gt = np.bincount(gt.label, minlength=n_cls)
    has_props = np.diff(class_bounds) > 0
    ap = np.full((thresholds.size, n_cls), np.nan)
    for c in np.flatnonzero(evaluated):
        sl = slice(class_bounds[c], class_bounds[c + 1])
        for i in range(thresholds.size):
            ap[i, c] = _average_precision(tp[i, sl], int(n_gt[c]))
    empty = evaluated & ~has_props
    maps: list[float] = []
    for i in range(thresholds.size):
        if empty.any() and config.empty_class == "zero-map":
            maps.append(0.0)
        else:
            maps.append(float(100 * np.mean(ap[i, evaluated])))
    total = 0.0
    for m in maps:  # the official scripts add the values one by one
        total += m
    return DetectionMapResult(
        iou_thresholds=tuple(float(t) for t in thresholds),
        map=tuple(maps),
        mean=total / len(maps),
        class_ap=100 * ap,
        class_codes=tuple(class_codes),
        normal_class=normal_mode,
        classes_without_proposals=tuple(class_codes[c] for c in np.flatnonzero(empty)),
        config_hash=config_hash(config),
    )


def detection_ground_truth(
    manifest: Manifest, videos: Sequence, lengths: np.ndarray, mode: str, snippet_len: int = 16
) -> SegmentTable:
    """Ground truth for the mAP: the anomaly segments, plus one whole-video Normal segment per
    normal video in ``"whole-video"`` mode (in the official per-video order)."""
    seg = segment_table(manifest, videos)
    if mode != "whole-video":
        return seg
    normal_idx = manifest.class_index()[manifest.normal_class]
    normal_vids = np.flatnonzero(~video_is_anomalous(manifest, videos))
    video = np.concatenate([seg.video, normal_vids])
    order = np.argsort(video, kind="stable")
    return SegmentTable(
        video=video[order],
        start=np.concatenate([seg.start, np.zeros(normal_vids.size, np.int64)])[order],
        end=np.concatenate([seg.end, lengths[normal_vids] * snippet_len])[order],
        label=np.concatenate([seg.label, np.full(normal_vids.size, normal_idx, np.int64)])[order],
    )


def fine_grained_map(
    manifest: Manifest,
    class_probs: Mapping[str, np.ndarray],
    *,
    video_ids: Sequence[str] | None = None,
    config: DetectionMapConfig = DetectionMapConfig(),
) -> DetectionMapResult:
    """Detection mAP of per-video snippet class probabilities ``(T, C)`` (columns in the order
    of the manifest's class table) against the manifest's segments.

    ``video_ids`` (default: the keys of ``class_probs``, in manifest order) are the videos
    evaluated; each video's T is the length of its probability array.
    """
    probs, gt, evaluated, mode = detection_problem(manifest, class_probs, video_ids=video_ids, config=config)
    return fine_grained_map_arrays(
        probs,
        gt,
        manifest.class_codes,
        evaluated=evaluated,
        config=config,
        snippet_len=manifest.info.snippet_len,
        normal_mode=mode,
    )


def detection_problem(
    manifest: Manifest,
    class_probs: Mapping[str, np.ndarray],
    *,
    video_ids: Sequence[str] | None = None,
    config: DetectionMapConfig = DetectionMapConfig(),
) -> tuple[list[np.ndarray], SegmentTable, np.ndarray, str]:
    """What :func:`fine_grained_map` evaluates: the probability arrays of the videos (in
    order), their ground-truth table, the classes averaged (bool) and the resolved
    normal-class mode."""
    ids = list(video_ids) if video_ids is not None else [v.id for v in manifest.videos if v.id in class_probs]
    unknown = [i for i in (video_ids if video_ids is not None else class_probs) if i not in manifest]
    if unknown:
        raise InputError(f"{len(unknown)} video(s) are not in manifest {manifest.name!r}, e.g. {unknown[0]!r}")
    missing = [i for i in ids if i not in class_probs]
    if missing:
        raise InputError(f"no class probabilities for {len(missing)} video(s), e.g. {missing[0]!r}")
    videos = [manifest.video(i) for i in ids]
    probs = [np.asarray(class_probs[i]) for i in ids]
    lengths = check_lengths(videos, {i: np.shape(p)[0] for i, p in zip(ids, probs)})
    mode = resolve_normal_class(config.normal_class, manifest.name)
    gt = detection_ground_truth(manifest, videos, lengths, mode, manifest.info.snippet_len)
    evaluated = np.ones(len(manifest.class_codes), bool)
    if mode == "exclude":
        evaluated[manifest.class_index()[manifest.normal_class]] = False
    return probs, gt, evaluated, mode
