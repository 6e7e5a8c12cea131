"""``dsan eval``: a model evaluated on the test split of a feature store.

:func:`evaluate_run` / :func:`evaluate_checkpoint` / :func:`evaluate_official` are what
``dsan eval`` calls for ``--run``, ``--checkpoint`` and ``--official-checkpoint``; where they
may write (never into a run's records) is decided by :func:`prepare_eval_out`. Predicting and
writing the records is :mod:`.predictions`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import sha256_file
from ..errors import InputError
from ..manifest.schema import Manifest
from ..models.registry import get_method
from ..progress import Listener, emitter, message
from ..store.protocol import FeatureStoreLike
from .checkpoint import (
    RunConfig,
    load_weights,
    read_metadata,
    read_run_config,
    run_config_from_json,
)
from .predictions import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_BOOTSTRAP_SEED,
    EVAL_RECORD_FILE,
    PREDICTIONS_FILE,
    evaluate_and_write,
)
from .setup import (
    SELECTIONS,
    build_model,
    check_store_fits,
    open_feature_store,
    resolve_device,
    resolve_manifest_for,
)
from .store_identity import StoreUse, open_run_store
from .testset import TestSet, build_test_set

logger = logging.getLogger(__name__)

EVALUATIONS_DIR = "evaluations"  # exploratory evaluations of a run (dsan eval --run); never audited records
RECORD_DIRS = ("eval", "checkpoints")  # written by training only

# ---------------------------------------------------------------------------------------
# dsan eval


@dataclass(frozen=True)
class EvalOptions:
    run: Path | None = None
    checkpoint: Path | None = None
    official_checkpoint: Path | None = None
    method: str | None = None
    preset: str | None = None
    features: Path | None = None
    dataset: str | None = None
    out: Path | None = None
    select: str | None = None
    test_crop: int | None = None
    device: str = "cpu"
    batch: int = 64
    clip_weights: Path | None = None
    clip_model: str | None = None
    overwrite: bool = False
    map_protocol: str = "official"
    bootstrap: int = DEFAULT_BOOTSTRAP
    bootstrap_seed: int = DEFAULT_BOOTSTRAP_SEED

    def __post_init__(self) -> None:
        from ..eval import detection_config_for

        detection_config_for(self.map_protocol)  # an unknown protocol fails before any work
        for name, value in (("--bootstrap", self.bootstrap), ("--bootstrap-seed", self.bootstrap_seed)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InputError(f"{name} must be a non-negative integer; got {value!r}")

    def eval_kwargs(self) -> dict[str, Any]:
        """The evaluation protocol options of :func:`evaluate_and_write`."""
        return {"map_protocol": self.map_protocol, "bootstrap": self.bootstrap, "bootstrap_seed": self.bootstrap_seed}


def _test_set(store: FeatureStoreLike, manifest: Manifest, test_crop: int | None, feature_dim: int) -> TestSet:
    crop = manifest.info.test_crop if test_crop is None else int(test_crop)
    check_store_fits(store, manifest, feature_dim, test_crop=crop, splits=("test",))
    return build_test_set(store, [v.id for v in manifest.split("test")], crop)


def refuse_run_records(out: Path) -> None:
    """Refuse an output folder that is a run directory itself or inside its records
    (``RUN/eval``, ``RUN/checkpoints``): those are written by training only and checked by
    ``dsan audit``."""
    target = Path(out).resolve()
    if (target / "config.json").is_file():
        raise InputError(
            f"--out {out} is a run directory, whose records only training writes; write an evaluation "
            f"elsewhere (default: {target / EVALUATIONS_DIR}/...)"
        )
    for parent in (target, *target.parents):
        if parent.name in RECORD_DIRS and (parent.parent / "config.json").is_file():
            raise InputError(
                f"--out {out} is inside the records of run {parent.parent} ({parent.name}/), which only training "
                f"writes; write an evaluation elsewhere (default: {parent.parent / EVALUATIONS_DIR}/...)"
            )


def prepare_eval_out(out: Path, overwrite: bool) -> Path:
    """The folder of an evaluation's outputs: not inside a run's records, and not holding an
    earlier evaluation unless ``overwrite``."""
    out = Path(out)
    refuse_run_records(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a folder")
    held = [f for f in (PREDICTIONS_FILE, EVAL_RECORD_FILE) if (out / f).exists()]
    if held and not overwrite:
        raise InputError(
            f"{out} already holds an evaluation ({', '.join(held)}); pass --overwrite to replace it, "
            "or choose another --out"
        )
    return out


def exploratory_out(run: Path, label: str, crop: int, store_hash: str) -> Path:
    """Default folder of ``dsan eval --run``: ``RUN/evaluations/<label>-crop<k>-<store hash 8>``."""
    return Path(run) / EVALUATIONS_DIR / f"{label}-crop{crop}-{store_hash[:8]}"


def evaluate_run(opts: EvalOptions, on_event: Listener | None = None) -> dict[str, Any]:
    """``dsan eval --run RUN_DIR``: evaluate a run's checkpoint (``--select``, default the run's
    selected one) on its store (or ``--features``) into ``--out`` or
    ``RUN_DIR/evaluations/<label>-crop<k>-<store hash>``. The run's own records (``eval/``) are
    never written: they are training's. The store is found and checked by
    :func:`~dsan_toolkit.train.store_identity.open_run_store`."""
    run = Path(opts.run)  # type: ignore[arg-type]
    cj = run / "config.json"
    if not cj.is_file():
        raise InputError(f"{run} is not a run directory (no config.json); see docs/training.md")
    cfg = read_run_config(cj)
    label = opts.select or _run_selected(run, cfg.select)
    if label not in SELECTIONS:
        raise InputError(f"unknown --select {label!r}; choose one of {', '.join(SELECTIONS)}")
    if not (run / "metrics.json").is_file():
        raise InputError(
            f"{run} is not a finished run (no metrics.json): its checkpoints are intermediate. Finish it (the same "
            "dsan train command resumes), or evaluate one on purpose with --checkpoint FILE --out DIR"
        )
    ck = run / "checkpoints" / f"{label}.safetensors"
    if not ck.is_file():
        raise InputError(f"{run} has no {label} checkpoint ({ck.name}); was it trained with --select {label}?")
    out = prepare_eval_out(opts.out, opts.overwrite) if opts.out is not None else None  # before any work
    device = resolve_device(opts.device)
    say = emitter(on_event, logger)
    say(message("hashing the feature store (its identity is checked against the run's)"))
    use = open_run_store(cfg, opts.features, run=run)
    manifest = resolve_manifest_for(use.store, opts.dataset)
    crop = cfg.test_crop if opts.test_crop is None else int(opts.test_crop)
    out = out or prepare_eval_out(exploratory_out(run, label, crop, use.actual_hash), opts.overwrite)
    return _evaluate_ours(
        opts,
        cfg,
        ck,
        use,
        manifest,
        crop,
        out,
        device,
        label=label,
        selection=label,
        checkpoint_name=ck.name,
        extra={"run": str(run.resolve())},
        on_event=on_event,
    )


def _evaluate_ours(
    opts: EvalOptions,
    cfg: RunConfig,
    ck: Path,
    use: StoreUse,
    manifest: Manifest,
    crop: int,
    out: Path,
    device: torch.device,
    *,
    label: str,
    selection: str | None,
    checkpoint_name: str,
    extra: dict[str, Any],
    on_event: Listener | None,
) -> dict[str, Any]:
    """A checkpoint of ours on the store ``use`` found: build, load, predict, write."""
    method = get_method(cfg.method)
    test = _test_set(use.store, manifest, crop, cfg.feature_dim)
    model = build_model(method, cfg, manifest, device, opts.clip_weights)
    load_weights(model, ck, device)
    return evaluate_and_write(
        method,
        model,
        manifest,
        test,
        out,
        length=cfg.preset.visual_length,
        device=device,
        batch=opts.batch,
        label=label,
        selection=selection,
        config_hash=cfg.hash,
        store_hash=use.actual_hash,
        manifest_hash=manifest.content_hash(),
        checkpoint={"file": checkpoint_name, "sha256": sha256_file(ck)},
        extra={**extra, "store": use.record(), "out": str(out)},
        on_event=on_event,
        **opts.eval_kwargs(),
    )


def _run_selected(run: Path, select: str) -> str:
    mj = run / "metrics.json"
    if mj.is_file():
        return str(json.loads(mj.read_text()).get("selected", select))
    return "last"


def evaluate_checkpoint(opts: EvalOptions, on_event: Listener | None = None) -> dict[str, Any]:
    """``dsan eval --checkpoint FILE [--features STORE] --out DIR``: a checkpoint of ours (its
    config, and so its training store's path and identity, is in its metadata)."""
    ck = Path(opts.checkpoint)  # type: ignore[arg-type]
    if opts.out is None:
        raise InputError("pass --out DIR for the predictions and metrics")
    out = prepare_eval_out(opts.out, opts.overwrite)
    meta = read_metadata(ck)
    if "config" not in meta:
        raise InputError(f"{ck} carries no run config; for the authors' .pth files use --official-checkpoint")
    try:
        cfg = run_config_from_json(json.loads(meta["config"]))
    except (InputError, KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{ck}: its recorded run config is not valid ({exc})") from None
    device = resolve_device(opts.device)
    emitter(on_event, logger)(message("hashing the feature store (its identity is checked against the checkpoint's)"))
    use = open_run_store(cfg, opts.features, run=ck)
    manifest = resolve_manifest_for(use.store, opts.dataset)
    _check_classes(manifest, cfg.manifest_hash, cfg.dataset)
    crop = cfg.test_crop if opts.test_crop is None else int(opts.test_crop)
    return _evaluate_ours(
        opts,
        cfg,
        ck,
        use,
        manifest,
        crop,
        out,
        device,
        label=meta.get("selection", "checkpoint"),
        selection=meta.get("selection"),
        checkpoint_name=str(ck),
        extra={"epoch": meta.get("epoch"), "step": meta.get("step")},
        on_event=on_event,
    )


def _check_classes(manifest: Manifest, trained_hash: str, trained_name: str) -> None:
    if manifest.content_hash() != trained_hash and manifest.name != trained_name:
        raise InputError(f"the checkpoint was trained on {trained_name!r}, the store holds {manifest.name!r}")


def evaluate_official(opts: EvalOptions, on_event: Listener | None = None) -> dict[str, Any]:
    """``dsan eval --official-checkpoint FILE --method M --features STORE --out DIR``: the
    authors' released ``.pth`` (loaded with ``weights_only=True``) through our model."""
    if not opts.method:
        raise InputError("--official-checkpoint needs --method (dsanet or vadclip)")
    if opts.features is None or opts.out is None:
        raise InputError("--official-checkpoint needs --features STORE and --out DIR")
    out = prepare_eval_out(opts.out, opts.overwrite)
    try:
        from ..models.official import load_official_checkpoint
    except ImportError:
        raise InputError("loading official checkpoints is not available in this installation") from None
    device = resolve_device(opts.device)
    method = get_method(opts.method)
    store = open_feature_store(Path(opts.features))
    manifest = resolve_manifest_for(store, opts.dataset)
    preset_name = opts.preset or manifest.name
    if preset_name not in method.presets:
        raise InputError(f"pass --preset ({', '.join(sorted(method.presets))}) for dataset {manifest.name!r}")
    preset = method.get_preset(preset_name)
    test = _test_set(store, manifest, opts.test_crop, int(preset.feature_dim))
    loaded = load_official_checkpoint(
        method.name,
        Path(opts.official_checkpoint),
        preset=preset_name,  # type: ignore[arg-type]
        classes=manifest.info.classes,
        device=device,
        clip_model=opts.clip_model,
    )
    model = loaded.model.to(device)
    ck = Path(opts.official_checkpoint)  # type: ignore[arg-type]
    return evaluate_and_write(
        method,
        model,
        manifest,
        test,
        out,
        length=int(preset.visual_length),
        device=device,
        batch=opts.batch,
        label="official",
        selection="official-checkpoint",
        config_hash=None,
        store_hash=store.content_hash(),
        manifest_hash=manifest.content_hash(),
        checkpoint={"file": str(ck), "sha256": sha256_file(ck), "official": True},
        extra={"preset": preset_name, "out": str(out)},
        on_event=on_event,
        **opts.eval_kwargs(),
    )
