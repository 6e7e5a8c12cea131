"""The training loop: one method, one feature store, one run directory.

:func:`train` resolves a :class:`TrainOptions` into a hashed :class:`RunConfig`, checks that
the store fits (manifest, feature dimension, crops), builds the cached data, the model and the
method's optimisers, then runs epochs of official batches, writing the run directory described
in ``docs/training.md`` (rank 0 only under DDP).

Model selection (``select``):

- ``last`` (default, honest): no test-set evaluation during training; the model after the
  last epoch is evaluated once at the end.
- ``best-on-test`` (the official scripts): the test split is evaluated during training
  (``preset.eval_every_iters`` iterations, or after each epoch when ``None``), the weights
  with the best ``preset.select_metric`` are kept, and, as the official loops do, loaded
  back into the model at the end of every epoch (``preset.reload_best_each_epoch``;
  optimisers and schedulers keep their state). Both the last and the best model are
  evaluated at the end and both numbers are recorded, each labelled.

Resuming: every checkpoint writes ``checkpoints/resume.safetensors`` (model, optimisers,
schedulers, RNGs, loop position, best-so-far); running the same command on an unfinished run
directory continues from it and gives the same result as an uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import to_dict
from ..errors import DsanError, InputError
from ..manifest.schema import Manifest
from ..models.api import Method, MethodPreset, OptimSpec
from ..models.registry import get_method
from . import distributed as ddp
from .checkpoint import (
    RunConfig,
    atomic_write_json,
    config_json,
    load_resume,
    rng_state,
    run_config_from_json,
    save_resume,
    save_weights,
    set_rng_state,
    with_typed_preset,
)
from ..models.input_norm import fit_input_norm
from .data import BatchPlan, TestSet, build_test_set, iterate_batches, make_train_samples
from .environment import capture_environment, now_iso
from .store_identity import absolute_store_path
from ..progress import ADVANCE, DONE, TASK, Listener, ProgressEvent, emitter, message

logger = logging.getLogger(__name__)

SELECTIONS = ("last", "best-on-test")
LAST = "last"
BEST = "best-on-test"


@dataclass(frozen=True)
class TrainOptions:
    """What a user asks for (``dsan train`` options); resolved into a :class:`RunConfig`."""

    method: str
    features: Path
    out: Path
    dataset: str | None = None
    preset: str | None = None
    seed: int | None = None
    epochs: int | None = None
    device: str = "cpu"
    select: str = LAST
    deterministic: bool = False
    test_crop: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    checkpoint_every: int = 0
    stop_after_steps: int | None = None
    clip_weights: Path | None = None
    clip_model: str | None = None
    progress: bool = True
    eval_batch: int = 64
    cache: str = "auto"


@dataclass
class TrainResult:
    run_dir: Path
    config: RunConfig
    finished: bool
    metrics: dict[str, Any]
    steps: int


# ---------------------------------------------------------------------------------------
# resolution and checks


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise InputError(f"invalid device {device!r} (use cpu, cuda, cuda:N or auto)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but CUDA is not available here")
    return ddp.resolve_rank_device(str(dev))


def open_feature_store(path: Path) -> Any:
    from ..store import open_store

    return open_store(Path(path))


def check_store_fits(store: Any, manifest: Manifest, feature_dim: int, *, test_crop: int,
                     splits: tuple[str, ...] = ("train", "test")) -> None:
    """Refuse a store whose manifest, feature dimension or crops do not fit (clear messages)."""
    smf = store.manifest
    problems = []
    if smf.content_hash() != manifest.content_hash():
        if smf.class_codes != manifest.class_codes:
            problems.append(
                f"class tables differ: store {list(smf.class_codes)} vs dataset {list(manifest.class_codes)}"
            )
        if smf.name != manifest.name:
            problems.append(f"the store was made for dataset {smf.name!r}, not {manifest.name!r}")
        if not problems:
            problems.append("the store's embedded manifest differs from the dataset's manifest (other videos or labels)")
    if int(store.feature_dim) != int(feature_dim):
        problems.append(
            f"feature dimension {store.feature_dim} does not fit the preset's {feature_dim} "
            "(features of another backbone?)"
        )
    crops = [int(c) for c in store.crop_ids]
    if test_crop not in crops:
        problems.append(
            f"the store has crops {crops} but the test crop is {test_crop} (the dataset's official test crop; "
            "pass --test-crop to choose another)"
        )
    if problems:
        raise InputError(f"the feature store {store_path(store)} does not fit:\n  - " + "\n  - ".join(problems))
    have = set(store.video_ids())
    for split in splits:
        ids = [v.id for v in manifest.split(split)]
        if not ids:
            raise InputError(f"the dataset {manifest.name!r} has no {split} videos")
        missing = [v for v in ids if v not in have]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise InputError(
                f"the feature store lacks features of {len(missing)} {split} videos ({shown}); "
                "finish the extraction (`dsan extract` resumes) or check it with `dsan store check`"
            )


def store_path(store: Any) -> str:
    return str(getattr(store, "path", "") or "")


def resolve_manifest_for(store: Any, dataset: str | None) -> Manifest:
    if dataset is None:
        return store.manifest
    from ..manifest.builtin import resolve_manifest

    return resolve_manifest(dataset)


def resolve_preset(method: Method, manifest: Manifest, opts: TrainOptions) -> tuple[str, MethodPreset]:
    name = opts.preset
    if name is None:
        if manifest.name in method.presets:
            name = manifest.name
        else:
            raise InputError(
                f"no preset named after dataset {manifest.name!r} for method {method.name!r}; "
                f"choose one with --preset ({', '.join(sorted(method.presets))})"
            )
    changes = dict(opts.overrides)
    if opts.epochs is not None:
        changes["epochs"] = int(opts.epochs)
    if opts.seed is not None:
        changes["seed"] = int(opts.seed)
    preset = method.get_preset(name, **changes)
    if method.trainable and preset.epochs < 1:
        raise InputError("epochs must be at least 1")
    return name, preset


def _store_config_hash(store: Any) -> str | None:
    attrs = getattr(store, "attrs", {}) or {}
    v = attrs.get("config_hash")
    return None if v is None else str(v)


def _backbone(store: Any) -> dict[str, Any]:
    attrs = getattr(store, "attrs", {}) or {}
    bb = dict(attrs.get("backbone") or {})
    if "random_weights" not in bb and "random_weights" in attrs:
        bb["random_weights"] = bool(attrs["random_weights"])
    return bb


def resolve_config(opts: TrainOptions, store: Any, manifest: Manifest, method: Method,
                   world_size: int) -> RunConfig:
    if opts.select not in SELECTIONS:
        raise InputError(f"unknown --select {opts.select!r}; choose one of {', '.join(SELECTIONS)}")
    if not method.trainable and opts.select != LAST:
        raise InputError(f"method {method.name!r} is training-free: there is nothing to select (use --select last)")
    preset_name, preset = resolve_preset(method, manifest, opts)
    test_crop = manifest.info.test_crop if opts.test_crop is None else int(opts.test_crop)
    check_store_fits(store, manifest, int(preset.feature_dim), test_crop=test_crop,
                     splits=("train", "test") if method.trainable else ("test",))
    return RunConfig(
        method=method.name,
        preset_name=preset_name,
        preset=preset,
        dataset=manifest.name,
        manifest_hash=manifest.content_hash(),
        store=absolute_store_path(opts.features),
        store_hash=store.content_hash(),
        store_config_hash=_store_config_hash(store),
        feature_dim=int(store.feature_dim),
        train_crops=tuple(int(c) for c in store.crop_ids),
        test_crop=test_crop,
        seed=int(preset.seed),
        select=opts.select,
        eval_every=int(preset.eval_every_iters or 0),
        selection_metric=str(preset.select_metric),
        deterministic=bool(opts.deterministic),
        world_size=int(world_size),
        backbone=_backbone(store),
        text_encoder=text_encoder_spec(_backbone(store), opts.clip_weights, opts.clip_model) if method.needs_clip else {},
        device=str(opts.device),
    )


# ---------------------------------------------------------------------------------------
# determinism, CLIP, model


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def text_encoder_spec(backbone: dict[str, Any], clip_weights: Path | None = None,
                      clip_model: str | None = None) -> dict[str, Any]:
    """Which CLIP text encoder a run uses: the store's image backbone's own (same model and
    weights), a local weight file (``--clip-weights``), or, for stores whose backbone is not an
    open_clip model (synthetic features), the tiny random-init text tower (marked random).
    ``clip_model`` forces an architecture (random-init unless ``clip_weights`` is given)."""
    from ..clip import TINY_MODEL, list_backbones

    if clip_model is not None:
        if clip_model not in list_backbones():
            raise InputError(f"unknown open_clip model {clip_model!r} for --clip-model")
        if clip_weights is None:
            return {"model": clip_model, "pretrained": None, "random_weights": True, "seed": 0,
                    "reason": "--clip-model without weights"}
        backbone = {"model": clip_model}
    model = str(backbone.get("model") or "ViT-B-16")
    if model not in list_backbones():
        return {"model": TINY_MODEL, "pretrained": None, "random_weights": True, "seed": 0,
                "reason": f"store backbone {model!r} is not an open_clip model"}
    if clip_weights is not None:
        from ..config import sha256_file

        return {"model": model, "weights_file": str(clip_weights), "weights_sha256": sha256_file(clip_weights),
                "random_weights": False}
    if backbone.get("random_weights") or model == TINY_MODEL:
        return {"model": model, "pretrained": None, "random_weights": True, "seed": int(backbone.get("seed") or 0)}
    if backbone.get("weights_file"):
        return {"model": model, "weights_file": str(backbone["weights_file"]),
                "weights_sha256": backbone.get("weights_sha256"), "random_weights": False}
    return {"model": model, "pretrained": backbone.get("pretrained") or "openai", "random_weights": False}


def load_clip_for(spec: dict[str, Any], device: torch.device, clip_weights: Path | None = None) -> Any:
    """Build the CLIP model of a :func:`text_encoder_spec` (``clip_weights`` overrides the file)."""
    from ..clip import create_clip

    model = str(spec["model"])
    weights = clip_weights or spec.get("weights_file")
    if weights is not None:
        if not Path(str(weights)).is_file():
            raise InputError(f"CLIP weight file {weights} not found; pass --clip-weights FILE")
        return create_clip(model, weights=weights, device=device)
    if spec.get("random_weights"):
        return create_clip(model, pretrained=None, device=device, seed=int(spec.get("seed") or 0))
    return create_clip(model, pretrained=spec.get("pretrained") or "openai", device=device)


def build_model(method: Method, cfg: RunConfig, manifest: Manifest, device: torch.device,
                clip_weights: Path | None = None) -> torch.nn.Module:
    clip = load_clip_for(cfg.text_encoder, device, clip_weights) if method.needs_clip else None
    model = method.build(cfg.preset, manifest.info.classes, feature_dim=cfg.feature_dim, clip=clip, device=device)
    return model.to(device)


def count_params(model: torch.nn.Module) -> dict[str, int]:
    seen: set[int] = set()
    total = trainable = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return {"total": total, "trainable": trainable}


# ---------------------------------------------------------------------------------------
# logging


class RunLog:
    """Appends JSON events to ``log.jsonl`` (rank 0 only)."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path = path
        self.enabled = enabled

    def size(self) -> int:
        return self.path.stat().st_size if self.enabled and self.path.exists() else 0

    def truncate(self, size: int) -> None:
        """Cut the log back to ``size`` bytes, and never leave a partial last line."""
        if not (self.enabled and self.path.exists()):
            return
        data = self.path.read_bytes()[:size]
        keep = data.rfind(b"\n") + 1
        if keep != self.path.stat().st_size:
            with open(self.path, "r+b") as fh:
                fh.truncate(keep)

    @staticmethod
    def line(event: str, /, **fields: Any) -> bytes:
        rec = {"event": event, "time": now_iso(), **fields}
        return (json.dumps(rec, default=_json_default) + "\n").encode("utf-8")

    def append(self, line: bytes) -> None:
        if not self.enabled:
            return
        with open(self.path, "ab") as fh:
            fh.write(line)
            fh.flush()

    def write(self, event: str, /, **fields: Any) -> None:
        if self.enabled:
            self.append(self.line(event, **fields))


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, torch.Tensor):
        return o.item() if o.numel() == 1 else o.tolist()
    return str(o)


