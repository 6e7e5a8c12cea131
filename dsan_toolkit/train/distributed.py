"""Data-parallel training under ``torchrun`` (gloo on CPU, nccl on CUDA).

Every rank draws the same global batch order (same seed) and takes its own share of each
global batch, so a run on W processes sees exactly the batches of a single-process run. The
model is wrapped in PyTorch's :class:`~torch.nn.parallel.DistributedDataParallel`
(:func:`wrap_model`): its bucketed all-reduce runs during the backward pass and averages the
gradients over the ranks; each rank's loss is multiplied by ``share * world_size``
(:func:`loss_factor`), so the average is the share-weighted sum, the gradient of the
global-batch mean. Rank 0 alone writes files.

Under torchrun the process group is joined even for one process (``--nproc-per-node 1``), so
a one-GPU torchrun run goes through every collective. Every collective here uses tensors on
the group's device (:attr:`DistInfo.device`: the process's GPU for nccl, the CPU for gloo).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta

import torch
import torch.distributed as dist

from ..errors import InputError
from ..utils.torchrun import torchrun_env

# rank 0 evaluates alone (in-training selection, the end of the run) while the others wait in a
# collective: allow that much longer than nccl's default of 10 minutes
GROUP_TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    backend: str | None = None  # None: no process group (a plain process)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # where collectives' tensors live

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """A process group was joined (under torchrun, one process included)."""
        return self.backend is not None


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group described by torchrun's environment (any number of processes,
    one included); a plain process (no torchrun) gets ``DistInfo()`` and no group."""
    env = torchrun_env()
    if not env.launched:
        return DistInfo()
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k)]
    if missing:
        raise InputError(
            f"RANK and WORLD_SIZE are set but {' and '.join(missing)} not: start the processes with torchrun"
        )
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", env.local_rank)
        torch.cuda.set_device(device)
    group_device = device if device.type == "cuda" else torch.device("cpu")
    if not dist.is_initialized():
        kwargs = {"device_id": group_device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, timeout=GROUP_TIMEOUT, **kwargs)
    return DistInfo(rank=env.rank, world_size=env.world_size, backend=backend, device=group_device)


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if not info.enabled:
        return
    if info.device.type == "cuda":
        dist.barrier(device_ids=[info.device.index])
    else:
        dist.barrier()


def _broadcast(t: torch.Tensor, info: DistInfo) -> None:
    """Rank 0's values of ``t`` on every rank, in place; a tensor off the group's device
    travels through a copy on it."""
    if t.device == info.device:
        dist.broadcast(t, src=0)
        return
    tmp = t.detach().to(info.device)
    dist.broadcast(tmp, src=0)
    t.copy_(tmp)


def broadcast_module(module: torch.nn.Module, info: DistInfo) -> None:
    """Make every rank hold rank 0's parameters and buffers."""
    if not info.enabled:
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            _broadcast(t.data, info)


def sync_buffers(module: torch.nn.Module, info: DistInfo) -> None:
    """Rank 0's buffers on every rank (DDP broadcasts them before each forward; this makes the
    ranks agree after the last step too)."""
    if not info.enabled:
        return
    with torch.no_grad():
        for b in module.buffers():
            _broadcast(b.data, info)


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The sum over ranks of ``t`` (a new tensor on the group's device; ``t`` itself without a
    group)."""
    if not info.enabled:
        return t
    out = t.detach().to(info.device, copy=True)
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def broadcast_int(value: int, info: DistInfo) -> int:
    """Rank 0's integer on every rank (a tensor broadcast on the group's device: nothing is pickled)."""
    if not info.enabled:
        return value
    t = torch.tensor([int(value)], dtype=torch.long, device=info.device)
    dist.broadcast(t, src=0)
    return int(t.item())


def loss_factor(share: float, info: DistInfo) -> float:
    """What a rank's loss is multiplied by so that DDP's average over ranks is the
    share-weighted sum of the ranks' gradients (1.0 without a group, and for one process)."""
    return float(share) * info.world_size if info.enabled else 1.0


def wrap_model(model: torch.nn.Module, info: DistInfo, *, find_unused_parameters: bool = True) -> torch.nn.Module:
    """``model`` in :class:`~torch.nn.parallel.DistributedDataParallel` under a process group
    (``model`` itself otherwise). The wrapper's construction broadcasts rank 0's parameters and
    buffers, and it broadcasts the buffers again before each forward. ``find_unused_parameters``:
    some trainable parameter gets no gradient (DSANet and VadCLIP: the distance graph's unused
    ``sigma``); its gradient stays None on every rank, as in a single process, so the optimisers
    skip it alike."""
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        model,
        device_ids=[info.device.index] if info.device.type == "cuda" else None,
        broadcast_buffers=True,
        find_unused_parameters=find_unused_parameters,
    )
