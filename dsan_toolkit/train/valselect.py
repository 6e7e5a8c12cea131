"""``--select best-on-val``: a run's validation split and the evaluations that select on it.

- :func:`resolve_val_split`: which split a run uses: a split file (``--val-split``), else the
  built-in dataset's committed default (10 %, seed 0), else one derived from the manifest with
  ``--val-fraction`` / ``--val-seed`` (:mod:`dsan_toolkit.manifest.valsplit`). The run directory
  keeps the split it used as ``val_split.json``; its config records ``val_split`` = its hash,
  fraction, seed and size.
- :func:`selection_eval`: one in-training evaluation of the selection set: the test split and
  its frame metrics for ``best-on-test`` (the official rule), the validation videos and their
  video-level metrics (:mod:`~dsan_toolkit.train.videometrics`) for ``best-on-val``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .. import keys
from ..errors import InputError
from ..manifest.schema import Manifest
from ..manifest.valsplit import ValSplit, default_val_split, read_val_split
from ..models.api import Method
from ..utils.atomic import atomic_write_text
from .predictions import predict_testset, selection_value
from .setup import BEST_VAL
from .testset import TestSet
from .videometrics import validation_metrics, video_selection_value


def resolve_val_split(
    manifest: Manifest, select: str, val_split: Path | None, fraction: float, seed: int
) -> tuple[ValSplit | None, str | None]:
    """The validation split of a run and where it came from (``file``, ``builtin``,
    ``derived``); ``(None, None)`` unless ``select`` is best-on-val."""
    if select != BEST_VAL:
        if val_split is not None:
            raise InputError(f"--val-split is used only with --select {BEST_VAL} (the run selects {select!r})")
        return None, None
    if val_split is not None:
        return read_val_split(Path(val_split), manifest), "file"
    return default_val_split(manifest, fraction, seed)


def write_run_val_split(out: Path, split: ValSplit) -> Path:
    """The split a run uses, as ``RUN_DIR/val_split.json`` (the same bytes every time)."""
    path = Path(out) / keys.VAL_SPLIT_FILE
    text = split.to_json()
    if not (path.is_file() and path.read_text() == text):
        atomic_write_text(path, text)
    return path


def run_val_split_file(run: Path) -> Path | None:
    """The split file a finished best-on-val run recorded, if any."""
    path = Path(run) / keys.VAL_SPLIT_FILE
    return path if path.is_file() else None


def selection_eval(
    method: Method,
    model: torch.nn.Module,
    manifest: Manifest,
    *,
    select: str,
    metric: str,
    test: TestSet,
    val: TestSet | None,
    length: int,
    device: torch.device,
    batch: int,
) -> tuple[dict[str, Any], float]:
    """The metrics of one in-training evaluation and the value the selection maximises."""
    if select == BEST_VAL:
        if val is None:
            raise InputError("a best-on-val run needs its validation videos")
        preds = predict_testset(method, model, val, length, device, batch=batch)
        metrics = validation_metrics(method, manifest, preds)
        return metrics, video_selection_value(metrics, metric)
    preds = predict_testset(method, model, test, length, device, batch=batch)
    return selection_value(manifest, preds, metric)
