"""The position of a run's training loop and the optimiser state, as the resume file holds them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InputError
from ..models.api import OptimSpec


@dataclass
class LoopState:
    epoch: int = 0  # epoch being run
    iter: int = 0  # next iteration within the epoch
    step: int = 0  # global optimiser steps done
    best_value: float | None = None
    best_step: int | None = None
    best_epoch: int | None = None
    best_model: dict[str, torch.Tensor] | None = None
    train_seconds: float = 0.0
    log_size: int = 0

    def to_state(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "iter": self.iter,
            "step": self.step,
            "best_value": self.best_value,
            "best_step": self.best_step,
            "best_epoch": self.best_epoch,
            "best_model": self.best_model,
            "train_seconds": self.train_seconds,
            "log_size": self.log_size,
        }

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> LoopState:
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__ if k in d})  # type: ignore[arg-type]


def optim_state(specs: list[OptimSpec]) -> list[dict[str, Any]]:
    return [
        {"optimizer": s.optimizer.state_dict(), "scheduler": None if s.scheduler is None else s.scheduler.state_dict()}
        for s in specs
    ]


def load_optim_state(specs: list[OptimSpec], states: list[dict[str, Any]]) -> None:
    if len(states) != len(specs):
        raise InputError("the resume file does not fit this method's optimisers")
    for s, st in zip(specs, states):
        s.optimizer.load_state_dict(st["optimizer"])
        if s.scheduler is not None and st["scheduler"] is not None:
            s.scheduler.load_state_dict(st["scheduler"])


def lrs(specs: list[OptimSpec]) -> list[float]:
    return [float(s.optimizer.param_groups[0]["lr"]) for s in specs]


def state_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
