"""Training samples over a feature store, as the official protocol uses them.

Every crop of every training video is one sample (the official lists hold all 10 crops). Each
sample is resampled to ``visual_length`` rows the official way (T > L: the mean over the bins
``linspace(0, T, L + 1)`` cast to int32; T <= L: zero padding, length T; :func:`resample_video`).
The resampled rows of the whole split are computed once, each video's crops together in a
thread pool (:func:`build_train_samples`), and kept in memory as one ragged table; a batch is a
single gather from it (:meth:`TrainSamples.batch`). A split that does not fit in memory is read
per batch (:class:`StreamingSamples`, same batches); :func:`make_train_samples` chooses.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from ..manifest.schema import ClassInfo, Manifest
from ..models.api import TrainBatch, labels_from_codes
from ..store.protocol import FeatureStoreLike

# ---------------------------------------------------------------------------------------
# official resampling


def _linspace_int32(t: np.ndarray, length: int) -> np.ndarray:
    """``np.linspace(0, T, length + 1).astype(np.int32)`` for every T, vectorised, exact."""
    k = np.arange(length + 1, dtype=np.float64)
    step = t.astype(np.float64)[:, None] / length
    vals = k[None, :] * step  # numpy's linspace computes start + k * step
    vals[:, -1] = t  # linspace sets the endpoint exactly
    return vals.astype(np.int32).astype(np.int64)


def resample_video(x: np.ndarray, length: int) -> np.ndarray:
    """Official training resampling of one video's crops at once: ``x`` (C, T, D) ->
    (C, min(T, L), D) (bin means for T > L, the rows unchanged otherwise; no padding)."""
    t = x.shape[1]
    if t == 0:
        raise InputError("every video needs at least one feature row")
    if t <= length:
        return np.asarray(x, dtype=np.float32)
    edges = _linspace_int32(np.array([t]), length)[0]
    counts = np.diff(edges)
    seg = torch.from_numpy(np.repeat(np.arange(length), counts))
    acc = torch.zeros(x.shape[0], length, x.shape[2], dtype=torch.float32)
    acc.index_add_(1, seg, torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
    return (acc / torch.from_numpy(counts.astype(np.float32))[None, :, None]).numpy()


# ---------------------------------------------------------------------------------------
# training samples


@dataclass
class TrainSamples:
    """All training samples of a split, resampled, in one ragged in-memory table.

    ``table`` (R + 1, D): resampled rows of every sample plus a final zero row used as the
    padding sentinel; sample i has ``lengths[i]`` rows from ``starts[i]``. ``labels`` (N, C)
    multi-hot, ``anomalous`` (N,), ``video`` (N,) index into ``video_ids``, ``crop`` (N,).
    """

    table: Tensor
    starts: Tensor
    lengths: Tensor
    labels: Tensor
    anomalous: Tensor
    video: Tensor
    crop: Tensor
    video_ids: list[str]
    length: int

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    @property
    def feature_dim(self) -> int:
        return int(self.table.shape[1])

    @property
    def nbytes(self) -> int:
        return int(self.table.numel() * self.table.element_size())

    def gather_index(self, idx: Tensor) -> Tensor:
        """(B, L) row indices into ``table`` for samples ``idx`` (padding -> the zero row)."""
        pos = torch.arange(self.length)
        lens = self.lengths[idx]
        rows = self.starts[idx][:, None] + pos[None, :]
        sentinel = self.table.shape[0] - 1
        return torch.where(pos[None, :] < lens[:, None], rows, torch.full_like(rows, sentinel))

    def batch(self, idx: Tensor, out: Tensor | None = None) -> TrainBatch:
        """The samples ``idx`` as a padded batch; ``out`` (a reusable buffer of at least
        ``len(idx) * L * D`` floats) avoids allocating the features tensor."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        gi = self.gather_index(idx).reshape(-1)
        if out is not None and out.numel() >= gi.numel() * self.feature_dim:
            buf = out.view(-1)[: gi.numel() * self.feature_dim].view(gi.numel(), self.feature_dim)
            feats = torch.index_select(self.table, 0, gi, out=buf).view(len(idx), self.length, -1)
        else:
            feats = self.table.index_select(0, gi).view(len(idx), self.length, -1)
        return TrainBatch(
            feats=feats,
            lengths=self.lengths[idx].clone(),
            labels=self.labels[idx].clone(),
            anomalous=self.anomalous[idx].clone(),
        )


