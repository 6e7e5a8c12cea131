"""torchrun's environment, read in one place: this process's rank, the world size, its device.

``torchrun`` starts one process per worker and sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; a process started otherwise has none of them and is rank 0 of 1. Extraction
(one shard of the videos per rank) and training (data-parallel) both read them here, and
``--device cuda`` means the process's own local GPU under torchrun (:meth:`TorchrunEnv.device`).
``launched`` tells a process started by torchrun, even a single one (``--nproc-per-node 1``),
from a plain process: training joins a process group whenever it is set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import InputError

__all__ = ["TorchrunEnv", "torchrun_env"]


@dataclass(frozen=True)
class TorchrunEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launched: bool = False  # started by torchrun (RANK and WORLD_SIZE set), even as its only process

    @property
    def enabled(self) -> bool:
        """More than one process."""
        return self.world_size > 1

    def device(self, device: str) -> str:
        """``cuda`` is this process's local GPU (``cuda:LOCAL_RANK``) under torchrun; any other
        device (``cpu``, ``cuda:N``), or any device of a plain process, is kept."""
        return f"cuda:{self.local_rank}" if (self.enabled or self.launched) and device == "cuda" else device


def torchrun_env(environ: Mapping[str, str] | None = None) -> TorchrunEnv:
    """This process's place under torchrun (``os.environ`` unless ``environ`` is given);
    rank 0 of 1 without torchrun. ``LOCAL_RANK`` defaults to the rank (one machine)."""
    env = os.environ if environ is None else environ
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", rank))
    except ValueError:
        raise InputError("RANK / WORLD_SIZE / LOCAL_RANK must be integers") from None
    if world > 1 and "RANK" not in env:
        raise InputError(f"WORLD_SIZE is {world} but RANK is not set: start the processes with torchrun")
    if world < 1 or not 0 <= rank < world or local < 0:
        raise InputError(f"torchrun environment out of range: RANK {rank}, WORLD_SIZE {world}, LOCAL_RANK {local}")
    launched = "RANK" in env and "WORLD_SIZE" in env
    return TorchrunEnv(rank=rank, world_size=world, local_rank=local, launched=launched)
