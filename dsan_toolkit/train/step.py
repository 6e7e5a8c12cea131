"""One optimiser step of a run: precision, the data-parallel wrapper, the loss factor, the optimisers.

:class:`StepRunner` holds the model as the methods' ``loss`` sees it (wrapped in
``DistributedDataParallel`` under a process group, :func:`~dsan_toolkit.train.distributed.wrap_model`),
the mixed-precision setting (:data:`PRECISIONS`: autocast on the forward and the loss, a
``GradScaler`` for fp16) and the method's optimisers. A step queues its work without waiting
for the device: it returns the loss and its parts as detached tensors, which the trainer reads
at its logging cadence (:mod:`~dsan_toolkit.train.steplog`).

``fp32`` (the default) runs exactly the computation of the official code: no autocast, no scaling.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import InputError
from ..models.api import Method, MethodPreset, OptimSpec, TrainBatch
from . import distributed as ddp

PRECISIONS = ("fp32", "bf16", "fp16")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

# a folder: rank 0 writes the gradients of every step (after the all-reduce, before the
# optimisers) as step-NNNNNN.safetensors, named by the unwrapped model's parameter names; a
# debugging aid, used by the tests to compare a data-parallel step with a single-process one
GRAD_DUMP_ENV = "DSAN_GRAD_DUMP"


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse an unknown ``--precision`` and one the device cannot run."""
    if precision not in PRECISIONS:
        raise InputError(f"unknown --precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise InputError(
            f"--precision fp16 needs a CUDA device (float16 autocast with a gradient scaler), not {device}; "
            "use --precision bf16 on the CPU"
        )
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise InputError(f"--precision bf16: {torch.cuda.get_device_name(device)} has no bfloat16 support; use fp16")


class StepRunner:
    """Runs optimiser steps of ``model`` (the unwrapped network) with ``method``'s loss."""

    def __init__(
        self,
        method: Method,
        model: torch.nn.Module,
        preset: MethodPreset,
        specs: list[OptimSpec],
        device: torch.device,
        dist: ddp.DistInfo,
        precision: str = "fp32",
    ) -> None:
        check_precision(precision, device)
        self.method = method
        self.model = model
        self.preset = preset
        self.specs = specs
        self.device = device
        self.dist = dist
        self.precision = precision
        self.net = ddp.wrap_model(model, dist, find_unused_parameters=method.ddp_unused_parameters)
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
        dump = os.environ.get(GRAD_DUMP_ENV)
        self.grad_dump = Path(dump) if dump and dist.is_main else None

    def autocast(self) -> Any:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=AUTOCAST_DTYPES[self.precision])

    def step(self, batch: TrainBatch, share: float, step_no: int) -> dict[str, Tensor]:
        """One optimiser step on this rank's ``share`` of the global batch (already on the
        device); returns the loss parts (``loss`` the total) as detached tensors."""
        for s in self.specs:
            s.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            loss, parts = self.method.loss(self.net, batch, self.preset)
        factor = ddp.loss_factor(share, self.dist)
        scaled = loss * factor if factor != 1.0 else loss
        if self.scaler is not None:
            self.scaler.scale(scaled).backward()
        else:
            scaled.backward()
        if self.grad_dump is not None:
            self._dump_grads(step_no)
        if self.scaler is not None:
            for s in self.specs:
                self.scaler.step(s.optimizer)
            self.scaler.update()
        else:
            for s in self.specs:
                s.optimizer.step()
        for s in self.specs:
            if s.scheduler is not None and s.step_on == "iter":
                s.scheduler.step()
        return parts

    def _dump_grads(self, step_no: int) -> None:
        from safetensors.torch import save_file

        if self.scaler is not None:
            for s in self.specs:
                self.scaler.unscale_(s.optimizer)
        grads = {
            n: p.grad.detach().float().cpu().contiguous()
            for n, p in self.model.named_parameters()
            if p.grad is not None
        }
        assert self.grad_dump is not None
        self.grad_dump.mkdir(parents=True, exist_ok=True)
        save_file(grads, str(self.grad_dump / f"step-{step_no:06d}.safetensors"))

    def state(self) -> dict[str, Any] | None:
        """The gradient scaler's state (fp16), for the resume file."""
        return None if self.scaler is None else self.scaler.state_dict()

    def load_state(self, state: dict[str, Any] | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