def build_train_samples(
    store: FeatureStoreLike,
    manifest: Manifest,
    video_ids: Sequence[str],
    crops: Sequence[int],
    classes: Sequence[ClassInfo],
    length: int,
    *,
    workers: int = 4,
) -> TrainSamples:
    """Read, resample and cache every (video, crop) sample (video-major: sample ``v * C + c``).

    Each video's crops are read in one store access and resampled together, in a thread pool
    writing into one preallocated table (memory: the resampled split plus one video)."""
    from concurrent.futures import ThreadPoolExecutor

    video_ids = list(video_ids)
    crops = [int(c) for c in crops]
    n_v, n_c = len(video_ids), len(crops)
    all_lengths = store.lengths()
    missing = [v for v in video_ids if v not in all_lengths]
    if missing:
        raise InputError(f"{len(missing)} training videos have no features in the store, e.g. {missing[:3]}")
    t = np.array([all_lengths[v] for v in video_ids], dtype=np.int64)
    if (t <= 0).any():
        raise InputError(f"training video {video_ids[int(np.argmax(t <= 0))]!r} has no feature rows")
    n = np.minimum(t, length)
    block = np.concatenate([[0], np.cumsum(n * n_c)])
    dim = int(store.feature_dim)
    table = np.empty((int(block[-1]) + 1, dim), dtype=np.float32)
    table[-1] = 0.0  # the padding sentinel

    def fill(i: int) -> None:
        x = np.asarray(store.read(video_ids[i], crops), dtype=np.float32)
        if x.shape != (n_c, int(t[i]), dim):
            raise InputError(f"features of {video_ids[i]!r} have shape {x.shape}, expected {(n_c, int(t[i]), dim)}")
        table[block[i] : block[i + 1]] = resample_video(x, length).reshape(-1, dim)

    if n_v:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            list(pool.map(fill, range(n_v)))
    starts = (block[:-1, None] + np.arange(n_c)[None, :] * n[:, None]).reshape(-1)
    codes = [manifest.video(v).labels for v in video_ids]
    labels_v = labels_from_codes(codes, classes)
    normal_code = next(c.code for c in classes if c.normal)
    anom_v = torch.tensor([any(code != normal_code for code in cs) for cs in codes], dtype=torch.bool)
    vid = torch.arange(n_v).repeat_interleave(n_c)
    return TrainSamples(
        table=torch.from_numpy(table),
        starts=torch.from_numpy(starts.astype(np.int64)),
        lengths=torch.from_numpy(np.repeat(n, n_c).astype(np.int64)),
        labels=labels_v[vid],
        anomalous=anom_v[vid],
        video=vid,
        crop=torch.tensor(crops, dtype=torch.long).repeat(n_v),
        video_ids=video_ids,
        length=length,
    )


