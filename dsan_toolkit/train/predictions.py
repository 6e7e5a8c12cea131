"""Test-set predictions and their records.

- :func:`predict_testset`: every test video split into the official 256-snippet chunks,
  all chunks of all videos batched together (``batch`` chunks per forward), the outputs
  stitched back to each video's T rows in one masked selection.
- :func:`write_predictions` / :func:`read_predictions`: the ``predictions.npz`` format of
  ``docs/training.md`` (ragged arrays + offsets, never pickled).
- :func:`evaluate_and_write`: predictions + ``dsan_toolkit.eval.evaluate_predictions`` ->
  ``predictions.npz`` and ``metrics.json`` in one folder (training and ``dsan eval`` alike).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import keys
from ..errors import InputError
from ..manifest.schema import Manifest
from ..models.api import Method
from ..progress import Listener, counted
from .checkpoint import atomic_write_bytes, atomic_write_json
from .testset import TestSet

PREDICTION_KEYS = ("video_ids", "offsets", "scores", "align_scores", "classes")  # always present
CLASS_PROBS = "class_probs"  # present only for a method with a class branch
PREDICTIONS_FILE = "predictions.npz"
EVAL_RECORD_FILE = "metrics.json"


@dataclass
class PredictionSet:
    """Per-snippet predictions of many videos, concatenated along time."""

    video_ids: list[str]
    offsets: np.ndarray  # (N + 1,) int64
    scores: np.ndarray  # (sum T,) float32
    align_scores: np.ndarray  # (sum T,) float32
    class_probs: np.ndarray | None  # (sum T, C) float32; None without a class branch

    def per_video(self, key: str) -> dict[str, np.ndarray]:
        arr = getattr(self, key)
        o = self.offsets
        return {v: arr[o[i] : o[i + 1]] for i, v in enumerate(self.video_ids)}

    def lengths(self) -> dict[str, int]:
        t = np.diff(self.offsets)
        return {v: int(t[i]) for i, v in enumerate(self.video_ids)}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> PredictionSet:
        """The set of a ``predictions.npz``'s arrays (:func:`read_predictions`)."""
        return cls(
            video_ids=[str(v) for v in arrays["video_ids"].tolist()],
            offsets=np.asarray(arrays["offsets"], dtype=np.int64),
            scores=arrays["scores"],
            align_scores=arrays["align_scores"],
            class_probs=arrays.get(CLASS_PROBS),
        )


@torch.no_grad()
def predict_testset(
    method: Method,
    model: torch.nn.Module,
    test: TestSet,
    length: int,
    device: str | torch.device = "cpu",
    *,
    batch: int = 64,
    on_event: Listener | None = None,
) -> PredictionSet:
    """Chunk every test video officially, run the chunks through ``method.predict`` in batches
    of ``batch`` chunks, and stitch the outputs back to every video's T rows."""
    was_training = model.training
    model.eval()
    index, chunk_len, _owner = test.chunks(length)
    sentinel = test.table.shape[0] - 1
    outs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = []
    with counted(on_event, "predict", index.shape[0], unit="chunks of 256 snippets") as advance:
        for a in range(0, index.shape[0], max(1, batch)):
            gi = index[a : a + batch]
            feats = test.table.index_select(0, gi.reshape(-1)).view(gi.shape[0], length, -1).to(device)
            pred = method.predict(model, feats, chunk_len[a : a + batch].to(device)).detach_cpu()
            outs.append((pred.scores, pred.align_scores, pred.class_probs))
            advance(gi.shape[0])
    if was_training:
        model.train()
    valid = (index != sentinel).reshape(-1)
    scores = torch.cat([o[0] for o in outs]).reshape(-1)[valid]
    align = torch.cat([o[1] for o in outs]).reshape(-1)[valid]
    probs = None
    if outs and outs[0][2] is not None:
        cat = torch.cat([o[2] for o in outs])  # type: ignore[misc]
        probs = cat.reshape(-1, cat.shape[-1])[valid].numpy().astype(np.float32)
    return PredictionSet(
        video_ids=list(test.video_ids),
        offsets=test.offsets.numpy().astype(np.int64),
        scores=scores.numpy().astype(np.float32),
        align_scores=align.numpy().astype(np.float32),
        class_probs=probs,
    )


DEFAULT_BOOTSTRAP = 1000  # video resamples behind the intervals of an evaluation record
DEFAULT_BOOTSTRAP_SEED = 0
CI_LEVEL = 0.95


def compute_metrics(
    manifest: Manifest, preds: PredictionSet, *, with_map: bool = True, map_protocol: str = "official"
) -> dict[str, Any]:
    from ..eval import evaluate_predictions

    return evaluate_predictions(
        manifest,
        preds.lengths(),
        preds.per_video("scores"),
        preds.per_video("align_scores"),
        preds.per_video(CLASS_PROBS) if with_map and preds.class_probs is not None else None,
        video_ids=preds.video_ids,
        map_protocol=map_protocol,
    )


