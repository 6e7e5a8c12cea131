"""The step log without a host synchronisation per step.

A training step leaves its loss parts on the device (detached tensors); :class:`PendingSteps`
keeps them with the step's bookkeeping and reads them at the logging cadence: the pending steps'
values are stacked, summed over the ranks weighted by each rank's share of the global batch (one
all-reduce), and copied to the host (one transfer) at once. The non-finite check happens there
too: a non-finite total loss stops the run with a message naming the first such step and the
steps checked together. The trainer flushes before anything that must see every step logged
(checkpoints, evaluations, the end of an epoch), so no checkpoint is written after a
non-finite step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..errors import DsanError
from . import distributed as ddp


@dataclass
class LoggedStep:
    """A step's fields for the log (``epoch``, ``iter``, ``step``, ``lr``, ``samples``) and,
    once read, its global ``values`` (``loss`` and every part)."""

    fields: dict[str, Any]
    values: dict[str, float] = field(default_factory=dict)

    @property
    def loss(self) -> float:
        return self.values["loss"]


class PendingSteps:
    """Steps whose loss values are still on the device; ``every``: how many to keep before
    :meth:`full` says to read them."""

    def __init__(self, dist: ddp.DistInfo, every: int = 1) -> None:
        self.dist = dist
        self.every = max(1, int(every))
        self._keys: tuple[str, ...] | None = None
        self._rows: list[Tensor] = []
        self._shares: list[float] = []
        self._steps: list[LoggedStep] = []

    def __len__(self) -> int:
        return len(self._steps)

    def full(self) -> bool:
        return len(self._steps) >= self.every

    def add(self, parts: dict[str, Tensor], share: float, **fields: Any) -> list[LoggedStep]:
        """Keep one step (its parts, ``loss`` the total among them); returns steps read on the way (a
        change of the parts' names reads the earlier ones first), usually none."""
        keys = tuple(parts)  # the method's order (the log keeps it)
        done = self.flush() if self._keys is not None and keys != self._keys else []
        self._keys = keys
        self._rows.append(torch.stack([parts[k].detach().reshape(()).float() for k in keys]))
        self._shares.append(float(share))
        self._steps.append(LoggedStep(dict(fields)))
        return done

    def flush(self) -> list[LoggedStep]:
        """Read every pending step (one all-reduce and one transfer); raises :class:`DsanError`
        when a step's total loss is not finite."""
        if not self._steps:
            return []
        keys, steps = self._keys or (), self._steps
        table = torch.stack(self._rows)
        if self.dist.enabled:
            shares = torch.tensor(self._shares, dtype=torch.float64, device=table.device)
            table = ddp.all_reduce_sum(table.double() * shares[:, None], self.dist)
        rows = table.cpu().tolist()
        self._rows, self._shares, self._steps = [], [], []
        for st, row in zip(steps, rows):
            st.values = dict(zip(keys, (float(v) for v in row)))
        bad = next((st for st in steps if not math.isfinite(st.loss)), None)
        if bad is not None:
            first, last = steps[0].fields.get("step"), steps[-1].fields.get("step")
            span = f"step {first}" if first == last else f"steps {first} to {last}"
            raise DsanError(
                f"the loss became {bad.loss} at step {bad.fields.get('step')} ({span} checked together; parts: "
                f"{ {k: round(v, 4) for k, v in bad.values.items() if k != 'loss'} }); lower the learning rate "
                "(--set lr=...) and start a new run directory"
            )
        return steps
