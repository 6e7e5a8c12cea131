"""Video-level metrics: what can be measured on videos that have only a video-level label.

The validation split of ``--select best-on-val`` is carved from the training split, whose
videos carry weak labels only (anomalous or normal, and the class), no temporal annotation.
So a model is scored per video: a video's **bag score** is the method's own pooling of its
snippet scores, the mean of its k highest scores as in its MIL loss
(:meth:`~dsan_toolkit.models.api.Method.bag_topk`: ``k = T // 16 + 1`` for DSANet and VadCLIP,
the maximum for ``mil``), and the bag scores are ranked against the videos' labels:

- ``video_auc`` / ``video_ap`` (classifier branch) and ``video_auc_align`` / ``video_ap_align``
  (alignment branch): ROC AUC and average precision of the bag scores, anomalous = positive;
- ``video_class_accuracy`` (methods with a class branch): the share of videos whose class of
  highest bag score (per-class top-k mean of the class probabilities) is one of their labels.

:func:`bag_scores` and :func:`video_metrics` are pure (arrays in, numbers out);
:func:`validation_metrics` applies them to a method's predictions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from .. import keys
from ..errors import InputError
from ..manifest.schema import Manifest
from ..models.api import Method
from ..models.common.losses import masked_topk_mean
from .predictions import PredictionSet

# the selection metric of a preset (frame level, keys.SELECTION_METRICS) -> the branch a
# video-level selection scores and the video-level key it maximises
BRANCHES = {keys.AUC: "scores", keys.AP: "scores", keys.AUC_ALIGN: "align_scores", keys.AP_ALIGN: "align_scores"}


def bag_scores(values: Sequence[np.ndarray], k: Sequence[int]) -> np.ndarray:
    """Mean of the ``k[i]`` largest values of each video: (T_i,) arrays -> (N,), (T_i, C)
    arrays -> (N, C). Every video needs ``1 <= k[i]``; ``k[i] > T_i`` takes all T_i values
    (divided by k, as the masked top-k of the MIL losses)."""
    if len(values) != len(k):
        raise InputError(f"{len(values)} videos but {len(k)} values of k")
    if not len(values):
        return np.zeros(0, np.float64)
    lengths = torch.tensor([len(v) for v in values], dtype=torch.long)
    if int(lengths.min()) < 1:
        raise InputError("a video without snippets has no bag score")
    tail = np.asarray(values[0]).shape[1:]
    padded = np.zeros((len(values), int(lengths.max()), *tail), np.float64)
    for i, v in enumerate(values):
        padded[i, : len(v)] = v
    kk = torch.as_tensor(np.asarray(k), dtype=torch.long)
    return masked_topk_mean(torch.from_numpy(padded), lengths, kk.clamp(min=1)).numpy()


def video_metrics(
    bags: dict[str, np.ndarray],
    anomalous: np.ndarray,
    class_bags: np.ndarray | None = None,
    true_classes: Sequence[Sequence[int]] | None = None,
) -> dict[str, Any]:
    """Video-level AUC and AP of each branch's bag scores (``bags``: ``"scores"`` and/or
    ``"align_scores"`` -> (N,)) against ``anomalous`` (N,) bool, and with ``class_bags`` (N, C)
    the class accuracy against ``true_classes`` (each video's label indices). A metric that is
    undefined (one kind of video only) is ``None``."""
    y = np.asarray(anomalous, bool)
    both = bool(y.any()) and not bool(y.all())
    out: dict[str, Any] = {keys.VIDEOS: int(y.size), keys.ANOMALOUS_VIDEOS: int(y.sum())}
    for branch, (auc_key, ap_key) in (
        ("scores", (keys.VIDEO_AUC, keys.VIDEO_AP)),
        ("align_scores", (keys.VIDEO_AUC_ALIGN, keys.VIDEO_AP_ALIGN)),
    ):
        if branch not in bags:
            continue
        s = np.asarray(bags[branch], np.float64)
        out[auc_key] = float(roc_auc_score(y, s)) if both else None
        out[ap_key] = float(average_precision_score(y, s)) if both else None
    if class_bags is not None and true_classes is not None:
        pred = np.asarray(class_bags).argmax(axis=1)
        correct = [int(p) in set(t) for p, t in zip(pred, true_classes)]
        out[keys.VIDEO_CLASS_ACCURACY] = float(np.mean(correct)) if correct else None
    return out


def validation_metrics(method: Method, manifest: Manifest, preds: PredictionSet) -> dict[str, Any]:
    """:func:`video_metrics` of a method's per-snippet predictions of labelled videos."""
    lengths = np.diff(preds.offsets)
    k = method.bag_topk(torch.from_numpy(lengths.astype(np.int64))).numpy()
    videos = [manifest.video(v) for v in preds.video_ids]
    bags = {b: bag_scores(list(preds.per_video(b).values()), k) for b in ("scores", "align_scores")}
    class_bags = true = None
    if preds.class_probs is not None and method.has_class_branch:
        class_bags = bag_scores(list(preds.per_video("class_probs").values()), k)
        index = manifest.class_index()
        true = [[index[c] for c in v.labels] for v in videos]
    return video_metrics(bags, np.array([manifest.is_anomalous(v) for v in videos]), class_bags, true)


def video_selection_metric(metric: str) -> str:
    """The video-level key a best-on-val run maximises for a preset's ``select_metric``."""
    if metric not in BRANCHES:
        raise InputError(f"unknown selection metric {metric!r}; known: {tuple(BRANCHES)}")
    return keys.video(metric)


def video_selection_value(metrics: dict[str, Any], key: str) -> float:
    v = metrics.get(key)
    return float("-inf") if v is None else float(v)
