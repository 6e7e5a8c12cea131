"""The end of a run: the selected models evaluated on the test split, ``metrics.json``.

- :func:`finish_run`: a trained run's ``last`` model and, with ``--select best-on-test`` or
  ``best-on-val``, the model selected during training (written as
  ``checkpoints/<label>.safetensors``), each evaluated on the test split into ``eval/<label>/``
  and summarised, labelled, in ``metrics.json`` (``selected``: the label the run reports).
- :func:`training_free_run`: a training-free method (zero-shot CLIP) as a run directory of the
  same layout.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from ..config import sha256_file
from ..manifest.schema import Manifest
from ..models.api import Method
from ..progress import Listener, message
from ..store.protocol import FeatureStoreLike
from .checkpoint import RunConfig, atomic_write_json, config_json, save_weights
from .environment import capture_environment
from .predictions import evaluate_and_write
from .rundir import write_run_summary
from .runlog import RunLog
from .setup import IN_TRAINING, LAST, build_model, count_params, seed_everything
from .testset import TestSet, build_test_set
from .trainer import Trainer


def finish_run(trainer: Trainer) -> dict[str, Any]:
    """Evaluate the last model (and the one selected during training: best-on-test or
    best-on-val) on the test split, write eval/ and metrics.json (rank 0)."""
    out, cfg = trainer.out, trainer.cfg
    results: dict[str, Any] = {}
    selected = cfg.select in IN_TRAINING and trainer.state.best_model is not None
    labels = [LAST] + ([cfg.select] if selected else [])
    for label in labels:
        if label == LAST:
            trainer.model.load_state_dict(trainer.last_model)
            ck = out / "checkpoints" / "last.safetensors"
        else:
            trainer.model.load_state_dict(trainer.state.best_model)
            ck = out / "checkpoints" / f"{label}.safetensors"
            save_weights(
                trainer.model,
                ck,
                trainer.checkpoint_meta(
                    label,
                    selection_metric=cfg.selection_metric,
                    value=trainer.state.best_value,
                    best_step=trainer.state.best_step,
                ),
            )
        rec = evaluate_checkpoint(
            cfg,
            trainer.method,
            trainer.model,
            trainer.manifest,
            trainer.test,
            out,
            label,
            ck,
            trainer.device,
            trainer.eval_batch,
        )
        entry: dict[str, Any] = {"metrics": rec["metrics"], "checkpoint": ck.name}
        if label != LAST:
            entry.update(
                selection_metric=cfg.selection_metric,
                value=trainer.state.best_value,
                step=trainer.state.best_step,
                epoch=trainer.state.best_epoch,
            )
        else:
            entry.update(step=trainer.state.step, epoch=cfg.preset.epochs - 1)
        results[label] = entry
    trainer.log.write("end", seconds=trainer.state.train_seconds, selections=list(results))
    return write_run_summary(
        out,
        cfg,
        results,
        selected=cfg.select if cfg.select in results else LAST,
        params=count_params(trainer.model),
        train_seconds=trainer.state.train_seconds,
        steps=trainer.state.step,
    )


def evaluate_checkpoint(
    cfg: RunConfig,
    method: Method,
    model: torch.nn.Module,
    manifest: Manifest,
    test: TestSet,
    out: Path,
    label: str,
    ck: Path,
    device: torch.device,
    batch: int,
) -> dict[str, Any]:
    """Evaluate the model of checkpoint ``ck`` (selection ``label``) on the test set into
    ``out/eval/<label>/``, recorded with the run's identity."""
    return evaluate_and_write(
        method,
        model,
        manifest,
        test,
        out / "eval" / label,
        length=int(cfg.preset.visual_length),
        device=device,
        batch=batch,
        label=label,
        selection=label,
        config_hash=cfg.hash,
        store_hash=cfg.store_hash,
        manifest_hash=cfg.manifest_hash,
        checkpoint={"file": ck.name, "sha256": sha256_file(ck)},
    )


def training_free_run(
    out: Path,
    eval_batch: int,
    clip_weights: Path | None,
    cfg: RunConfig,
    method: Method,
    manifest: Manifest,
    store: FeatureStoreLike,
    device: torch.device,
    say: Listener,
) -> dict[str, Any]:
    """A training-free method (zero-shot CLIP) as a run directory of the same layout: config,
    environment, the frozen weights as the ``last`` checkpoint, predictions and metrics."""
    out = Path(out)
    t0 = time.perf_counter()
    seed_everything(cfg.seed, cfg.deterministic)
    atomic_write_json(out / "environment.json", capture_environment(device, deterministic=cfg.deterministic))
    log = RunLog(out / "log.jsonl", True)
    log.write("start", config_hash=cfg.hash, resumed_from=None, world_size=1, training_free=True)
    model = build_model(method, cfg, manifest, device, clip_weights)
    ck = out / "checkpoints" / "last.safetensors"
    save_weights(
        model,
        ck,
        {
            "method": cfg.method,
            "config_hash": cfg.hash,
            "config": json.dumps(config_json(cfg)),
            "selection": LAST,
            "epoch": "0",
            "step": "0",
        },
    )
    test = build_test_set(store, [v.id for v in manifest.split("test")], cfg.test_crop)
    say(message(f"{method.name} is training-free: evaluating on {len(test.video_ids)} test videos"))
    rec = evaluate_checkpoint(cfg, method, model, manifest, test, out, LAST, ck, device, eval_batch)
    log.write("end", seconds=0.0, selections=[LAST])
    results = {LAST: {"metrics": rec["metrics"], "checkpoint": ck.name, "step": 0, "epoch": 0}}
    return write_run_summary(
        out,
        cfg,
        results,
        selected=LAST,
        params=count_params(model),
        train_seconds=0.0,
        steps=0,
        eval_seconds=time.perf_counter() - t0,
        training_free=True,
    )
