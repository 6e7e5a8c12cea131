"""Optional, NON-official input normalisation of snippet features (a preset field ``input_norm``).

The official DSANet / VadCLIP / MIL code feeds the CLIP features as they are; every ``ucf`` / ``xd``
preset keeps ``input_norm="none"``. Features of a randomly initialised backbone (the ``dsan demo``
one) are dominated by one direction shared by every image (mean pairwise cosine ~0.96), which
drowns the part that differs between frames; the ``tiny`` presets therefore standardise them.

Modes (registry :data:`INPUT_NORMS`):

- ``none``: features unchanged (official);
- ``center``: ``x - mean``;
- ``standardize``: ``(x - mean) / std`` per feature dimension, times one global factor
  ``mean_row_norm / sqrt(D)`` so that rows keep the average norm of the raw features (every
  dimension gets the same weight, the scale the learning rates were chosen for stays).

``mean`` / ``std`` (the divisor, scale included) are statistics of the *training* split (every valid snippet of every training
crop, raw rows before resampling), fitted once when training starts
(:func:`fit_input_norm`, called by the training loop) and kept as model buffers
(``input_norm_mean`` / ``input_norm_std``), so checkpoints carry them and evaluation, ``dsan eval``
and ``dsan score`` apply exactly the training transform. The transform runs in a forward
pre-hook attached by the method's ``build`` (:func:`attach_input_norm`), so every call of the
model -- loss, prediction, DDP -- sees normalised features. Padding rows (beyond ``lengths`` when
the model is called with lengths) stay zero, as the official zero padding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import InputError
from ..store.protocol import FeatureStoreLike

MEAN_BUFFER = "input_norm_mean"
STD_BUFFER = "input_norm_std"
STD_FLOOR = 1e-6

# mode -> (uses the mean, uses the std)
INPUT_NORMS: dict[str, tuple[bool, bool]] = {
    "none": (False, False),
    "center": (True, False),
    "standardize": (True, True),
}


BUFFER_KEYS: tuple[str, str] = (MEAN_BUFFER, STD_BUFFER)


def is_identity(model: nn.Module) -> bool:
    """True when the model has no input normalisation or an unfitted one (mean 0, std 1)."""
    if not hasattr(model, MEAN_BUFFER):
        return True
    return bool((getattr(model, MEAN_BUFFER) == 0).all() and (getattr(model, STD_BUFFER) == 1).all())


def list_input_norms() -> list[str]:
    return list(INPUT_NORMS)


def check_input_norm(mode: str) -> None:
    if mode not in INPUT_NORMS:
        raise InputError(f"unknown input_norm {mode!r}; choose one of {', '.join(INPUT_NORMS)}")


def has_input_norm(model: nn.Module) -> bool:
    return hasattr(model, MEAN_BUFFER) and getattr(model, "_input_norm_mode", "none") != "none"


def normalize_features(feats: Tensor, mean: Tensor, std: Tensor, lengths: Tensor | None = None) -> Tensor:
    """``(feats - mean) / std`` on (..., L, D) features; rows at or beyond ``lengths`` (B,) stay 0."""
    out = (feats.float() - mean) / std
    if lengths is not None and out.dim() == 3:
        valid = torch.arange(out.shape[1], device=out.device).unsqueeze(0) < lengths.to(out.device).unsqueeze(1)
        out = out * valid.unsqueeze(-1).to(out.dtype)
    return out


def _pre_hook(
    module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    feats, rest = args[0], args[1:]
    lengths = rest[0] if rest else kwargs.get("lengths")
    mean, std = getattr(module, MEAN_BUFFER), getattr(module, STD_BUFFER)
    return (normalize_features(feats, mean, std, lengths), *rest), kwargs


def attach_input_norm(model: nn.Module, mode: str, feature_dim: int) -> nn.Module:
    """Give ``model`` the ``mode`` input normalisation (buffers + forward pre-hook); ``none``
    leaves it untouched (no buffer: the state dict keeps the official keys)."""
    check_input_norm(mode)
    if mode == "none":
        return model
    ref = next(iter(model.parameters()), None)
    kw: dict[str, Any] = {"device": ref.device} if ref is not None else {}
    model.register_buffer(MEAN_BUFFER, torch.zeros(feature_dim, **kw))
    model.register_buffer(STD_BUFFER, torch.ones(feature_dim, **kw))
    model._input_norm_mode = mode  # type: ignore[assignment]
    model.register_forward_pre_hook(_pre_hook, with_kwargs=True)
    return model


def feature_moments(chunks: Sequence[np.ndarray] | Any) -> tuple[np.ndarray, np.ndarray, float, int]:
    """(mean, std, mean row norm, n) per dimension over the rows of ``chunks`` ((n_i, D) arrays), in float64."""
    total = None
    sq = None
    norms = 0.0
    n = 0
    for rows in chunks:
        r = np.asarray(rows, dtype=np.float64).reshape(-1, np.shape(rows)[-1])
        total = r.sum(0) if total is None else total + r.sum(0)
        sq = (r * r).sum(0) if sq is None else sq + (r * r).sum(0)
        norms += float(np.sqrt((r * r).sum(1)).sum())
        n += r.shape[0]
    if not n or total is None or sq is None:
        raise InputError("input normalisation needs at least one training feature row")
    mean = total / n
    var = np.maximum(sq / n - mean * mean, 0.0)
    return mean, np.sqrt(var), norms / n, n


def fit_input_norm(
    model: nn.Module,
    store: FeatureStoreLike,
    video_ids: Sequence[str],
    crops: Sequence[int],
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any] | None:
    """Fit the model's input normalisation on the training videos' features (every crop);
    a no-op (None) for a model without one. Returns a summary for the run log."""
    if not has_input_norm(model):
        return None
    mode = str(model._input_norm_mode)
    use_mean, use_std = INPUT_NORMS[mode]
    mean, std, row_norm, n = feature_moments(store.read(v, [int(c) for c in crops]) for v in video_ids)
    buf_mean, buf_std = getattr(model, MEAN_BUFFER), getattr(model, STD_BUFFER)
    with torch.no_grad():
        if use_mean:
            buf_mean.copy_(torch.from_numpy(mean).to(buf_mean))
        if use_std:
            scale = max(row_norm, STD_FLOOR) / np.sqrt(mean.shape[0])  # rows keep their average norm
            divisor = np.maximum(std, STD_FLOOR * max(float(std.max()), 1e-12)) / scale
            buf_std.copy_(torch.from_numpy(divisor).to(buf_std))
    if progress:
        progress(f"input normalisation {mode!r} fitted on {n} training snippet rows")
    return {"mode": mode, "rows": n, "mean_norm": float(np.linalg.norm(mean)), "std_mean": float(std.mean())}


__all__ = [
    "BUFFER_KEYS",
    "INPUT_NORMS",
    "is_identity",
    "attach_input_norm",
    "check_input_norm",
    "feature_moments",
    "fit_input_norm",
    "has_input_norm",
    "list_input_norms",
    "normalize_features",
]
