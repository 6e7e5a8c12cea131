"""Frame-level AUC / AP and the full evaluation of a set of per-video predictions.

The official test code repeats every snippet score 16 times and calls scikit-learn's
``roc_auc_score`` / ``average_precision_score`` against the concatenated frame ground truth.
:func:`frame_auc` and :func:`frame_ap` give the same values without materialising the repeated
scores: a snippet becomes at most two weighted samples (its anomalous and its normal frames,
weighted by their counts). Both curves depend only on the cumulative positive/negative counts at
each distinct score, which are the same integers either way, so the values are identical.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from .. import keys
from ..errors import InputError, UndefinedMetric
from ..manifest import Manifest, VideoRecord
from .alarm import SnippetRoc, false_alarm_rate, snippet_counts
from .classwise import class_frame_auc, macro_mean
from .detection_map import DetectionMapConfig, fine_grained_map
from .gt import check_lengths, frame_gt, video_is_anomalous
from .protocols import detection_config_for, protocol_name
from .samples import weighted_samples


def frame_auc(scores: np.ndarray, gt: np.ndarray, *, snippet_len: int = 16) -> float:
    """ROC AUC of snippet ``scores`` repeated ``snippet_len`` times against frame labels ``gt``
    (``len(gt) == len(scores) * snippet_len``; ``snippet_len=1`` for frame-level scores)."""
    y, s, w = weighted_samples(scores, gt, snippet_len)
    return float(roc_auc_score(y, s, sample_weight=w))


def frame_ap(scores: np.ndarray, gt: np.ndarray, *, snippet_len: int = 16) -> float:
    """Average precision (scikit-learn's, as the official code) of snippet ``scores`` repeated
    ``snippet_len`` times against frame labels ``gt``."""
    y, s, w = weighted_samples(scores, gt, snippet_len)
    return float(average_precision_score(y, s, sample_weight=w))


def concat_scores(
    name: str, preds: Mapping[str, np.ndarray], videos: Sequence[VideoRecord], t: np.ndarray
) -> np.ndarray:
    """The per-video score arrays of ``videos`` concatenated (float64), each checked to have T values."""
    missing = [v.id for v in videos if v.id not in preds]
    if missing:
        raise InputError(f"no {name} for {len(missing)} video(s), e.g. {missing[0]!r}")
    arrays = [np.asarray(preds[v.id], dtype=np.float64).reshape(-1) for v in videos]
    sizes = np.fromiter((a.size for a in arrays), dtype=np.int64, count=len(arrays))
    bad = np.flatnonzero(sizes != t)
    if bad.size:
        i = int(bad[0])
        raise InputError(f"{name} of video {videos[i].id!r} has {sizes[i]} values but the video has {t[i]} snippets")
    return np.concatenate(arrays)


def _safe(metric, *args: Any, **kwargs: Any) -> float | None:
    try:
        return metric(*args, **kwargs)
    except UndefinedMetric:
        return None


def select_videos(
    manifest: Manifest,
    scores: Mapping[str, np.ndarray],
    *,
    split: str | None = "test",
    video_ids: Sequence[str] | None = None,
) -> list[VideoRecord]:
    """The evaluated videos: ``video_ids`` or every video of ``split`` (``None``: all), refusing
    an empty selection and scores of videos that are not evaluated."""
    if video_ids is not None:
        videos = [manifest.video(i) for i in video_ids]
    else:
        videos = [v for v in manifest.videos if split is None or v.split == split]
    if not videos:
        raise InputError(f"manifest {manifest.name!r} has no videos in split {split!r} to evaluate")
    known = {v.id for v in videos}
    extra = [k for k in scores if k not in known]
    if extra:
        raise InputError(
            f"scores given for {len(extra)} video(s) that are not evaluated "
            f"(not in split {split!r} of manifest {manifest.name!r}), e.g. {extra[0]!r}"
        )
    return videos


def evaluate_predictions(
    manifest: Manifest,
    lengths: Mapping[str, int],
    scores: Mapping[str, np.ndarray],
    align_scores: Mapping[str, np.ndarray] | None = None,
    class_probs: Mapping[str, np.ndarray] | None = None,
    *,
    split: str | None = "test",
    video_ids: Sequence[str] | None = None,
    detection: DetectionMapConfig = DetectionMapConfig(),
    map_protocol: str | None = None,
) -> dict[str, Any]:
    """Every metric of the official protocol for per-video predictions, as one flat dict.

    ``lengths`` maps video id -> number of snippets T (the store's T); ``scores`` (classifier
    score) and ``align_scores`` map video id -> ``(T,)`` anomaly scores; ``class_probs`` maps
    video id -> ``(T, C)`` class probabilities (columns in the manifest's class order).

    The evaluated videos are ``video_ids`` or, by default, every video of ``split`` in the
    manifest (``split=None``: all videos); each must have predictions. Keys
    (:mod:`dsan_toolkit.keys`): ``videos``, ``anomalous_videos``, ``frames``, ``auc``, ``ap``,
    ``auc_anomalous`` (AUC on anomalous videos only), the same with the ``_align`` suffix for the
    alignment score, and, with class probabilities, ``map@0.1`` ... ``map@0.5``, ``map_mean``,
    ``map_normal_class`` (the resolved normal-class protocol) and ``map_config_hash`` (of the
    ``detection`` config) and ``map_protocol`` (its name: ``official``, ``corrected`` or
    ``custom``). Added metrics per branch: ``far`` (false alarm rate on the normal videos),
    ``tpr@fpr0.01`` / ``tpr@fpr0.05``, ``class_auc`` ({anomaly class: frame AUC of its videos
    plus all normal videos}) and ``auc_macro`` (their mean). ``map_protocol`` (a name of
    :func:`~dsan_toolkit.eval.detection_config_for`) replaces ``detection``. A metric that is
    undefined (one class only) is ``None``.
    """
    if map_protocol is not None:
        named = detection_config_for(map_protocol)
        if detection not in (DetectionMapConfig(), named):
            raise InputError(f"give the mAP protocol by name ({map_protocol!r}) or as a configuration, not both")
        detection = named
    videos = select_videos(manifest, scores, split=split, video_ids=video_ids)
    snip = manifest.info.snippet_len
    t = check_lengths(videos, lengths)
    gt = frame_gt(manifest, videos, lengths, snippet_len=snip)
    anomalous = video_is_anomalous(manifest, videos)
    frame_anom = np.repeat(anomalous, t * snip)
    snip_anom = np.repeat(anomalous, t)
    out: dict[str, Any] = {
        keys.VIDEOS: len(videos),
        keys.ANOMALOUS_VIDEOS: int(anomalous.sum()),
        keys.FRAMES: int(gt.size),
    }
    pos, neg = snippet_counts(gt, int(t.sum()), snip)
    named = [("", "classifier scores", scores)]
    if align_scores is not None:
        named.append((keys.ALIGN_SUFFIX, "alignment scores", align_scores))
    for suffix, label, preds in named:
        s = concat_scores(label, preds, videos, t)
        out[keys.AUC + suffix] = _safe(frame_auc, s, gt, snippet_len=snip)
        out[keys.AP + suffix] = _safe(frame_ap, s, gt, snippet_len=snip)
        out[keys.AUC_ANOMALOUS + suffix] = (
            _safe(frame_auc, s[snip_anom], gt[frame_anom], snippet_len=snip) if anomalous.any() else None
        )
        out[keys.AP_ANOMALOUS + suffix] = (
            _safe(frame_ap, s[snip_anom], gt[frame_anom], snippet_len=snip) if anomalous.any() else None
        )
        out[keys.FAR + suffix] = false_alarm_rate(s[~snip_anom]) if not anomalous.all() else None
        if not np.all(np.isfinite(s)):
            raise InputError(f"{label} contain NaN or infinite values")
        roc = SnippetRoc(s, pos, neg)  # one sort for the operating points and every class
        for fpr, key in zip(keys.FPR_TARGETS, keys.TPR_AT_FPR):
            out[key + suffix] = roc.tpr_at(fpr)
        per_class = class_frame_auc(manifest, videos, t, s, gt, snippet_len=snip, roc=roc)
        out[keys.CLASS_AUC + suffix] = per_class
        out[keys.AUC_MACRO + suffix] = macro_mean(per_class)
    if class_probs is not None:
        ids = [v.id for v in videos]
        probs = {i: class_probs[i] for i in ids if i in class_probs}
        shapes_t = {i: np.shape(p)[0] for i, p in probs.items()}
        wrong = [i for i in ids if i in shapes_t and shapes_t[i] != int(lengths[i])]
        if wrong:
            raise InputError(
                f"class probabilities of video {wrong[0]!r} have {shapes_t[wrong[0]]} rows "
                f"but the video has {lengths[wrong[0]]} snippets"
            )
        out.update(fine_grained_map(manifest, probs, video_ids=ids, config=detection).to_dict())
        out[keys.MAP_PROTOCOL] = protocol_name(detection)
    return out
