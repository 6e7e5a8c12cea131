"""Frame AUC per anomaly class and their macro mean.

For an anomaly class ``c`` the evaluated frames are those of every test video labelled ``c``
plus those of every normal test video; the AUC is :func:`~dsan_toolkit.eval.frame_auc` on them.
A video counts for *every* anomaly class among its labels (XD-Violence videos may carry up to
three); its frame ground truth is the union of all its segments, whatever their class, so the
per-class AUC measures how well that class's videos are separated from normal frames. A class
with no test video is left out (no key), and the macro mean averages the classes present; the
micro value is the pooled ``auc``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import InputError
from ..manifest import Manifest, VideoRecord
from .alarm import SnippetRoc, snippet_counts


def class_videos(manifest: Manifest, videos: Sequence[VideoRecord]) -> dict[str, np.ndarray]:
    """Anomaly class code -> boolean mask over ``videos`` of the videos labelled with it
    (classes in class-table order; classes without a video left out)."""
    normal = manifest.normal_class
    out: dict[str, np.ndarray] = {}
    for code in manifest.class_codes:
        if code == normal:
            continue
        mask = np.fromiter((code in v.labels for v in videos), dtype=bool, count=len(videos))
        if mask.any():
            out[code] = mask
    return out


def class_frame_auc(
    manifest: Manifest,
    videos: Sequence[VideoRecord],
    num_snippets: np.ndarray,
    scores: np.ndarray,
    gt: np.ndarray,
    *,
    snippet_len: int = 16,
    roc: SnippetRoc | None = None,
) -> dict[str, float | None]:
    """Per anomaly class, the frame AUC of its videos plus all normal videos.

    ``scores`` are the concatenated snippet scores of ``videos`` (``num_snippets[i]`` each) and
    ``gt`` their frame ground truth (as :func:`~dsan_toolkit.eval.frame_gt`); ``roc``: the
    same scores already sorted (one sort serves every class). ``None`` where the AUC is
    undefined (no normal frame, or no anomalous frame, among the class's videos).
    """
    t = np.asarray(num_snippets, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64).ravel()
    if roc is None:
        if not np.all(np.isfinite(s)):
            raise InputError("scores contain NaN or infinite values")
        roc = SnippetRoc(s, *snippet_counts(gt, s.size, snippet_len))
    normal = ~np.fromiter((manifest.is_anomalous(v) for v in videos), dtype=bool, count=len(videos))
    return {code: roc.auc(np.repeat(mask | normal, t)) for code, mask in class_videos(manifest, videos).items()}


def macro_mean(values: dict[str, float | None]) -> float | None:
    """Mean of the defined values (``None`` when none is)."""
    defined = [v for v in values.values() if v is not None]
    return float(np.mean(defined)) if defined else None
