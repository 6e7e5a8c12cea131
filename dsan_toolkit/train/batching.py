"""Batch order over the training samples (:class:`BatchPlan`) and this rank's batches (:func:`iterate_batches`).

``paired`` (UCF: a normal and an anomalous shuffled loader, ``drop_last``, the normal half
first, ``min`` of the two lengths per epoch) or ``mixed`` (XD: one shuffled loader, last
partial batch kept). The order of epoch ``e`` is a pure function of ``(seed, e)``, which makes
resuming mid-run exact and lets every DDP rank draw the same global batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor

from ..errors import InputError
from ..models.api import TrainBatch
from .samples import StreamingSamples, TrainSamples

BATCH_COMPOSITIONS = ("paired", "mixed")


def _generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed((int(seed) * 1_000_003 + int(epoch) * 7_919 + stream) % (2**63 - 1))
    return g


@dataclass(frozen=True)
class BatchPlan:
    """The official batch composition over ``samples``; global batches per epoch.

    paired: ``batch_size`` normal + ``batch_size`` anomalous samples per step (normal half
    first), each side shuffled without replacement and its last partial batch dropped.
    mixed: ``batch_size`` samples of any kind, shuffled, last partial batch kept unless
    ``drop_last``.
    """

    composition: str
    batch_size: int
    normal_idx: Tensor
    anomalous_idx: Tensor
    all_idx: Tensor
    seed: int
    drop_last: bool = False

    @classmethod
    def create(
        cls,
        samples: TrainSamples | StreamingSamples,
        composition: str,
        batch_size: int,
        seed: int,
        drop_last: bool = False,
    ) -> BatchPlan:
        if composition not in BATCH_COMPOSITIONS:
            raise InputError(f"unknown batch composition {composition!r}; known: {BATCH_COMPOSITIONS}")
        if batch_size < 1:
            raise InputError("batch size must be at least 1")
        normal = torch.nonzero(~samples.anomalous).flatten()
        anomalous = torch.nonzero(samples.anomalous).flatten()
        plan = cls(composition, int(batch_size), normal, anomalous, torch.arange(len(samples)), int(seed), drop_last)
        if plan.steps_per_epoch() == 0:
            if composition == "paired":
                raise InputError(
                    f"paired batches of {batch_size} need at least {batch_size} normal and {batch_size} anomalous "
                    f"training samples; the store has {len(normal)} normal and {len(anomalous)} anomalous "
                    "(lower the batch size with a preset override or use a store with more videos)"
                )
            raise InputError(f"no training batch of size {batch_size} can be formed from {len(samples)} samples")
        return plan

    def steps_per_epoch(self) -> int:
        if self.composition == "paired":
            return min(len(self.normal_idx) // self.batch_size, len(self.anomalous_idx) // self.batch_size)
        n = len(self.all_idx)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def loader_lengths(self) -> tuple[int, ...]:
        """Lengths of the official loaders (paired: normal and anomalous; mixed: one)."""
        if self.composition == "paired":
            return (len(self.normal_idx) // self.batch_size, len(self.anomalous_idx) // self.batch_size)
        return (self.steps_per_epoch(),)

    def epoch(self, epoch: int) -> list[tuple[Tensor, ...]]:
        """Global batches of one epoch: paired -> (normal idx, anomalous idx); mixed -> (idx,)."""
        bs = self.batch_size
        steps = self.steps_per_epoch()
        if self.composition == "paired":
            pn = self.normal_idx[torch.randperm(len(self.normal_idx), generator=_generator(self.seed, epoch, 1))]
            pa = self.anomalous_idx[torch.randperm(len(self.anomalous_idx), generator=_generator(self.seed, epoch, 2))]
            return [(pn[i * bs : (i + 1) * bs], pa[i * bs : (i + 1) * bs]) for i in range(steps)]
        perm = self.all_idx[torch.randperm(len(self.all_idx), generator=_generator(self.seed, epoch, 3))]
        return [(perm[i * bs : (i + 1) * bs],) for i in range(steps)]


def shard(parts: tuple[Tensor, ...], rank: int, world: int) -> tuple[Tensor, float]:
    """This rank's share of a global batch (each part split alike, order kept: normal half
    first) and its fraction of the global batch."""
    total = sum(len(p) for p in parts)
    if world <= 1:
        return torch.cat(parts), 1.0
    mine = [p[rank::world] for p in parts]
    local = torch.cat(mine)
    return local, (len(local) / total if total else 0.0)


def cuda_fence(device: torch.device) -> Any:
    """A CUDA event recorded on ``device``'s current stream (the one a copy to it runs on, which
    need not be the current device's): ``synchronize()`` returns once the work queued there
    before it (the host-to-GPU copy of a batch) has run."""
    ev = torch.cuda.Event()
    ev.record(torch.cuda.current_stream(device))
    return ev


def iterate_batches(
    samples: TrainSamples | StreamingSamples,
    batches: Sequence[tuple[Tensor, ...]],
    rank: int = 0,
    world: int = 1,
    *,
    prefetch: bool = True,
    pin_memory: bool = False,
    device: torch.device | str | None = None,
    fence: Callable[[], Any] | None = None,
) -> Iterator[tuple[TrainBatch, float]]:
    """This rank's share of each global batch, assembled one batch ahead in a background
    thread (the gather releases the GIL) so that the next batch is ready when a step ends.

    With ``prefetch`` the features go into a ring of three reusable buffers (pinned with
    ``pin_memory``, for asynchronous host-to-GPU copies): a yielded batch stays valid until
    the consumer has asked for two more, so a consumer must not keep batches longer.

    ``device``: the batches are moved there (asynchronously from pinned memory) before they are
    yielded. The training step does not wait for the GPU, so a copy may still be queued when the
    host is two batches further; each copy is therefore followed by a fence (``fence()``, a CUDA
    event on a CUDA device, nothing elsewhere), and the background thread waits on a buffer's
    fence before it writes the buffer again. Only that thread waits, and only for that copy."""
    target = torch.device(device) if device is not None else None
    if fence is None and target is not None and target.type == "cuda":
        fence = partial(cuda_fence, target)
    ring: list[Tensor] = []
    fences: list[Any] = []

    def make(parts: tuple[Tensor, ...], slot: int | None) -> tuple[TrainBatch, float]:
        idx, share = shard(parts, rank, world)
        if slot is None:
            b = samples.batch(idx)
            if pin_memory:
                b = TrainBatch(b.feats.pin_memory(), b.lengths, b.labels, b.anomalous)
            return b, share
        if fences[slot] is not None:  # the copy of the batch this buffer held last has run
            fences[slot].synchronize()
            fences[slot] = None
        need = len(idx) * samples.length * samples.feature_dim
        if ring[slot].numel() < need:
            ring[slot] = torch.empty(need, dtype=torch.float32, pin_memory=pin_memory)
        return samples.batch(idx, out=ring[slot]), share

    def moved(item: tuple[TrainBatch, float], slot: int | None) -> tuple[TrainBatch, float]:
        b, share = item
        if target is not None:
            b = b.to(target)
            if slot is not None and fence is not None:
                fences[slot] = fence()
        return b, share

    if not prefetch or len(batches) < 2:
        for parts in batches:
            yield moved(make(parts, None), None)
        return
    from concurrent.futures import ThreadPoolExecutor

    ring.extend(torch.empty(0) for _ in range(3))
    fences.extend(None for _ in range(3))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dsan-batches") as pool:
        pending = pool.submit(make, batches[0], 0)
        for i, nxt in enumerate(list(batches[1:]) + [None]):
            ready = moved(pending.result(), i % 3)
            if nxt is not None:
                pending = pool.submit(make, nxt, (i + 1) % 3)
            yield ready
