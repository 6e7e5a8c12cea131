"""Test data over a feature store (:class:`TestSet`): one crop per video (the manifest's
official test crop by default), raw (T, D) rows; :meth:`TestSet.chunks` splits every video
into ``int(T / L) + 1`` chunks of L rows as the official test does (the last one zero-padded,
an all-padding chunk when L divides T) for all videos at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from ..store.protocol import FeatureStoreLike


def load_split(store: FeatureStoreLike, ids: Sequence[str], crop: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows (sum T, D) float32, offsets (N + 1,) int64) of ``ids`` at ``crop``, in order."""
    ids = list(ids)
    if not ids:
        return np.zeros((0, int(store.feature_dim)), np.float32), np.zeros(1, np.int64)
    rows, offsets = store.load_all(ids, crop)
    rows = np.asarray(rows, dtype=np.float32)
    offsets = np.asarray(offsets, dtype=np.int64)
    if offsets.shape != (len(ids) + 1,):
        raise InputError(f"store returned {offsets.shape[0] - 1} videos for {len(ids)} requested")
    return rows, offsets


@dataclass
class TestSet:
    """Test videos at one crop: raw rows (sum T, D) + a zero sentinel row, offsets (N + 1,)."""

    table: Tensor
    offsets: Tensor
    video_ids: list[str]
    crop: int

    @property
    def lengths(self) -> Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def chunks(self, length: int) -> tuple[Tensor, Tensor, Tensor]:
        """All chunks of all videos: (row index map (K, L) into ``table``, chunk lengths (K,),
        owning video (K,)). Valid rows of the flattened map are the videos' rows in order."""
        t = self.lengths
        n_chunks = torch.div(t, length, rounding_mode="floor") + 1
        owner = torch.repeat_interleave(torch.arange(len(t)), n_chunks)
        first = torch.cumsum(n_chunks, 0) - n_chunks
        k = torch.arange(int(n_chunks.sum())) - first[owner]
        chunk_start = k * length  # within the video
        chunk_len = (t[owner] - chunk_start).clamp(min=0, max=length)
        pos = torch.arange(length)
        rows = self.offsets[owner][:, None] + chunk_start[:, None] + pos[None, :]
        sentinel = self.table.shape[0] - 1
        index = torch.where(pos[None, :] < chunk_len[:, None], rows, torch.full_like(rows, sentinel))
        # the official code gives an all-padding final chunk the length L (T % L == 0)
        chunk_len = torch.where(chunk_len == 0, torch.full_like(chunk_len, length), chunk_len)
        return index, chunk_len, owner


def build_test_set(store: FeatureStoreLike, video_ids: Sequence[str], crop: int) -> TestSet:
    rows, offsets = load_split(store, video_ids, crop)
    table = np.concatenate([rows, np.zeros((1, rows.shape[1]), np.float32)], axis=0)
    return TestSet(torch.from_numpy(table), torch.from_numpy(offsets), list(video_ids), int(crop))