class StreamingSamples:
    """The same samples as :class:`TrainSamples`, read from the store at batch time (for a split
    that does not fit in memory): each batch reads its samples' features in a thread pool and
    resamples them exactly as the cache does, so batches are identical."""

    def __init__(
        self,
        store: FeatureStoreLike,
        manifest: Manifest,
        video_ids: Sequence[str],
        crops: Sequence[int],
        classes: Sequence[ClassInfo],
        length: int,
        *,
        workers: int = 4,
    ) -> None:
        self.store = store
        self.video_ids = list(video_ids)
        self.crops = [int(c) for c in crops]
        self.length = int(length)
        self.workers = workers
        all_lengths = store.lengths()
        missing = [v for v in self.video_ids if v not in all_lengths]
        if missing:
            raise InputError(f"{len(missing)} training videos have no features in the store, e.g. {missing[:3]}")
        t = np.array([all_lengths[v] for v in self.video_ids], dtype=np.int64)
        n_c = len(self.crops)
        codes = [manifest.video(v).labels for v in self.video_ids]
        labels_v = labels_from_codes(codes, classes)
        normal_code = next(c.code for c in classes if c.normal)
        anom_v = torch.tensor([any(code != normal_code for code in cs) for cs in codes], dtype=torch.bool)
        self.video = torch.arange(len(self.video_ids)).repeat_interleave(n_c)
        self.crop = torch.tensor(self.crops, dtype=torch.long).repeat(len(self.video_ids))
        self.lengths = torch.from_numpy(np.repeat(np.minimum(t, length), n_c).astype(np.int64))
        self.labels = labels_v[self.video]
        self.anomalous = anom_v[self.video]
        self._dim = int(store.feature_dim)

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    @property
    def feature_dim(self) -> int:
        return self._dim

    @property
    def nbytes(self) -> int:
        return 0

    def batch(self, idx: Tensor, out: Tensor | None = None) -> TrainBatch:
        from concurrent.futures import ThreadPoolExecutor

        idx = torch.as_tensor(idx, dtype=torch.long)
        need = len(idx) * self.length * self._dim
        if out is not None and out.numel() >= need:
            feats = out.view(-1)[:need].view(len(idx), self.length, self._dim)
        else:
            feats = torch.empty(len(idx), self.length, self._dim)

        def fill(j: int) -> None:
            i = int(idx[j])
            x = np.asarray(self.store.read(self.video_ids[int(self.video[i])], [int(self.crop[i])]), np.float32)
            rows = torch.from_numpy(resample_video(x, self.length)[0])
            feats[j, : rows.shape[0]] = rows
            feats[j, rows.shape[0] :] = 0.0

        with ThreadPoolExecutor(max_workers=max(1, self.workers)) as pool:
            list(pool.map(fill, range(len(idx))))
        return TrainBatch(
            feats=feats,
            lengths=self.lengths[idx].clone(),
            labels=self.labels[idx].clone(),
            anomalous=self.anomalous[idx].clone(),
        )


CACHE_MODES = ("auto", "memory", "none")


def cache_bytes(store: FeatureStoreLike, video_ids: Sequence[str], crops: Sequence[int], length: int) -> int:
    """Memory the in-memory cache of these samples needs."""
    lengths = store.lengths()
    rows = sum(min(int(lengths.get(v, 0)), length) for v in video_ids) * len(crops) + 1
    return rows * int(store.feature_dim) * 4


def available_memory(meminfo: str | Path = "/proc/meminfo") -> int | None:
    """Bytes a new allocation can take without swapping: ``MemAvailable`` of ``/proc/meminfo``
    (free memory plus the page cache the kernel can reclaim); the free pages where there is no
    such file (not Linux); None when neither is known."""
    try:
        with open(meminfo, encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def make_train_samples(
    store: FeatureStoreLike,
    manifest: Manifest,
    video_ids: Sequence[str],
    crops: Sequence[int],
    classes: Sequence[ClassInfo],
    length: int,
    *,
    cache: str = "auto",
) -> Any:
    """The training samples, cached in memory (``memory``), read per batch (``none``), or
    cached when the cache takes at most 70% of the available memory (``auto``)."""
    if cache not in CACHE_MODES:
        raise InputError(f"unknown --cache {cache!r}; choose one of {', '.join(CACHE_MODES)}")
    if cache == "auto":
        avail = available_memory()
        need = cache_bytes(store, video_ids, crops, length)
        cache = "memory" if avail is None or need <= 0.7 * avail else "none"
    if cache == "none":
        return StreamingSamples(store, manifest, video_ids, crops, classes, length)
    return build_train_samples(store, manifest, video_ids, crops, classes, length)
