"""Data-parallel training under ``torchrun`` (gloo on CPU, nccl on CUDA).

Every rank draws the same global batch order (same seed) and takes its own share of each
global batch, so a run on W processes sees exactly the batches of a single-process run.
After the backward pass the gradients are averaged across ranks, weighted by each rank's
share of the batch (:func:`all_reduce_gradients`), which is what DDP does; doing it
explicitly keeps the methods' loss functions free to use any module attribute (no wrapper
object in between) and handles parameters that got no gradient on some rank. Rank 0 alone
writes files.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..utils.torchrun import torchrun_env


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group described by torchrun's environment (no-op for one process)."""
    env = torchrun_env()
    if not env.enabled:
        return DistInfo()
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    return DistInfo(rank=env.rank, world_size=env.world_size, backend=backend)


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def broadcast_module(module: torch.nn.Module, info: DistInfo) -> None:
    """Make every rank start from rank 0's parameters and buffers."""
    if not info.enabled:
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)


def all_reduce_gradients(params: list[torch.nn.Parameter], local_share: float, info: DistInfo) -> None:
    """grad <- sum over ranks of (local_share * grad): the gradient of the global-batch mean
    when each rank's loss is a mean over its ``local_share`` fraction of the batch."""
    if not info.enabled or not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads]) * local_share
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def all_reduce_mean(values: dict[str, float], weight: float, info: DistInfo) -> dict[str, float]:
    """Weighted sum across ranks of per-rank scalar logs (weights sum to 1)."""
    if not info.enabled or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] * weight for k in keys], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return {k: float(v) for k, v in zip(keys, t.tolist())}


def broadcast_int(value: int, info: DistInfo) -> int:
    """Rank 0's integer on every rank (a tensor broadcast: nothing is pickled)."""
    if not info.enabled:
        return value
    t = torch.tensor([int(value)], dtype=torch.long)
    dist.broadcast(t, src=0)
    return int(t.item())


def sync_buffers(module: torch.nn.Module, info: DistInfo) -> None:
    """Rank 0's buffers on every rank (as DDP's ``broadcast_buffers``)."""
    if not info.enabled:
        return
    with torch.no_grad():
        for b in module.buffers():
            dist.broadcast(b.data, src=0)
