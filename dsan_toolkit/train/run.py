"""Running a training: one method, one feature store, one run directory.

:func:`train` resolves a :class:`TrainOptions` into a hashed :class:`RunConfig`, checks that
the store fits (manifest, feature dimension, crops), builds the cached data, the model and the
method's optimisers, then runs epochs of official batches (:class:`~dsan_toolkit.train.trainer.Trainer`), writing the
run directory described in ``docs/training.md`` (rank 0 only under DDP).

Model selection (``select``):

- ``last`` (default, honest): no test-set evaluation during training; the model after the
  last epoch is evaluated once at the end.
- ``best-on-test`` (the official scripts): the test split is evaluated during training
  (``preset.eval_every_iters`` iterations, or after each epoch when ``None``), the weights
  with the best ``preset.select_metric`` are kept, and, as the official loops do, loaded
  back into the model at the end of every epoch (``preset.reload_best_each_epoch``;
  optimisers and schedulers keep their state). Both the last and the best model are
  evaluated at the end and both numbers are recorded, each labelled.
- ``best-on-val``: the same procedure on a validation split held out of the training split
  (:mod:`~dsan_toolkit.train.valselect`): those videos never train; at the same cadence they
  are scored at video level (:mod:`~dsan_toolkit.train.videometrics`), the best weights are
  kept (and reloaded as the preset says), and the last and the best model are evaluated on
  the test split at the end, labelled ``last`` and ``best-on-val``.

Resuming: every checkpoint writes ``checkpoints/resume.safetensors`` (model, optimisers,
schedulers, RNGs, loop position, best-so-far); running the same command on an unfinished run
directory continues from it and gives the same result as an uninterrupted run.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import legacy_config_hash, to_dict
from ..errors import InputError
from ..manifest.schema import Manifest
from ..manifest.valsplit import DEFAULT_FRACTION, DEFAULT_SEED, ValSplit
from ..models.api import Method, MethodPreset
from ..models.registry import get_method
from ..progress import Listener, emitter, message
from ..store.protocol import FeatureStoreLike
from . import distributed as ddp
from .checkpoint import RunConfig, atomic_write_json, read_run_config, with_typed_preset
from .environment import capture_environment
from .finish import finish_run, training_free_run
from .rundir import prepare_run_dir
from .setup import (
    BEST_VAL,
    LAST,
    SELECTIONS,
    check_store_fits,
    count_params,
    determinism_restored,
    open_feature_store,
    resolve_device,
    resolve_manifest_for,
    text_encoder_spec,
)
from .step import check_precision
from .store_identity import absolute_store_path, store_backbone, store_config_hash
from .trainer import Trainer
from .valselect import resolve_val_split, write_run_val_split
from .videometrics import video_selection_metric

logger = logging.getLogger(__name__)


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
    # best-on-val: a split file (dsan manifest val-split), else fraction + seed (the built-in
    # datasets' committed split at the defaults; see docs/training.md)
    val_split: Path | None = None
    val_fraction: float = DEFAULT_FRACTION
    val_seed: int = DEFAULT_SEED
    precision: str = "fp32"  # fp32 | bf16 | fp16 (recorded in the config; see docs/training.md)
    log_every: int = 0  # steps between reads of the losses from the device (0: 1 on CPU, 25 on GPU)


@dataclass
class TrainResult:
    run_dir: Path
    config: RunConfig
    finished: bool
    metrics: dict[str, Any]
    steps: int


# ---------------------------------------------------------------------------------------
# resolution


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


def resolve_selection(opts: TrainOptions, manifest: Manifest, method: Method) -> ValSplit | None:
    """Check ``opts.select``; the validation split of a best-on-val run (else None)."""
    if opts.select not in SELECTIONS:
        raise InputError(f"unknown --select {opts.select!r}; choose one of {', '.join(SELECTIONS)}")
    if not method.trainable and opts.select != LAST:
        raise InputError(f"method {method.name!r} is training-free: there is nothing to select (use --select last)")
    split, _source = resolve_val_split(manifest, opts.select, opts.val_split, opts.val_fraction, opts.val_seed)
    return split


def resolve_config(
    opts: TrainOptions,
    store: FeatureStoreLike,
    manifest: Manifest,
    method: Method,
    world_size: int,
    val_split: ValSplit | None = None,
) -> RunConfig:
    if val_split is None:
        val_split = resolve_selection(opts, manifest, method)
    preset_name, preset = resolve_preset(method, manifest, opts)
    if not method.trainable and opts.precision != "fp32":
        raise InputError(f"method {method.name!r} is training-free: --precision applies to training (use fp32)")
    test_crop = manifest.info.test_crop if opts.test_crop is None else int(opts.test_crop)
    check_store_fits(
        store,
        manifest,
        int(preset.feature_dim),
        test_crop=test_crop,
        splits=("train", "test") if method.trainable else ("test",),
    )
    return RunConfig(
        method=method.name,
        preset_name=preset_name,
        preset=preset,
        dataset=manifest.name,
        manifest_hash=manifest.content_hash(),
        store=absolute_store_path(opts.features),
        store_hash=store.content_hash(),
        store_config_hash=store_config_hash(store),
        feature_dim=int(store.feature_dim),
        train_crops=tuple(int(c) for c in store.crop_ids),
        test_crop=test_crop,
        seed=int(preset.seed),
        select=opts.select,
        eval_every=int(preset.eval_every_iters or 0),
        selection_metric=video_selection_metric(str(preset.select_metric))
        if opts.select == BEST_VAL
        else str(preset.select_metric),
        deterministic=bool(opts.deterministic),
        world_size=int(world_size),
        backbone=store_backbone(store),
        text_encoder=text_encoder_spec(store_backbone(store), opts.clip_weights, opts.clip_model)
        if method.needs_clip
        else {},
        val_split=val_split.summary() if val_split is not None else None,
        precision=str(opts.precision),
        device=str(opts.device),
        clip_weights=str(Path(opts.clip_weights).resolve()) if opts.clip_weights else None,
    )


# ---------------------------------------------------------------------------------------
# the public entry point


def train(opts: TrainOptions, *, on_event: Listener | None = None) -> TrainResult:
    """Train (or resume, or recognise as finished) the run ``opts`` describes.

    Progress (:mod:`dsan_toolkit.progress`) goes to ``on_event`` on rank 0: messages, and with
    ``opts.progress`` one counted task per epoch (its steps) ending with the epoch's summary
    (loss, seconds, samples/s); without a listener messages and summaries are logged."""
    say = emitter(on_event, logger)
    device = resolve_device(opts.device)
    check_precision(opts.precision, device)
    if opts.log_every < 0:
        raise InputError(f"--log-every must be 0 (automatic) or a number of steps, not {opts.log_every}")
    dist = ddp.init_distributed(device)
    device = dist.device if dist.backend == "nccl" else device  # cuda -> this rank's cuda:N
    try:
        with determinism_restored():  # --deterministic is process-wide: restore the caller's settings
            return _train(opts, device, dist, say)
    finally:
        ddp.shutdown(dist)


def _refuse_earlier_scheme(path: Path, cfg: RunConfig) -> None:
    """An unfinished run recorded under the earlier config-hash scheme (store path and device
    hashed too) cannot be continued: its checkpoints and records would carry two hashes."""
    data = json.loads(path.read_text())
    recorded = str(data.get("hash"))
    if recorded == cfg.hash:
        return
    if recorded == legacy_config_hash(data.get("config", {})):
        raise InputError(
            f"{path.parent} is an unfinished run recorded by an earlier version (config hash {recorded[:12]}, "
            "a scheme that also hashed the store path and device); finish it with that version, or train into a "
            "new --out. Finished runs of that version still evaluate and audit."
        )
    raise InputError(f"{path}: its hash {recorded[:12]} is not its config's ({cfg.hash[:12]}): edited? use a new --out")


def _train(opts: TrainOptions, device: torch.device, dist: ddp.DistInfo, say: Listener) -> TrainResult:
    method = get_method(opts.method)
    store = open_feature_store(opts.features)
    manifest = resolve_manifest_for(store, opts.dataset)
    split = resolve_selection(opts, manifest, method)
    cfg = resolve_config(opts, store, manifest, method, dist.world_size, split)
    out = Path(opts.out)
    statuses = ("new", "resume", "finished")
    status = prepare_run_dir(out, cfg) if dist.is_main else "new"
    status = statuses[ddp.broadcast_int(statuses.index(status), dist)]  # rank 0 decides, the others follow
    if status != "new":  # keep the recorded config (and hash); only the runtime fields may differ
        cfg = read_run_config(out / "config.json")
        if status == "resume":
            _refuse_earlier_scheme(out / "config.json", cfg)
    if split is not None and status != "finished" and dist.is_main:
        write_run_val_split(out, split)  # the ids the run holds out, next to its config
    if status == "finished":
        metrics = json.loads((out / "metrics.json").read_text())
        if dist.is_main:
            say(message(f"{out} is a finished run of this configuration (config {cfg.hash[:12]}); nothing to do"))
        return TrainResult(out, cfg, True, metrics, 0)
    if not method.trainable:
        metrics = (
            training_free_run(opts.out, opts.eval_batch, opts.clip_weights, cfg, method, manifest, store, device, say)
            if dist.is_main
            else {}
        )
        ddp.barrier(dist)
        return TrainResult(out, cfg, True, metrics, 0)
    trainer = Trainer(
        cfg,
        method,
        manifest,
        store,
        device,
        dist,
        out=out,
        cache=opts.cache,
        clip_weights=opts.clip_weights,
        eval_batch=opts.eval_batch,
        checkpoint_every=opts.checkpoint_every,
        stop_after_steps=opts.stop_after_steps,
        val_ids=split.ids if split is not None else (),
        log_every=opts.log_every,
    )
    if dist.is_main:
        say(
            message(
                f"{method.name} preset {cfg.preset_name} on {manifest.name}: config {cfg.hash[:12]}, "
                f"device {device}, world size {dist.world_size}, select {cfg.select}"
                + (f", precision {cfg.precision}" if cfg.precision != "fp32" else "")
            )
        )
    trainer.setup()
    resumed = trainer.try_resume() if status == "resume" else False
    if dist.is_main:
        env_path = out / "environment.json"
        previous = json.loads(env_path.read_text()) if resumed and env_path.is_file() else None
        atomic_write_json(
            env_path,
            capture_environment(
                device, world_size=dist.world_size, backend=dist.backend, deterministic=cfg.deterministic
            ),
        )
        trainer.log.write(
            "start",
            config_hash=cfg.hash,
            resumed_from=trainer.state.step if resumed else None,
            world_size=dist.world_size,
            **({"previous_environment": previous} if previous else {}),
        )
        cached = (
            f"{trainer.samples.nbytes / 2**20:.1f} MiB cached"
            if trainer.samples.nbytes
            else "read from the store per batch"
        )
        say(
            message(
                f"{len(trainer.samples)} training samples ({cached}), "
                f"{trainer.iters_per_epoch} steps/epoch, {count_params(trainer.model)['trainable']:,} trainable "
                f"parameters" + (f"; resuming at step {trainer.state.step}" if resumed else "")
            )
        )
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


def retrain_from_config(
    cfg: RunConfig,
    out: Path,
    *,
    device: str = "cpu",
    progress: bool = False,
    features: str | Path | None = None,
    clip_weights: str | Path | None = None,
    val_split: str | Path | None = None,
) -> TrainResult:
    """Train again from a recorded :class:`RunConfig` (same preset, seed, text encoder and data)
    into ``out`` (used by ``dsan audit --rerun``): on ``features`` (default: the recorded store),
    with ``clip_weights`` (default: the recorded local CLIP file, if any). The caller compares the
    new run's config hash with the recorded one: a different store or text encoder shows there.
    A best-on-val run uses ``val_split`` (the run's ``val_split.json``) when given, else derives
    its split again from the recorded fraction and seed."""
    if not isinstance(cfg, RunConfig):
        raise InputError("retrain_from_config needs a RunConfig")
    cfg = with_typed_preset(cfg)
    preset = cfg.preset
    method = get_method(cfg.method)
    base = method.get_preset(cfg.preset_name)
    overrides = {k: v for k, v in to_dict(preset).items() if k != "type" and to_dict(base).get(k) != v}
    for k in ("epochs", "seed"):
        overrides.pop(k, None)
    te = cfg.text_encoder or {}
    weights = clip_weights or cfg.clip_weights or te.get("weights_file")  # the last: runs of earlier versions
    forced_model = te.get("reason") == "--clip-model without weights" or bool(te.get("weights_sha256"))
    vs = cfg.val_split or {}
    if vs and val_split is None and vs.get("seed") is None:
        raise InputError("this run's validation split is a list of chosen ids: pass its file (RUN/val_split.json)")
    opts = TrainOptions(
        method=cfg.method,
        features=Path(features or cfg.store),
        out=Path(out),
        dataset=None,
        preset=cfg.preset_name,
        seed=cfg.seed,
        epochs=preset.epochs,
        device=device,
        select=cfg.select,
        deterministic=cfg.deterministic,
        test_crop=cfg.test_crop,
        overrides=_from_json_overrides(base, overrides),
        progress=progress,
        clip_weights=Path(weights) if weights else None,
        clip_model=te.get("model") if forced_model else None,
        val_split=Path(val_split) if vs and val_split is not None else None,
        val_fraction=float(vs.get("fraction", DEFAULT_FRACTION)),
        val_seed=int(vs["seed"]) if vs.get("seed") is not None else DEFAULT_SEED,
        precision=cfg.precision,
    )
    return train(opts)


def _from_json_overrides(base: MethodPreset, overrides: dict[str, Any]) -> dict[str, Any]:
    """JSON values back to the preset's field types (lists -> tuples)."""
    out = {}
    for k, v in overrides.items():
        cur = getattr(base, k, None)
        out[k] = tuple(v) if isinstance(cur, tuple) and isinstance(v, list) else v
    return out
