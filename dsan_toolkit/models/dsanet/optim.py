"""DSANet's optimisers, as the official training scripts build and step them.

- :class:`StableAdamW` (the normality branch's optimiser, official ``utils/StableAdamW.py``):
  AdamW with decoupled weight decay applied first (``p *= 1 - lr * wd``), optional AMSGrad, and
  a per-tensor update clip: the step of each tensor is divided by
  ``max(1, RMS(grad / denom) / clip_threshold)``. Same arithmetic as the official loop over
  parameters, done with ``torch._foreach_*`` kernels over all tensors at once.
- :class:`WarmCosineSchedule` (official ``WarmCosineScheduler``): a table of
  ``warmup_iters`` values ``linspace(start, base, warmup_iters)`` followed by the cosine
  ``final + (base - final) / 2 * (1 + cos(pi * i / n))`` for ``i < n = total - warmup``; it *sets*
  every group's lr to the table entry (``final`` past the end). Created at entry 0, so the first
  optimiser step runs at lr = ``start`` (0: it only updates the moment estimates).
- :func:`build_optimizers`: main AdamW (all trainable parameters outside the normality branch,
  lr, weight decay 0.01) with ``CosineAnnealingLR(T_max=epochs)`` stepped per epoch; the
  normality branch's StableAdamW (lr, wd 1e-4, amsgrad, eps 1e-10) with the warm-up cosine
  schedule stepped per iteration, sized (official) for ``len(normal_loader) + len(anomaly_loader)``
  iterations per epoch on UCF, i.e. about twice the iterations that run (``len(train_loader)`` on
  XD); see :func:`refiner_total_iters`. The official loop steps the main optimiser, then the
  refiner's, then the refiner's schedule.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler

from ...errors import InputError
from ..api import OptimSpec
from .presets import DSANetPreset


class StableAdamW(Optimizer):
    """AdamW + AMSGrad option + per-tensor RMS update clipping (see the module docstring)."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        clip_threshold: float = 1.0,
    ) -> None:
        if lr < 0 or eps < 0 or weight_decay < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise InputError(
                f"invalid StableAdamW settings lr={lr} betas={betas} eps={eps} weight_decay={weight_decay}"
            )
        defaults = dict(
            lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, clip_threshold=clip_threshold
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._step_group(group)
        return loss

    def _state(self, p: Tensor, amsgrad: bool) -> dict[str, Any]:
        state = self.state[p]
        if len(state) == 0:
            state["step"] = torch.zeros((), dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
            if amsgrad:
                state["max_exp_avg_sq"] = torch.zeros_like(p)
        return state

    def _step_group(self, group: dict[str, Any]) -> None:
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        if any(p.grad.is_sparse for p in params):
            raise RuntimeError("StableAdamW does not support sparse gradients")
        lr, wd, eps, amsgrad = group["lr"], group["weight_decay"], group["eps"], group["amsgrad"]
        beta1, beta2 = group["betas"]
        grads = [p.grad for p in params]
        states = [self._state(p, amsgrad) for p in params]
        torch._foreach_mul_(params, 1 - lr * wd)
        steps = []
        for s in states:
            s["step"] += 1
            steps.append(int(s["step"].item()))
        bc1 = [1 - beta1**t for t in steps]
        bc2_sqrt = [math.sqrt(1 - beta2**t) for t in steps]
        exp_avg = [s["exp_avg"] for s in states]
        exp_avg_sq = [s["exp_avg_sq"] for s in states]
        torch._foreach_mul_(exp_avg, beta1)
        torch._foreach_add_(exp_avg, grads, alpha=1 - beta1)
        torch._foreach_mul_(exp_avg_sq, beta2)
        torch._foreach_addcmul_(exp_avg_sq, grads, grads, value=1 - beta2)
        second = exp_avg_sq
        if amsgrad:
            second = [s["max_exp_avg_sq"] for s in states]
            torch._foreach_maximum_(second, exp_avg_sq)
        denom = torch._foreach_sqrt(second)
        torch._foreach_div_(denom, bc2_sqrt)
        torch._foreach_add_(denom, eps)
        norms = torch.stack(torch._foreach_norm(torch._foreach_div(grads, denom), 2))
        sizes = torch.tensor([p.numel() for p in params], dtype=norms.dtype, device=norms.device)
        clip = (norms / sizes.sqrt() / group["clip_threshold"]).clamp(min=1.0).tolist()  # one host sync per group
        step_sizes = [-(lr / b / c) for b, c in zip(bc1, clip)]
        torch._foreach_addcdiv_(params, exp_avg, denom, step_sizes)


class WarmCosineSchedule(LRScheduler):
    """Linear warm-up then cosine decay, as a table indexed by the iteration (see the module docstring)."""

    def __init__(
        self,
        optimizer: Optimizer,
        base_value: float,
        final_value: float,
        total_iters: int,
        warmup_iters: int = 0,
        start_warmup_value: float = 0.0,
    ) -> None:
        if total_iters < 1 or warmup_iters < 0:
            raise InputError(
                f"WarmCosineSchedule needs total_iters >= 1 and warmup_iters >= 0, got {total_iters}, {warmup_iters}"
            )
        self.base_value, self.final_value = float(base_value), float(final_value)
        self.total_iters, self.warmup_iters = int(total_iters), int(warmup_iters)
        self.start_warmup_value = float(start_warmup_value)
        self.schedule = self._table()
        super().__init__(optimizer)

    def _table(self) -> np.ndarray:
        warm = np.linspace(self.start_warmup_value, self.base_value, self.warmup_iters)
        iters = np.arange(max(self.total_iters - self.warmup_iters, 0))
        n = max(len(iters), 1)
        cosine = self.final_value + 0.5 * (self.base_value - self.final_value) * (1 + np.cos(np.pi * iters / n))
        return np.concatenate((warm, cosine))

    def lr_at(self, it: int) -> float:
        if it >= self.total_iters or it >= len(self.schedule):
            return self.final_value
        return float(self.schedule[it])

    def get_lr(self) -> list[float]:  # type: ignore[override]
        return [self.lr_at(self.last_epoch) for _ in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """Plain numbers only (the table is rebuilt from them), so checkpoints need no pickling."""
        return {k: v for k, v in super().state_dict().items() if k != "schedule"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.schedule = self._table()


def refiner_total_iters(preset: DSANetPreset, iters_per_epoch: int, schedule_iters_per_epoch: int | None = None) -> int:
    """Iterations the refiner's schedule is sized for, ``epochs *`` per epoch:

    - ``refiner_schedule="loaders"`` (official): ``schedule_iters_per_epoch`` when given (the sum
      of the loaders' lengths, e.g. 125 + 126 on UCF), else ``2 * iters_per_epoch`` for paired
      batches (two loaders) and ``iters_per_epoch`` for mixed ones;
    - ``"steps"``: ``iters_per_epoch``, the steps that run.
    """
    if preset.refiner_schedule == "steps":
        per_epoch = iters_per_epoch
    elif schedule_iters_per_epoch is not None:
        per_epoch = schedule_iters_per_epoch
    else:
        per_epoch = (2 if preset.batch_composition == "paired" else 1) * iters_per_epoch
    return max(1, preset.epochs * int(per_epoch))


def build_optimizers(
    model: nn.Module,
    preset: DSANetPreset,
    iters_per_epoch: int,
    *,
    schedule_iters_per_epoch: int | None = None,
) -> list[OptimSpec]:
    """``[main AdamW + per-epoch cosine, refiner StableAdamW + per-iteration warm-up cosine]``,
    in the order the official loop steps them."""
    if iters_per_epoch < 1:
        raise InputError(f"iters_per_epoch must be >= 1, got {iters_per_epoch}")
    refiner = list(model.refiner_parameters())  # type: ignore[operator]
    main = list(model.main_parameters())  # type: ignore[operator]
    # foreach: one multi-tensor pass on every device (torch only picks it by default on GPUs); same arithmetic
    opt_main = torch.optim.AdamW(main, lr=preset.lr, weight_decay=preset.weight_decay, foreach=True)
    sched_main = CosineAnnealingLR(opt_main, T_max=preset.epochs)
    opt_ref = StableAdamW(
        refiner,
        lr=preset.lr,
        betas=preset.refiner_betas,
        weight_decay=preset.refiner_weight_decay,
        amsgrad=preset.refiner_amsgrad,
        eps=preset.refiner_eps,
        clip_threshold=preset.refiner_clip_threshold,
    )
    sched_ref = WarmCosineSchedule(
        opt_ref,
        base_value=preset.lr,
        final_value=preset.lr * preset.refiner_final_lr_ratio,
        total_iters=refiner_total_iters(preset, iters_per_epoch, schedule_iters_per_epoch),
        warmup_iters=preset.refiner_warmup_iters,
    )
    return [
        OptimSpec(optimizer=opt_main, scheduler=sched_main, step_on="epoch", name="main"),
        OptimSpec(optimizer=opt_ref, scheduler=sched_ref, step_on="iter", name="refiner"),
    ]


__all__ = ["StableAdamW", "WarmCosineSchedule", "build_optimizers", "refiner_total_iters"]