# ---------------------------------------------------------------------------------------
# the loop


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
            "epoch": self.epoch, "iter": self.iter, "step": self.step, "best_value": self.best_value,
            "best_step": self.best_step, "best_epoch": self.best_epoch, "best_model": self.best_model,
            "train_seconds": self.train_seconds, "log_size": self.log_size,
        }

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> "LoopState":
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__ if k in d})  # type: ignore[arg-type]


def _optim_state(specs: list[OptimSpec]) -> list[dict[str, Any]]:
    return [{"optimizer": s.optimizer.state_dict(),
             "scheduler": None if s.scheduler is None else s.scheduler.state_dict()} for s in specs]


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


class Trainer:
    """Holds everything of one run; :meth:`run` trains to the end (or ``stop_after_steps``)."""

    def __init__(self, opts: TrainOptions, cfg: RunConfig, method: Method, manifest: Manifest, store: Any,
                 device: torch.device, dist: ddp.DistInfo) -> None:
        self.opts = opts
        self.cfg = cfg
        self.method = method
        self.preset = cfg.preset
        self.manifest = manifest
        self.store = store
        self.device = device
        self.dist = dist
        self.out = Path(opts.out)
        self.log = RunLog(self.out / "log.jsonl", dist.is_main)
        self.ckpt_dir = self.out / "checkpoints"
        self.state = LoopState()

    # -- setup ---------------------------------------------------------------------------
    def setup(self) -> None:
        cfg, preset = self.cfg, self.preset
        seed_everything(cfg.seed, cfg.deterministic)
        classes = self.manifest.info.classes
        train_ids = [v.id for v in self.manifest.split("train")]
        self.samples = make_train_samples(self.store, self.manifest, train_ids, cfg.train_crops, classes,
                                          preset.visual_length, cache=self.opts.cache)
        self.plan = BatchPlan.create(self.samples, preset.batch_composition, preset.batch_size, cfg.seed,
                                     drop_last=bool(preset.drop_last) if preset.batch_composition == "mixed" else True)
        self.test: TestSet = build_test_set(self.store, [v.id for v in self.manifest.split("test")], cfg.test_crop)
        seed_everything(cfg.seed, cfg.deterministic)  # model init as the official scripts: right after seeding
        self.model = build_model(self.method, cfg, self.manifest, self.device, self.opts.clip_weights)
        fit_input_norm(self.model, self.store, train_ids, cfg.train_crops)  # no-op unless the preset asks for one
        ddp.broadcast_module(self.model, self.dist)
        self.iters_per_epoch = self.plan.steps_per_epoch()
        self.specs = build_optimizers(self.method, self.model, preset, self.plan)
        self.params = _trainable_params(self.model)

    # -- checkpoints ---------------------------------------------------------------------
    def _meta(self, selection: str, **extra: Any) -> dict[str, Any]:
        return {"method": self.cfg.method, "config_hash": self.cfg.hash,
                "config": json.dumps(config_json(self.cfg)), "selection": selection,
                "epoch": str(self.state.epoch), "step": str(self.state.step), **{k: str(v) for k, v in extra.items()}}

    def save_resume(self) -> None:
        if not self.dist.is_main:
            return
        # the event is logged once the file is in place; the size a resumed run cuts the log
        # back to includes it
        line = self.log.line("checkpoint", epoch=self.state.epoch, step=self.state.step, files=["resume.safetensors"])
        self.state.log_size = self.log.size() + len(line)
        state = {"loop": self.state.to_state(), "model": self.model.state_dict(), "optim": _optim_state(self.specs),
                 "rng": rng_state()}
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

    # -- evaluation during training (best-on-test) -------------------------------------
    def _maybe_eval(self, *, end_of_epoch: bool) -> None:
        if self.cfg.select != BEST:
            return
        every = self.cfg.eval_every
        i = self.state.iter - 1  # 0-based index of the iteration just done
        due = (end_of_epoch and every == 0) or (not end_of_epoch and every > 0 and i > 0 and i % every == 0)
        if not due:
            return
        if self.dist.is_main:
            from .evaluate import predict_testset, selection_value

            preds = predict_testset(self.method, self.model, self.test, self.preset.visual_length, self.device,
                                    batch=self.opts.eval_batch)
            metrics, value = selection_value(self.manifest, preds, self.cfg.selection_metric)
            best = self.state.best_value is None or value > self.state.best_value
            self.log.write("eval", epoch=self.state.epoch, iter=i, step=self.state.step, metrics=metrics,
                           selection_metric=self.cfg.selection_metric, value=value, best=best)
            if best:
                self.state.best_value = float(value)
                self.state.best_step = self.state.step
                self.state.best_epoch = self.state.epoch
                self.state.best_model = _state_copy(self.model)
        self.model.train()

    def _reload_best(self) -> None:
        if self.cfg.select != BEST or not self.preset.reload_best_each_epoch:
            return
        if self.dist.is_main and self.state.best_model is not None:
            self.model.load_state_dict(self.state.best_model)
        ddp.broadcast_module(self.model, self.dist)

    # -- one step ------------------------------------------------------------------------
    def _step(self, batch: Any, share: float) -> dict[str, float]:
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
        receives one counted task per epoch (see :func:`train`)."""
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
            for batch, share in iterate_batches(self.samples, batches[self.state.iter:], self.dist.rank,
                                                self.dist.world_size, pin_memory=self.device.type == "cuda"):
                logged = self._step(batch, share)
                self.state.iter += 1
                self.state.step += 1
                n = int(round(batch.batch_size / share)) if share else batch.batch_size
                samples_done += n
                losses.append(logged["loss"])
                self.log.write("step", epoch=e, iter=self.state.iter - 1, step=self.state.step, lr=_lrs(self.specs),
                               samples=n, loss=logged["loss"],
                               losses={k[7:]: v for k, v in logged.items() if k.startswith("losses.")})
                if progress is not None:
                    progress(ProgressEvent(ADVANCE, task, advance=1, text=f"loss {logged['loss']:.4f}"))
                self._maybe_eval(end_of_epoch=False)
                if self.opts.checkpoint_every and self.state.step % self.opts.checkpoint_every == 0 \
                        and self.state.iter < len(batches):
                    self.save_resume()
                if self.opts.stop_after_steps is not None and self.state.step >= self.opts.stop_after_steps \
                        and self.state.iter < len(batches):
                    self.state.train_seconds += time.perf_counter() - t0
                    self.save_resume()
                    return False
            for s in self.specs:
                if s.scheduler is not None and s.step_on == "epoch":
                    s.scheduler.step()
            self._maybe_eval(end_of_epoch=True)
            secs = time.perf_counter() - t0
            self.state.train_seconds += secs
            self.log.write("epoch", epoch=e, steps=len(batches), loss=float(np.mean(losses)) if losses else None,
                           seconds=secs, samples_per_s=samples_done / secs if secs > 0 else None)
            if progress is not None:
                mean = float(np.mean(losses)) if losses else float("nan")
                progress(ProgressEvent(DONE, task, text=(
                    f"{task}: loss {mean:.4f}, {len(batches)} steps, {secs:.1f} s"
                    + (f", {samples_done / secs:.0f} samples/s" if secs > 0 else "")),
                    fields={"epoch": e, "loss": mean, "seconds": secs}))
            last_epoch = e + 1 == preset.epochs
            if self.dist.is_main:
                save_weights(self.model, self.ckpt_dir / "last.safetensors", self._meta(LAST))
                if last_epoch:
                    self.last_model = _state_copy(self.model)
            self._reload_best()
            self.state.epoch += 1
            self.state.iter = 0
            if not last_epoch:
                self.save_resume()
                if self.opts.stop_after_steps is not None and self.state.step >= self.opts.stop_after_steps:
                    return False
            ddp.barrier(self.dist)
        return True


def build_optimizers(method: Method, model: torch.nn.Module, preset: MethodPreset, plan: BatchPlan) -> list[OptimSpec]:
    """The method's optimisers for the steps an epoch runs; a method that sizes a per-iteration
    schedule as the official code does (``schedule_iters_per_epoch``) gets the sum of the
    official loaders' lengths (twice the steps run on paired batches: an official quirk)."""
    import inspect

    kwargs: dict[str, Any] = {}
    if "schedule_iters_per_epoch" in inspect.signature(method.optimizers).parameters:
        kwargs["schedule_iters_per_epoch"] = int(sum(plan.loader_lengths()))
    return method.optimizers(model, preset, plan.steps_per_epoch(), **kwargs)


