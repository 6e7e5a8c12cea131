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
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
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
from .loopstate import LoopState, load_optim_state, lrs, optim_state, state_copy
from .runlog import RunLog
from .samples import make_train_samples
from .setup import IN_TRAINING, LAST, build_model, seed_everything
from .step import StepRunner
from .steplog import LoggedStep, PendingSteps
from .testset import TestSet, build_test_set
from .valselect import selection_eval

# steps between two reads of the losses from a GPU (each read waits for the device)
LOG_EVERY_CUDA = 25


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
    ``val_ids`` the validation videos of a best-on-val run (held out of training);
    ``log_every`` reads the steps' losses from the device every so many steps (0: every step on
    the CPU, every :data:`LOG_EVERY_CUDA` steps on a GPU; checkpoints, evaluations and epoch
    ends read them too)."""

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
        log_every: int = 0,
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
        self.log_every = int(log_every) or (LOG_EVERY_CUDA if device.type == "cuda" else 1)

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
        self.iters_per_epoch = self.plan.steps_per_epoch()
        self.specs = build_optimizers(self.method, self.model, preset, self.plan)
        # under a process group the model is wrapped (DDP: rank 0's weights on every rank);
        # self.model stays the network itself: checkpoints, state dicts, evaluations
        self.runner = StepRunner(self.method, self.model, preset, self.specs, self.device, self.dist, cfg.precision)
        self.pending = PendingSteps(self.dist, self.log_every)

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
            "optim": optim_state(self.specs),
            "rng": rng_state(),
        }
        if self.runner.state() is not None:
            state["scaler"] = self.runner.state()
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
        load_optim_state(self.specs, state["optim"])
        set_rng_state(state["rng"])
        self.runner.load_state(state.get("scaler"))
        self.state = LoopState.from_state(state["loop"])
        self.log.truncate(int(self.state.log_size or 0))
        return True

    # -- evaluation during training (best-on-test, best-on-val) ---------------------------
    def _maybe_eval(self, *, end_of_epoch: bool) -> None:
        if not self._eval_due(end_of_epoch=end_of_epoch):
            return
        i = self.state.iter - 1
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
                self.state.best_model = state_copy(self.model)
        self.model.train()

    def _reload_best(self) -> None:
        if self.cfg.select not in IN_TRAINING or not self.preset.reload_best_each_epoch:
            return
        if self.dist.is_main and self.state.best_model is not None:
            self.model.load_state_dict(self.state.best_model)
        ddp.broadcast_module(self.model, self.dist)

    # -- the step log ----------------------------------------------------------------------
    def _flush(self, task: str, progress: Listener | None, losses: list[float]) -> None:
        """Read the pending steps' losses (one transfer) and write their log lines."""
        done = self.pending.flush()
        self._write_steps(done, task, progress, losses)

    def _write_steps(self, done: list[LoggedStep], task: str, progress: Listener | None, losses: list[float]) -> None:
        for st in done:
            losses.append(st.loss)
            self.log.write("step", **st.fields, loss=st.loss, losses=st.values)
        if done and progress is not None:
            progress(ProgressEvent(ADVANCE, task, advance=len(done), text=f"loss {done[-1].loss:.4f}"))

    def _eval_due(self, *, end_of_epoch: bool) -> bool:
        if self.cfg.select not in IN_TRAINING:
            return False
        every = self.cfg.eval_every
        i = self.state.iter - 1  # 0-based index of the iteration just done
        return (end_of_epoch and every == 0) or (not end_of_epoch and every > 0 and i > 0 and i % every == 0)

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
                device=self.device,
            ):
                parts = self.runner.step(batch, share, self.state.step + 1)
                self.state.iter += 1
                self.state.step += 1
                n = int(round(batch.batch_size / share)) if share else batch.batch_size
                samples_done += n
                fields = {"epoch": e, "iter": self.state.iter - 1, "step": self.state.step, "lr": lrs(self.specs)}
                done = self.pending.add(parts, share, **fields, samples=n)
                self._write_steps(done, task, progress, losses)
                checkpoint = (
                    self.checkpoint_every
                    and self.state.step % self.checkpoint_every == 0
                    and self.state.iter < len(batches)
                )
                stop = (
                    self.stop_after_steps is not None
                    and self.state.step >= self.stop_after_steps
                    and self.state.iter < len(batches)
                )
                if checkpoint or stop or self.pending.full() or self._eval_due(end_of_epoch=False):
                    self._flush(task, progress, losses)  # every step is logged (and checked) before them
                self._maybe_eval(end_of_epoch=False)
                if checkpoint:
                    self.save_resume()
                if stop:
                    self.state.train_seconds += time.perf_counter() - t0
                    self.save_resume()
                    return False
            self._flush(task, progress, losses)
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
            ddp.sync_buffers(self.model, self.dist)  # DDP syncs them before each forward; after the last one too
            if self.dist.is_main:
                save_weights(self.model, self.ckpt_dir / "last.safetensors", self.checkpoint_meta(LAST))
                if last_epoch:
                    self.last_model = state_copy(self.model)
            self._reload_best()
            self.state.epoch += 1
            self.state.iter = 0
            if not last_epoch:
                self.save_resume()
                if self.stop_after_steps is not None and self.state.step >= self.stop_after_steps:
                    return False
            ddp.barrier(self.dist)
        return True
