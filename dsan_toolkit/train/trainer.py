"""One run's trainer: the data, model and optimisers of a run, one optimiser step, the epochs.

:class:`Trainer` is built from a resolved :class:`~dsan_toolkit.train.checkpoint.RunConfig`
(:func:`~dsan_toolkit.train.run.train` does that), sets up the cached training samples, the
batch plan, the test set, the model and the method's optimisers (:func:`build_optimizers`),
and runs epochs of official batches (:meth:`Trainer.run`), with resumable checkpoints
(``checkpoints/resume.safetensors``: model, optimisers, schedulers, RNGs, :class:`LoopState`)
and, for ``best-on-test`` / ``best-on-val`` selection, evaluations of the test split / the
validation videos during training (:func:`~dsan_toolkit.train.valselect.selection_eval`). The
validation videos (``val_ids``) never enter training: samples, batches, input normalisation.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DsanError, InputError
from ..manifest.schema import Manifest
from ..models.api import Method, MethodPreset, OptimSpec
from ..models.input_norm import fit_input_norm
from ..progress import ADVANCE, DONE, TASK, Listener, ProgressEvent
from ..store.protocol import FeatureStoreLike
from . import distributed as ddp
from .batching import BatchPlan, iterate_batches
from .checkpoint import (
    RunConfig,
    config_json,
    load_resume,
    rng_state,
    save_resume,
    save_weights,
    set_rng_state,
)
from .runlog import RunLog
from .samples import make_train_samples
from .setup import IN_TRAINING, LAST, build_model, seed_everything
from .testset import TestSet, build_test_set
from .valselect import selection_eval


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


def _optim_state(specs: list[OptimSpec]) -> list[dict[str, Any]]:
    return [
        {"optimizer": s.optimizer.state_dict(), "scheduler": None if s.scheduler is None else s.scheduler.state_dict()}
        for s in specs
    ]


def _load_optim_state(specs: list[OptimSpec], states: list[dict[str, Any]]) -> None:
    if len(states) != len(specs):
        raise InputError("the resume file does not fit this method's optimisers")
    for s, st in zip(specs, states):
        s.optimizer.load_state_dict(st["optimizer"])
        if s.scheduler is not None and st["scheduler"] is not None:
            s.scheduler.load_state_dict(st["scheduler"])


def _lrs(specs: list[OptimSpec]) -> list[float]:
    return [float(s.optimizer.param_groups[0]["lr"]) for s in specs]


def _trainable_params(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    seen: set[int] = set()
    out = []
    for p in model.parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def _state_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def build_optimizers(method: Method, model: torch.nn.Module, preset: MethodPreset, plan: BatchPlan) -> list[OptimSpec]:
    """The method's optimisers for the steps an epoch runs; a per-iteration schedule is sized
    as the official code does, for the sum of the official loaders' lengths
    (``schedule_iters_per_epoch``: twice the steps run on paired batches, an official quirk)."""
    return method.optimizers(
        model, preset, plan.steps_per_epoch(), schedule_iters_per_epoch=int(sum(plan.loader_lengths()))
    )


class Trainer:
    """Holds everything of one run; :meth:`run` trains to the end (or ``stop_after_steps``).

    ``out`` is the run directory; ``cache`` the training samples' cache mode (``auto``,
    ``memory``, ``none``); ``clip_weights`` a local CLIP weight file for the text encoder;
    ``eval_batch`` the chunks per forward of test-set evaluations; ``checkpoint_every`` writes
    the resume state every so many steps; ``stop_after_steps`` stops early (resumable);
    ``val_ids`` the validation videos of a best-on-val run (held out of training)."""

    def __init__(
        self,
        cfg: RunConfig,
        method: Method,
        manifest: Manifest,
        store: FeatureStoreLike,
        device: torch.device,
        dist: ddp.DistInfo,
        *,
        out: Path,
        cache: str = "auto",
        clip_weights: Path | None = None,
        eval_batch: int = 64,
        checkpoint_every: int = 0,
        stop_after_steps: int | None = None,
        val_ids: tuple[str, ...] = (),
    ) -> None:
        self.cfg = cfg
        self.method = method
        self.preset = cfg.preset
        self.manifest = manifest
        self.store = store
        self.device = device
        self.dist = dist
        self.out = Path(out)
        self.cache = cache
        self.clip_weights = clip_weights
        self.eval_batch = eval_batch
        self.checkpoint_every = checkpoint_every
        self.stop_after_steps = stop_after_steps
        self.val_ids = tuple(val_ids)
        self.log = RunLog(self.out / "log.jsonl", dist.is_main)
        self.ckpt_dir = self.out / "checkpoints"
        self.state = LoopState()

    # -- setup ---------------------------------------------------------------------------
    def setup(self) -> None:
        cfg, preset = self.cfg, self.preset
        seed_everything(cfg.seed, cfg.deterministic)
        classes = self.manifest.info.classes
        held_out = set(self.val_ids)
        train_ids = [v.id for v in self.manifest.split("train") if v.id not in held_out]
        self.samples = make_train_samples(
            self.store, self.manifest, train_ids, cfg.train_crops, classes, preset.visual_length, cache=self.cache
        )
        self.plan = BatchPlan.create(
            self.samples,
            preset.batch_composition,
            preset.batch_size,
            cfg.seed,
            drop_last=bool(preset.drop_last) if preset.batch_composition == "mixed" else True,
        )
        self.test: TestSet = build_test_set(self.store, [v.id for v in self.manifest.split("test")], cfg.test_crop)
        self.val: TestSet | None = build_test_set(self.store, self.val_ids, cfg.test_crop) if self.val_ids else None
        seed_everything(cfg.seed, cfg.deterministic)  # model init as the official scripts: right after seeding
        self.model = build_model(self.method, cfg, self.manifest, self.device, self.clip_weights)
        fit_input_norm(self.model, self.store, train_ids, cfg.train_crops)  # no-op unless the preset asks for one
        ddp.broadcast_module(self.model, self.dist)
        self.iters_per_epoch = self.plan.steps_per_epoch()
        self.specs = build_optimizers(self.method, self.model, preset, self.plan)
        self.params = _trainable_params(self.model)

    # -- checkpoints ---------------------------------------------------------------------
    def checkpoint_meta(self, selection: str, **extra: Any) -> dict[str, Any]:
        return {
            "method": self.cfg.method,
            "config_hash": self.cfg.hash,
            "config": json.dumps(config_json(self.cfg)),
            "selection": selection,
            "epoch": str(self.state.epoch),
            "step": str(self.state.step),
            **{k: str(v) for k, v in extra.items()},
        }

    def save_resume(self) -> None:
        if not self.dist.is_main:
            return
        # the event is logged once the file is in place; the size a resumed run cuts the log
        # back to includes it
        line = self.log.line("checkpoint", epoch=self.state.epoch, step=self.state.step, files=["resume.safetensors"])
        self.state.log_size = self.log.size() + len(line)
        state = {
            "loop": self.state.to_state(),
            "model": self.model.state_dict(),
            "optim": _optim_state(self.specs),
            "rng": rng_state(),
        }
        save_resume(self.ckpt_dir / "resume.safetensors", state, self.cfg.hash)
        self.log.append(line)

    def try_resume(self) -> bool:
        path = self.ckpt_dir / "resume.safetensors"
        if not path.is_file():
            return False
        state, h = load_resume(path)
        if h != self.cfg.hash:
            raise InputError(f"{path} belongs to another configuration (config {h[:12]}); use a new --out")
        self.model.load_state_dict(state["model"])
        _load_optim_state(self.specs, state["optim"])
        set_rng_state(state["rng"])
        self.state = LoopState.from_state(state["loop"])
        self.log.truncate(int(self.state.log_size or 0))
        return True

    # -- evaluation during training (best-on-test, best-on-val) ---------------------------
    def _maybe_eval(self, *, end_of_epoch: bool) -> None:
        if self.cfg.select not in IN_TRAINING:
            return
        every = self.cfg.eval_every
        i = self.state.iter - 1  # 0-based index of the iteration just done
        due = (end_of_epoch and every == 0) or (not end_of_epoch and every > 0 and i > 0 and i % every == 0)
        if not due:
            return
        if self.dist.is_main:
            metrics, value = selection_eval(
                self.method,
                self.model,
                self.manifest,
                select=self.cfg.select,
                metric=self.cfg.selection_metric,
                test=self.test,
                val=self.val,
                length=self.preset.visual_length,
                device=self.device,
                batch=self.eval_batch,
            )
            best = self.state.best_value is None or value > self.state.best_value
            self.log.write(
                "eval",
                epoch=self.state.epoch,
                iter=i,
                step=self.state.step,
                metrics=metrics,
                selection_metric=self.cfg.selection_metric,
                value=value,
                best=best,
            )
            if best:
                self.state.best_value = float(value)
                self.state.best_step = self.state.step
                self.state.best_epoch = self.state.epoch
                self.state.best_model = _state_copy(self.model)
        self.model.train()

    def _reload_best(self) -> None:
        if self.cfg.select not in IN_TRAINING or not self.preset.reload_best_each_epoch:
            return
        if self.dist.is_main and self.state.best_model is not None:
            self.model.load_state_dict(self.state.best_model)
        ddp.broadcast_module(self.model, self.dist)

    # -- one step ------------------------------------------------------------------------
    def step(self, batch: Any, share: float) -> dict[str, float]:
        batch = batch.to(self.device)
        for s in self.specs:
            s.optimizer.zero_grad(set_to_none=True)
        loss, parts = self.method.loss(self.model, batch, self.preset)
        if not torch.isfinite(loss):
            raise DsanError(
                f"the loss became {float(loss)} at step {self.state.step + 1} (parts: "
                f"{ {k: round(float(v), 4) for k, v in parts.items()} }); lower the learning rate (--set lr=...) "
                "and start a new run directory"
            )
        loss.backward()
        ddp.all_reduce_gradients(self.params, share, self.dist)
        for s in self.specs:
            s.optimizer.step()
        for s in self.specs:
            if s.scheduler is not None and s.step_on == "iter":
                s.scheduler.step()
        ddp.sync_buffers(self.model, self.dist)
        logged = {"loss": float(loss.detach())}
        logged.update({f"losses.{k}": float(v) for k, v in parts.items()})
        return ddp.all_reduce_mean(logged, share, self.dist)

    # -- run -----------------------------------------------------------------------------
    def run(self, on_event: Listener | None = None) -> bool:
        """Train until the end; False when stopped early by ``stop_after_steps``. ``on_event``
        receives one counted task per epoch (see :func:`~dsan_toolkit.train.run.train`)."""
        progress = on_event
        preset = self.preset
        self.model.train()
        while self.state.epoch < preset.epochs:
            e = self.state.epoch
            batches = self.plan.epoch(e)
            t0 = time.perf_counter()
            losses: list[float] = []
            samples_done = 0
            task = f"epoch {e + 1}/{preset.epochs}"
            if progress is not None:
                progress(ProgressEvent(TASK, task, total=len(batches), completed=self.state.iter))
            for batch, share in iterate_batches(
                self.samples,
                batches[self.state.iter :],
                self.dist.rank,
                self.dist.world_size,
                pin_memory=self.device.type == "cuda",
            ):
                logged = self.step(batch, share)
                self.state.iter += 1
                self.state.step += 1
                n = int(round(batch.batch_size / share)) if share else batch.batch_size
                samples_done += n
                losses.append(logged["loss"])
                self.log.write(
                    "step",
                    epoch=e,
                    iter=self.state.iter - 1,
                    step=self.state.step,
                    lr=_lrs(self.specs),
                    samples=n,
                    loss=logged["loss"],
                    losses={k[7:]: v for k, v in logged.items() if k.startswith("losses.")},
                )
                if progress is not None:
                    progress(ProgressEvent(ADVANCE, task, advance=1, text=f"loss {logged['loss']:.4f}"))
                self._maybe_eval(end_of_epoch=False)
                if (
                    self.checkpoint_every
                    and self.state.step % self.checkpoint_every == 0
                    and self.state.iter < len(batches)
                ):
                    self.save_resume()
                if (
                    self.stop_after_steps is not None
                    and self.state.step >= self.stop_after_steps
                    and self.state.iter < len(batches)
                ):
                    self.state.train_seconds += time.perf_counter() - t0
                    self.save_resume()
                    return False
            for s in self.specs:
                if s.scheduler is not None and s.step_on == "epoch":
                    s.scheduler.step()
            self._maybe_eval(end_of_epoch=True)
            secs = time.perf_counter() - t0
            self.state.train_seconds += secs
            self.log.write(
                "epoch",
                epoch=e,
                steps=len(batches),
                loss=float(np.mean(losses)) if losses else None,
                seconds=secs,
                samples_per_s=samples_done / secs if secs > 0 else None,
            )
            if progress is not None:
                mean = float(np.mean(losses)) if losses else float("nan")
                progress(
                    ProgressEvent(
                        DONE,
                        task,
                        text=(
                            f"{task}: loss {mean:.4f}, {len(batches)} steps, {secs:.1f} s"
                            + (f", {samples_done / secs:.0f} samples/s" if secs > 0 else "")
                        ),
                        fields={"epoch": e, "loss": mean, "seconds": secs},
                    )
                )
            last_epoch = e + 1 == preset.epochs
            if self.dist.is_main:
                save_weights(self.model, self.ckpt_dir / "last.safetensors", self.checkpoint_meta(LAST))
                if last_epoch:
                    self.last_model = _state_copy(self.model)
            self._reload_best()
            self.state.epoch += 1
            self.state.iter = 0
            if not last_epoch:
                self.save_resume()
                if self.stop_after_steps is not None and self.state.step >= self.stop_after_steps:
                    return False
            ddp.barrier(self.dist)
        return True