# ---------------------------------------------------------------------------------------
# the public entry point


def prepare_run_dir(out: Path, cfg: RunConfig, is_main: bool = True) -> str:
    """'new', 'resume' or 'finished'; refuses a run directory of another configuration."""
    cj = out / "config.json"
    if cj.is_file():
        try:
            existing = run_config_from_json(json.loads(cj.read_text()))
        except (ValueError, KeyError, InputError) as exc:
            raise InputError(f"{cj} is not a run config ({exc}); use a new --out") from None
        if json.loads(json.dumps(existing.comparable())) != json.loads(json.dumps(cfg.comparable())):
            diff = _diff_keys(to_dict(existing), to_dict(cfg))
            raise InputError(
                f"{out} holds a run with another configuration (differs in: {', '.join(diff) or 'preset'}); "
                "use a new --out directory"
            )
        return "finished" if (out / "metrics.json").is_file() else "resume"
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a folder")
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out} exists and is not a run directory; choose a new --out")
    if is_main:
        try:
            out.mkdir(parents=True, exist_ok=True)
            (out / "checkpoints").mkdir(exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create the run directory {out}: {exc.strerror or exc}") from None
        atomic_write_json(out / "config.json", config_json(cfg))
    return "new"


def _diff_keys(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    keys = sorted(set(a) | set(b))
    out = []
    for k in keys:
        if k in ("device", "store"):
            continue
        if json.dumps(a.get(k), sort_keys=True) != json.dumps(b.get(k), sort_keys=True):
            out.append(k)
    return out


def train(opts: TrainOptions, *, on_event: Listener | None = None) -> TrainResult:
    """Train (or resume, or recognise as finished) the run ``opts`` describes.

    Progress (:mod:`dsan_toolkit.progress`) goes to ``on_event`` on rank 0: messages, and with
    ``opts.progress`` one counted task per epoch (its steps) ending with the epoch's summary
    (loss, seconds, samples/s); without a listener messages and summaries are logged."""
    say = emitter(on_event, logger)
    device = resolve_device(opts.device)
    dist = ddp.init_distributed(device)
    deterministic = torch.are_deterministic_algorithms_enabled()
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        return _train(opts, device, dist, say)
    finally:  # --deterministic is process-wide: restore the caller's settings
        torch.use_deterministic_algorithms(deterministic)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
        ddp.shutdown(dist)


def _train(opts: TrainOptions, device: torch.device, dist: ddp.DistInfo, say: Listener) -> TrainResult:
    method = get_method(opts.method)
    store = open_feature_store(opts.features)
    manifest = resolve_manifest_for(store, opts.dataset)
    cfg = resolve_config(opts, store, manifest, method, dist.world_size)
    out = Path(opts.out)
    statuses = ("new", "resume", "finished")
    status = prepare_run_dir(out, cfg) if dist.is_main else "new"
    status = statuses[ddp.broadcast_int(statuses.index(status), dist)]  # rank 0 decides, the others follow
    if status != "new":  # keep the recorded config (and hash); only the runtime device may differ
        cfg = run_config_from_json(json.loads((out / "config.json").read_text()))
    if status == "finished":
        metrics = json.loads((out / "metrics.json").read_text())
        if dist.is_main:
            say(message(f"{out} is a finished run of this configuration (config {cfg.hash[:12]}); nothing to do"))
        return TrainResult(out, cfg, True, metrics, 0)
    if not method.trainable:
        metrics = _training_free_run(opts, cfg, method, manifest, store, device, say) if dist.is_main else {}
        ddp.barrier(dist)
        return TrainResult(out, cfg, True, metrics, 0)
    trainer = Trainer(opts, cfg, method, manifest, store, device, dist)
    if dist.is_main:
        say(message(f"{method.name} preset {cfg.preset_name} on {manifest.name}: config {cfg.hash[:12]}, "
                    f"device {device}, world size {dist.world_size}, select {cfg.select}"))
    trainer.setup()
    resumed = trainer.try_resume() if status == "resume" else False
    if dist.is_main:
        env_path = out / "environment.json"
        previous = json.loads(env_path.read_text()) if resumed and env_path.is_file() else None
        atomic_write_json(env_path, capture_environment(
            device, world_size=dist.world_size, backend=dist.backend, deterministic=cfg.deterministic))
        trainer.log.write("start", config_hash=cfg.hash, resumed_from=trainer.state.step if resumed else None,
                          world_size=dist.world_size, **({"previous_environment": previous} if previous else {}))
        cached = (f"{trainer.samples.nbytes / 2**20:.1f} MiB cached" if trainer.samples.nbytes
                  else "read from the store per batch")
        say(message(f"{len(trainer.samples)} training samples ({cached}), "
                    f"{trainer.iters_per_epoch} steps/epoch, {count_params(trainer.model)['trainable']:,} trainable "
                    f"parameters" + (f"; resuming at step {trainer.state.step}" if resumed else "")))
    finished = trainer.run(say if opts.progress and dist.is_main else None)
    if not finished:
        if dist.is_main:
            say(message(f"stopped after {trainer.state.step} steps; run the same command again to resume"))
        return TrainResult(out, cfg, False, {}, trainer.state.step)
    metrics: dict[str, Any] = {}
    if dist.is_main:
        metrics = finish_run(trainer)
    ddp.barrier(dist)
    return TrainResult(out, cfg, True, metrics, trainer.state.step)


def finish_run(trainer: Trainer) -> dict[str, Any]:
    """Evaluate the last (and best-on-test) model, write eval/ and metrics.json (rank 0)."""
    from ..config import sha256_file
    from .evaluate import evaluate_and_write

    out, cfg = trainer.out, trainer.cfg
    results: dict[str, Any] = {}
    labels = [LAST] + ([BEST] if cfg.select == BEST and trainer.state.best_model is not None else [])
    for label in labels:
        if label == LAST:
            trainer.model.load_state_dict(trainer.last_model)
            ck = out / "checkpoints" / "last.safetensors"
        else:
            trainer.model.load_state_dict(trainer.state.best_model)
            ck = out / "checkpoints" / "best-on-test.safetensors"
            save_weights(trainer.model, ck, trainer._meta(BEST, selection_metric=cfg.selection_metric,
                                                           value=trainer.state.best_value,
                                                           best_step=trainer.state.best_step))
        rec = evaluate_and_write(
            trainer.method, trainer.model, trainer.manifest, trainer.test, out / "eval" / label,
            length=cfg.preset.visual_length, device=trainer.device, batch=trainer.opts.eval_batch,
            label=label, selection=label, config_hash=cfg.hash, store_hash=cfg.store_hash,
            manifest_hash=cfg.manifest_hash, checkpoint={"file": ck.name, "sha256": sha256_file(ck)},
        )
        entry: dict[str, Any] = {"metrics": rec["metrics"], "checkpoint": ck.name}
        if label == BEST:
            entry.update(selection_metric=cfg.selection_metric, value=trainer.state.best_value,
                         step=trainer.state.best_step, epoch=trainer.state.best_epoch)
        else:
            entry.update(step=trainer.state.step, epoch=cfg.preset.epochs - 1)
        results[label] = entry
    summary = {
        "config_hash": cfg.hash,
        "method": cfg.method,
        "preset": cfg.preset_name,
        "dataset": cfg.dataset,
        "seed": cfg.seed,
        "select": cfg.select,
        "selected": cfg.select if cfg.select in results else LAST,
        "results": results,
        "train_seconds": trainer.state.train_seconds,
        "steps": trainer.state.step,
        "params": count_params(trainer.model),
        "random_backbone": bool(cfg.backbone.get("random_weights", False)),
        "random_text_encoder": bool(cfg.text_encoder.get("random_weights", False)),
    }
    trainer.log.write("end", seconds=trainer.state.train_seconds, selections=list(results))
    return write_run_summary(out, summary)


def _training_free_run(opts: TrainOptions, cfg: RunConfig, method: Method, manifest: Manifest, store: Any,
                       device: torch.device, say: Listener) -> dict[str, Any]:
    """A training-free method (zero-shot CLIP) as a run directory of the same layout: config,
    environment, the frozen weights as the ``last`` checkpoint, predictions and metrics."""
    from ..config import sha256_file
    from .evaluate import evaluate_and_write

    out = Path(opts.out)
    t0 = time.perf_counter()
    seed_everything(cfg.seed, cfg.deterministic)
    atomic_write_json(out / "environment.json", capture_environment(device, deterministic=cfg.deterministic))
    log = RunLog(out / "log.jsonl", True)
    log.write("start", config_hash=cfg.hash, resumed_from=None, world_size=1, training_free=True)
    model = build_model(method, cfg, manifest, device, opts.clip_weights)
    ck = out / "checkpoints" / "last.safetensors"
    save_weights(model, ck, {"method": cfg.method, "config_hash": cfg.hash, "config": json.dumps(config_json(cfg)),
                             "selection": LAST, "epoch": "0", "step": "0"})
    test = build_test_set(store, [v.id for v in manifest.split("test")], cfg.test_crop)
    say(message(f"{method.name} is training-free: evaluating on {len(test.video_ids)} test videos"))
    rec = evaluate_and_write(method, model, manifest, test, out / "eval" / LAST, length=int(cfg.preset.visual_length),
                             device=device, batch=opts.eval_batch, label=LAST, selection=LAST, config_hash=cfg.hash,
                             store_hash=cfg.store_hash, manifest_hash=cfg.manifest_hash,
                             checkpoint={"file": ck.name, "sha256": sha256_file(ck)})
    summary = {
        "config_hash": cfg.hash, "method": cfg.method, "preset": cfg.preset_name, "dataset": cfg.dataset,
        "seed": cfg.seed, "select": LAST, "selected": LAST,
        "results": {LAST: {"metrics": rec["metrics"], "checkpoint": ck.name, "step": 0, "epoch": 0}},
        "train_seconds": 0.0, "eval_seconds": time.perf_counter() - t0, "steps": 0, "params": count_params(model),
        "random_backbone": bool(cfg.backbone.get("random_weights", False)),
        "random_text_encoder": bool(cfg.text_encoder.get("random_weights", False)), "training_free": True,
    }
    log.write("end", seconds=0.0, selections=[LAST])
    return write_run_summary(out, summary)


def run_artifacts(out: Path, labels: list[str]) -> dict[str, str]:
    """sha256 of every file of a finished run that ``dsan audit`` relies on, by path relative to
    the run directory: the config, the environment record, and per selection label its
    evaluation record, predictions and checkpoint."""
    from ..config import sha256_file

    files = ["config.json", "environment.json"]
    for label in labels:
        ev = json.loads((out / "eval" / label / "metrics.json").read_text())
        files += [f"eval/{label}/metrics.json", f"eval/{label}/predictions.npz",
                  f"checkpoints/{(ev.get('checkpoint') or {}).get('file', f'{label}.safetensors')}"]
    return {f: sha256_file(out / f) for f in dict.fromkeys(files)}


def write_run_summary(out: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """Write ``metrics.json`` (LAST: it marks the run finished) with the hashes of the run's
    artifacts, then drop the resume state, which a finished run no longer needs."""
    summary = {**summary, "artifacts": run_artifacts(out, list(summary["results"]))}
    atomic_write_json(out / "metrics.json", summary)
    (out / "checkpoints" / "resume.safetensors").unlink(missing_ok=True)
    return summary


def retrain_from_config(cfg: RunConfig, out: Path, *, device: str = "cpu", progress: bool = False) -> TrainResult:
    """Train again from a recorded :class:`RunConfig` (same preset, seed and data) into ``out``
    (used by ``dsan audit --rerun``)."""
    if not isinstance(cfg, RunConfig):
        raise InputError("retrain_from_config needs a RunConfig")
    cfg = with_typed_preset(cfg)
    preset = cfg.preset
    method = get_method(cfg.method)
    base = method.get_preset(cfg.preset_name)
    overrides = {k: v for k, v in to_dict(preset).items() if k != "type" and to_dict(base).get(k) != v}
    for k in ("epochs", "seed"):
        overrides.pop(k, None)
    opts = TrainOptions(
        method=cfg.method, features=Path(cfg.store), out=Path(out), dataset=None, preset=cfg.preset_name,
        seed=cfg.seed, epochs=preset.epochs, device=device, select=cfg.select, deterministic=cfg.deterministic,
        test_crop=cfg.test_crop, overrides=_from_json_overrides(base, overrides), progress=progress,
    )
    return train(opts)


def _from_json_overrides(base: MethodPreset, overrides: dict[str, Any]) -> dict[str, Any]:
    """JSON values back to the preset's field types (lists -> tuples)."""
    out = {}
    for k, v in overrides.items():
        cur = getattr(base, k, None)
        out[k] = tuple(v) if isinstance(cur, tuple) and isinstance(v, list) else v
    return out