def compute_intervals(
    manifest: Manifest,
    preds: PredictionSet,
    *,
    n_resamples: int = DEFAULT_BOOTSTRAP,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
    level: float = CI_LEVEL,
    map_protocol: str = "official",
) -> dict[str, Any]:
    """The ``ci`` block of an evaluation record: video-level bootstrap percentile intervals
    (``dsan_toolkit.eval.bootstrap_metrics``) of every scalar metric, ``[lo, hi]`` each."""
    from ..eval import bootstrap_metrics, detection_config_for

    res = bootstrap_metrics(
        manifest,
        preds.lengths(),
        preds.per_video("scores"),
        preds.per_video("align_scores"),
        preds.per_video(CLASS_PROBS) if preds.class_probs is not None else None,
        video_ids=preds.video_ids,
        n_resamples=n_resamples,
        seed=seed,
        level=level,
        detection=detection_config_for(map_protocol),
    )
    intervals = {k: [iv.lo, iv.hi] for k, iv in res.items() if np.isfinite(iv.lo) and np.isfinite(iv.hi)}
    return {
        keys.CI_RESAMPLES: int(n_resamples),
        keys.CI_SEED: int(seed),
        keys.CI_LEVEL: level,
        keys.CI_INTERVALS: intervals,
    }


SELECTION_METRICS = keys.SELECTION_METRICS


def selection_value(manifest: Manifest, preds: PredictionSet, metric: str) -> tuple[dict[str, Any], float]:
    """The frame-level metrics (no mAP: cheap) and the value the selection rule maximises."""
    if metric not in SELECTION_METRICS:
        raise InputError(f"unknown selection metric {metric!r}; known: {SELECTION_METRICS}")
    m = compute_metrics(manifest, preds, with_map=False)
    v = m.get(metric)
    return m, float("-inf") if v is None else float(v)


# ---------------------------------------------------------------------------------------
# predictions.npz


def write_predictions(path: Path, preds: PredictionSet, classes: Sequence[str]) -> str:
    """Write ``predictions.npz`` atomically; returns the sha256 of the bytes written (recorded
    by the caller, so that an audit can tell a changed file)."""
    buf = io.BytesIO()
    arrays = dict(
        video_ids=np.array(preds.video_ids, dtype=np.str_),
        offsets=preds.offsets.astype(np.int64),
        scores=preds.scores.astype(np.float32),
        align_scores=preds.align_scores.astype(np.float32),
        classes=np.array(list(classes), dtype=np.str_),
    )
    if preds.class_probs is not None:
        arrays[CLASS_PROBS] = preds.class_probs.astype(np.float32)
    np.savez(buf, **arrays)
    data = buf.getvalue()
    atomic_write_bytes(Path(path), data)
    return hashlib.sha256(data).hexdigest()


def read_predictions(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a ``predictions.npz`` (``allow_pickle=False``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"predictions not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    except (ValueError, OSError) as exc:
        raise InputError(f"{path} is not a predictions file: {exc}") from None
    missing = [k for k in PREDICTION_KEYS if k not in out]
    if missing:
        raise InputError(f"{path} lacks arrays {missing}")
    return out


def load_prediction_set(path: Path) -> PredictionSet:
    """A ``predictions.npz`` as a :class:`PredictionSet`."""
    return PredictionSet.from_arrays(read_predictions(path))


def evaluate_and_write(
    method: Method,
    model: torch.nn.Module,
    manifest: Manifest,
    test: TestSet,
    out_dir: Path,
    *,
    length: int,
    device: str | torch.device,
    batch: int = 64,
    label: str,
    selection: str | None,
    config_hash: str | None,
    store_hash: str | None,
    manifest_hash: str | None,
    checkpoint: dict[str, Any] | None,
    extra: dict[str, Any] | None = None,
    on_event: Listener | None = None,
    map_protocol: str = "official",
    bootstrap: int = DEFAULT_BOOTSTRAP,
    bootstrap_seed: int = DEFAULT_BOOTSTRAP_SEED,
) -> dict[str, Any]:
    """Predict, compute every metric, write ``predictions.npz`` and ``metrics.json``; the
    record carries the sha256 of the predictions file (``predictions_sha256``) and, unless
    ``bootstrap`` is 0, the ``ci`` block of :func:`compute_intervals` (``bootstrap`` video
    resamples drawn with ``bootstrap_seed``). ``map_protocol`` names the detection-mAP protocol."""
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or bootstrap < 0:
        raise InputError(f"the number of bootstrap resamples must be 0 (off) or a positive integer; got {bootstrap!r}")
    from ..eval import detection_config_for

    detection_config_for(map_protocol)  # an unknown name fails before any work
    preds = predict_testset(method, model, test, length, device, batch=batch, on_event=on_event)
    metrics = compute_metrics(manifest, preds, map_protocol=map_protocol)
    ci = (
        compute_intervals(manifest, preds, n_resamples=bootstrap, seed=bootstrap_seed, map_protocol=map_protocol)
        if bootstrap
        else None
    )
    out_dir = Path(out_dir)
    predictions_sha = write_predictions(out_dir / PREDICTIONS_FILE, preds, manifest.class_codes)
    rec = {
        "label": label,
        "selection": selection,
        "method": method.name,
        "dataset": manifest.name,
        "config_hash": config_hash,
        "store_hash": store_hash,
        "manifest_hash": manifest_hash,
        "checkpoint": checkpoint,
        "test_crop": test.crop,
        keys.PREDICTIONS_SHA256: predictions_sha,
        "metrics": metrics,
        **({keys.CI: ci} if ci is not None else {}),
        **(extra or {}),
    }
    atomic_write_json(out_dir / EVAL_RECORD_FILE, rec)
    return rec
