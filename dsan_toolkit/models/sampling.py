"""Official snippet sampling, vectorised: training resampling, test chunking, per-video prediction.

- :func:`resample_uniform` (training): a video with ``T > length`` snippets becomes ``length``
  rows, row ``i`` the mean of snippets ``[r[i], r[i+1])`` with ``r = linspace(0, T, length+1)``
  cast to int32 (the official ``uniform_extract`` with ``avg=True``); ``T <= length`` is
  zero-padded and keeps ``valid_len = T``.
- :func:`split_chunks` (test): ``int(T / length) + 1`` chunks of ``length`` rows, the last
  zero-padded; when ``T`` is a multiple of ``length`` the last chunk is all padding and, as in
  the official test loop, gets length ``length`` (its outputs are cut away).
- :func:`predict_video`: one forward over all chunks of a video, stitched back to ``T`` rows.

Means are taken in float64 and cast to float32 (the official code sums in float32 with
numpy's pairwise summation: results agree to float32 rounding, not bit for bit).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from .api import Prediction

if TYPE_CHECKING:
    from torch import nn

    from .api import Method

ArrayT = TypeVar("ArrayT", np.ndarray, Tensor)
Array = np.ndarray | Tensor


def _as_tensor(feats: Array) -> tuple[Tensor, bool]:
    if isinstance(feats, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(feats)), True
    if isinstance(feats, Tensor):
        return feats, False
    raise InputError(f"features must be a numpy array or a tensor, got {type(feats).__name__}")


def _check_2d(x: Tensor) -> None:
    if x.ndim != 2:
        raise InputError(f"features must have shape (T, D), got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise InputError("a video with 0 snippets cannot be sampled")


def resample_bins(num_snippets: int, length: int = 256) -> np.ndarray:
    """The official bin edges ``linspace(0, T, length+1)`` cast to int32 (for ``T > length``)."""
    return np.linspace(0, num_snippets, length + 1, dtype=np.int32)


def resample_uniform(feats: ArrayT, length: int = 256) -> tuple[ArrayT, int]:
    """Training resampling to ``length`` rows; returns ``(rows, valid_len)`` (same array type)."""
    x, was_numpy = _as_tensor(feats)
    _check_2d(x)
    t, d = x.shape
    if t <= length:
        out = torch.zeros(length, d, dtype=x.dtype, device=x.device)
        out[:t] = x
        valid = t
    else:
        edges = torch.from_numpy(resample_bins(t, length).astype(np.int64)).to(x.device)
        csum = torch.zeros(t + 1, d, dtype=torch.float64, device=x.device)
        csum[1:] = torch.cumsum(x.to(torch.float64), dim=0)
        counts = (edges[1:] - edges[:-1]).to(torch.float64).unsqueeze(1)
        out = ((csum[edges[1:]] - csum[edges[:-1]]) / counts).to(x.dtype)
        valid = length
    return (out.numpy() if was_numpy else out), valid  # type: ignore[return-value]


def chunk_lengths(num_snippets: int, length: int = 256) -> list[int]:
    """Valid lengths of the official test chunks of a video of ``num_snippets`` snippets."""
    if num_snippets <= 0:
        raise InputError("a video with 0 snippets cannot be split")
    n = num_snippets // length + 1
    last = num_snippets - (n - 1) * length
    return [length] * (n - 1) + [last if last > 0 else length]


def split_chunks(feats: ArrayT, length: int = 256) -> tuple[ArrayT, ArrayT]:
    """Test chunking: ``(chunks (n, length, D), lengths (n,))`` in the input's array type."""
    x, was_numpy = _as_tensor(feats)
    _check_2d(x)
    t, d = x.shape
    lens = chunk_lengths(t, length)
    n = len(lens)
    padded = torch.zeros(n * length, d, dtype=x.dtype, device=x.device)
    padded[:t] = x
    chunks = padded.view(n, length, d)
    lengths = torch.tensor(lens, dtype=torch.long, device=x.device)
    if was_numpy:
        return chunks.numpy(), lengths.numpy()  # type: ignore[return-value]
    return chunks, lengths  # type: ignore[return-value]


@torch.no_grad()
def predict_video(
    method: Method,
    model: nn.Module,
    feats: Array,
    *,
    length: int | None = None,
    device: str | torch.device | None = None,
) -> Prediction:
    """Per-snippet prediction for one whole video ``feats`` (T, D): scores (T,), class_probs (T, C)
    (``None`` for a method without a class branch).

    ``length`` defaults to the model's ``visual_length``; the chunks go through the model in
    one batch (as the official test loop does), on ``device`` (default: the model's device).
    """
    x, _ = _as_tensor(feats)
    _check_2d(x)
    length = int(length or getattr(model, "visual_length", 256))
    if device is None:
        p = next(iter(model.parameters()), None)
        device = p.device if p is not None else torch.device("cpu")
    chunks, lengths = split_chunks(x.to(torch.float32), length)
    pred = method.predict(model, chunks.to(device), lengths.to(device))
    t = x.shape[0]
    return Prediction(
        scores=pred.scores.reshape(-1)[:t],
        align_scores=pred.align_scores.reshape(-1)[:t],
        class_probs=None if pred.class_probs is None else pred.class_probs.reshape(-1, pred.class_probs.shape[-1])[:t],
    )
