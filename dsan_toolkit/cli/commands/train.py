"""`dsan train` and `dsan eval`: training runs and evaluations on feature stores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from ... import keys
from ...errors import InputError
from ..base import add_command
from ..errors import console, err_console, user_errors
from ..progress import ProgressRenderer


def _parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``--set key=value`` (value parsed as JSON when it is JSON, else kept as a string)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise InputError(f"--set expects KEY=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip().replace("-", "_")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if isinstance(value, list):
            value = tuple(value)
        out[key] = value
    return out


@user_errors
def train_cmd(
    method: str = typer.Option(
        ..., "--method", "-m", help="Method to train (`dsan models` lists them): dsanet, vadclip, mil, zeroshot."
    ),
    features: Path = typer.Option(
        ...,
        "--features",
        "-f",
        help="Feature store (.zarr) written by `dsan extract`, `dsan import-features` or `dsan synth --features`.",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory (created; an unfinished one is resumed)."),
    dataset: str | None = typer.Option(
        None,
        "--dataset",
        "-d",
        help="Built-in dataset or manifest file the store must match (default: the store's own manifest).",
    ),
    preset: str | None = typer.Option(
        None, "--preset", help="Method preset: ucf, xd (official) or tiny (CPU demo). Default: the dataset's name."
    ),
    seed: int | None = typer.Option(
        None, "--seed", help="Random seed (default: the preset's, 234 as the official scripts)."
    ),
    epochs: int | None = typer.Option(None, "--epochs", help="Number of epochs (default: the preset's)."),
    device: str = typer.Option(
        "cpu", "--device", help="cpu, cuda, cuda:N or auto. Under torchrun, cuda means each rank's local GPU."
    ),
    select: str = typer.Option(
        "last",
        "--select",
        help="Model selection: 'last' (honest default), 'best-on-val' (best video-level AUC/AP on a validation split held out of the training videos) or 'best-on-test' (the official scripts' test-set selection). The last model is always evaluated too; every number is labelled.",
    ),
    val_split: Path | None = typer.Option(
        None,
        "--val-split",
        help="best-on-val: a validation split file (`dsan manifest val-split`). Default: the built-in dataset's committed split, else one derived with --val-fraction/--val-seed.",
    ),
    val_fraction: float | None = typer.Option(
        None,
        "--val-fraction",
        help="best-on-val: share of each class's training videos held out (default 0.1; rounding in docs/training.md).",
    ),
    val_seed: int | None = typer.Option(None, "--val-seed", help="best-on-val: seed of the derived split (default 0)."),
    deterministic: bool = typer.Option(
        False, "--deterministic", help="Deterministic kernels (torch.use_deterministic_algorithms); slower on GPU."
    ),
    test_crop: int | None = typer.Option(
        None, "--test-crop", help="Crop evaluated at test time (default: the dataset's official one: UCF 5, XD 0)."
    ),
    set_: list[str] | None = typer.Option(
        None, "--set", help="Override a preset field, e.g. --set batch_size=16 --set lr=1e-4 (recorded in the config)."
    ),
    checkpoint_every: int = typer.Option(
        0, "--checkpoint-every", help="Also write a resume checkpoint every N steps (0: only at epoch ends)."
    ),
    stop_after: int | None = typer.Option(
        None,
        "--stop-after-steps",
        help="Stop after N steps leaving a resumable run (for testing resume and time-limited jobs).",
    ),
    clip_weights: Path | None = typer.Option(
        None,
        "--clip-weights",
        help="Local CLIP weight file for the text encoder (offline machines); required, the same file, for features extracted from one.",
    ),
    clip_model: str | None = typer.Option(
        None,
        "--clip-model",
        help="Force the text encoder's open_clip architecture (random-init unless --clip-weights), e.g. ViT-B-16 for official shapes on synthetic features.",
    ),
    eval_batch: int = typer.Option(64, "--eval-batch", help="256-snippet chunks per forward pass at evaluation."),
    cache: str = typer.Option(
        "auto",
        "--cache",
        help="Training features: 'memory' (resampled split cached once), 'none' (read from the store per batch), 'auto' (memory when it takes at most 70% of the free RAM). Same batches either way.",
    ),
    precision: str = typer.Option(
        "fp32",
        "--precision",
        help="Training arithmetic: fp32 (default, the official numbers), bf16 (autocast) or fp16 (autocast and a gradient scaler; CUDA only). Recorded in the run config.",
    ),
    log_every: int = typer.Option(
        0,
        "--log-every",
        help="Read the step losses from the device every N steps (one transfer; 0: every step on CPU, every 25 on GPU). Every step is logged either way.",
    ),
    progress: bool = typer.Option(
        True,
        "--progress/--no-progress",
        help="Progress: a bar on a terminal, else one line per epoch (and every tenth of a long epoch).",
    ),
) -> None:
    """Train a method on a feature store into a run directory (config, checkpoints, log, metrics).

    The run directory layout is documented in docs/training.md. Running the same command on an unfinished run directory resumes it; on a finished one it does nothing. Under `torchrun` the processes train data-parallel (gloo on CPU, nccl on GPU) and rank 0 writes.

    Examples:
      dsan train --method dsanet --features ucf.zarr --dataset ucf --out runs/dsanet-ucf
      dsan train -m vadclip -f xd.zarr --out runs/vadclip-xd --select best-on-test --device cuda
      dsan train -m dsanet -f ucf.zarr -d ucf --out runs/dsanet-val --select best-on-val
      dsan train -m vadclip -f my.zarr --out runs/v --select best-on-val --val-fraction 0.2 --val-seed 1
      dsan train -m vadclip -f synth.zarr --preset tiny --epochs 2 --out runs/demo
      torchrun --nproc-per-node 2 -m dsan_toolkit.cli.app train -m vadclip -f s.zarr --preset tiny --out runs/ddp
    """
    from ...manifest.valsplit import DEFAULT_FRACTION, DEFAULT_SEED
    from ...train.run import TrainOptions, train

    if select != "best-on-val" and (val_split, val_fraction, val_seed) != (None, None, None):
        raise InputError(f"--val-split, --val-fraction and --val-seed need --select best-on-val (not {select!r})")
    if val_split is not None and (val_fraction, val_seed) != (None, None):
        raise InputError("give either --val-split FILE or --val-fraction/--val-seed, not both")
    opts = TrainOptions(
        method=method,
        features=features,
        out=out,
        dataset=dataset,
        preset=preset,
        seed=seed,
        epochs=epochs,
        device=device,
        select=select,
        deterministic=deterministic,
        test_crop=test_crop,
        overrides=_parse_overrides(set_),
        checkpoint_every=checkpoint_every,
        stop_after_steps=stop_after,
        clip_weights=clip_weights,
        clip_model=clip_model,
        progress=progress,
        eval_batch=eval_batch,
        cache=cache,
        val_split=val_split,
        val_fraction=DEFAULT_FRACTION if val_fraction is None else val_fraction,
        val_seed=DEFAULT_SEED if val_seed is None else val_seed,
        precision=precision,
        log_every=log_every,
    )
    with ProgressRenderer(err_console, enabled=progress) as render:
        result = train(opts, on_event=render)
    if not result.finished or not result.metrics:
        return
    _print_results(result.metrics.get("results", {}), result.metrics.get("selected"), out)


TABLE_METRICS = (keys.AUC, keys.AP, keys.AUC_ALIGN, keys.AP_ALIGN, keys.AUC_ANOMALOUS, keys.MAP_MEAN)


def _print_results(results: dict[str, Any], selected: str | None, where: Path) -> None:
    """The test metrics of each model, in percent like every table of the toolkit."""
    from rich.table import Table

    from ...bench.table import METRICS, TABLE_UNIT, table_metrics

    table = Table(
        title=f"test metrics ({TABLE_UNIT}), {where}", caption="* the run's selected model" if selected else None
    )
    table.add_column("model", no_wrap=True)
    for k in TABLE_METRICS:
        table.add_column(METRICS[k].label, justify="right")
    for label, entry in results.items():
        m = table_metrics(entry.get(keys.METRICS, {}))
        name = f"{label} *" if label == selected else label
        table.add_row(
            name, *("-" if m.get(k) is None else f"{m[k] * METRICS[k].to_percent:.2f}" for k in TABLE_METRICS)
        )
    console.print(table)


DETAIL_METRICS = (
    keys.AUC,
    keys.AP,
    keys.AUC_ANOMALOUS,
    keys.AUC_MACRO,
    keys.FAR,
    *keys.TPR_AT_FPR,
    keys.AUC_ALIGN,
    keys.AP_ALIGN,
    keys.align(keys.FAR),
    keys.MAP_MEAN,
)


def _print_details(rec: dict[str, Any]) -> None:
    """Every scalar metric of an evaluation with its bootstrap interval, and the per-class AUC."""
    from rich.markup import escape
    from rich.table import Table

    m, ci = rec.get(keys.METRICS, {}), rec.get(keys.CI) or {}
    intervals = ci.get(keys.CI_INTERVALS, {})
    level = ci.get(keys.CI_LEVEL)
    head = f"{level * 100:g}% CI" if level else "CI"
    caption = (
        f"intervals: video bootstrap, {ci.get(keys.CI_RESAMPLES)} resamples, seed {ci.get(keys.CI_SEED)}"
        if ci
        else "no intervals (--bootstrap 0)"
    )
    if m.get(keys.MAP_PROTOCOL):
        caption += f"; mAP protocol {m[keys.MAP_PROTOCOL]} (normal class: {m.get(keys.MAP_NORMAL_CLASS)})"
    table = Table(title="metrics (%) with intervals", caption=escape(caption))
    for col, just in (("metric", "left"), ("value", "right"), (head, "right")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for k in DETAIL_METRICS:
        v = m.get(k)
        if k not in m:
            continue
        scale = 1.0 if k in keys.FINE_GRAINED else 100.0  # mAP is stored in percent, the rest as fractions
        lohi = intervals.get(k)
        table.add_row(
            k,
            "-" if v is None else f"{v * scale:.2f}",
            "" if not lohi else f"[{lohi[0] * scale:.2f}, {lohi[1] * scale:.2f}]",
        )
    console.print(table)
    per_class = m.get(keys.CLASS_AUC) or {}
    if per_class:
        shown = ", ".join(f"{c} {'-' if v is None else f'{v * 100:.1f}'}" for c, v in per_class.items())
        console.print(f"per-class AUC (%): {escape(shown)}")


@user_errors
def eval_cmd(
    run: Path | None = typer.Option(None, "--run", help="Run directory of `dsan train`."),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="A checkpoint of ours (.safetensors; carries its config)."
    ),
    official_checkpoint: Path | None = typer.Option(
        None,
        "--official-checkpoint",
        help="The authors' released .pth (loaded with weights_only=True); needs --method.",
    ),
    method: str | None = typer.Option(
        None, "--method", "-m", help="Method of an official checkpoint: dsanet or vadclip."
    ),
    preset: str | None = typer.Option(
        None, "--preset", help="Preset of an official checkpoint (default: the dataset's name)."
    ),
    features: Path | None = typer.Option(
        None, "--features", "-f", help="Feature store (default for --run: the run's store)."
    ),
    dataset: str | None = typer.Option(
        None, "--dataset", "-d", help="Built-in dataset or manifest file (default: the store's manifest)."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Output folder (default for --run: RUN_DIR/evaluations/<label>-crop<k>-<store hash>)."
    ),
    select: str | None = typer.Option(
        None,
        "--select",
        help="Which checkpoint of a run: last, best-on-val or best-on-test (default: the run's selection).",
    ),
    test_crop: int | None = typer.Option(
        None, "--test-crop", help="Crop to evaluate (default: the dataset's official test crop)."
    ),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or auto."),
    eval_batch: int = typer.Option(64, "--eval-batch", help="256-snippet chunks per forward pass."),
    clip_weights: Path | None = typer.Option(
        None,
        "--clip-weights",
        help="Local CLIP weight file of the model's text encoder (default: the path its run recorded); checked by sha256.",
    ),
    clip_model: str | None = typer.Option(
        None,
        "--clip-model",
        help="open_clip architecture of an official checkpoint's embedded CLIP (default: the release's ViT-B-16).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier evaluation in the output folder."),
    map_protocol: str = typer.Option(
        "official",
        "--map-protocol",
        help="Detection-mAP protocol: official (the published numbers) or corrected (anomaly classes only; a class without proposals scores 0 alone).",
    ),
    bootstrap: int = typer.Option(
        1000, "--bootstrap", help="Video resamples behind the 95% confidence intervals (0: no intervals)."
    ),
    bootstrap_seed: int = typer.Option(0, "--bootstrap-seed", help="Seed of the bootstrap resamples."),
    progress: bool = typer.Option(
        True, "--progress/--no-progress", help="Say what is being done and count the chunks predicted."
    ),
) -> None:
    """Evaluate a model on a store's test split: per-video scores (predictions.npz) and metrics.json.

    Exactly one of --run, --checkpoint, --official-checkpoint. An evaluation never writes into a run's own records (RUN/eval/, written by training and checked by `dsan audit`): `--run` writes to --out or RUN/evaluations/<label>-crop<k>-<store hash>/. The run's store is its recorded (absolute) path, refused when its content hash is not the one the run was trained on; `--features` evaluates on another store on purpose, and the difference is recorded and printed. Scores are written per snippet (classifier score, alignment score, class probabilities) as a numpy .npz readable with allow_pickle=False; metrics are frame AUC/AP of both branches, AUC on anomalous videos, false alarm rate on normal videos, TPR at FPR 1% and 5%, per-class AUC and its macro mean, and detection mAP@0.1..0.5 under --map-protocol; metrics.json holds them with video-bootstrap 95% intervals (docs/eval.md).

    Examples:
      dsan eval --run runs/dsanet-ucf
      dsan eval --run runs/vadclip-xd --select best-on-test --out ev/best
      dsan eval --run runs/dsanet-ucf --features ucf_released.zarr --out ev/released
      dsan eval --checkpoint runs/a/checkpoints/last.safetensors --features ucf.zarr --out ev/a
      dsan eval --official-checkpoint model_ucf.pth --method vadclip --features ucf.zarr --out ev/official
      dsan eval --run runs/dsanet-ucf --map-protocol corrected --bootstrap 2000 --out ev/corrected
    """
    from ...train.evaluate import EvalOptions, evaluate_checkpoint, evaluate_official, evaluate_run

    given = [x for x in (run, checkpoint, official_checkpoint) if x is not None]
    if len(given) != 1:
        raise InputError("give exactly one of --run, --checkpoint, --official-checkpoint")
    opts = EvalOptions(
        run=run,
        checkpoint=checkpoint,
        official_checkpoint=official_checkpoint,
        method=method,
        preset=preset,
        features=features,
        dataset=dataset,
        out=out,
        select=select,
        test_crop=test_crop,
        device=device,
        batch=eval_batch,
        clip_weights=clip_weights,
        clip_model=clip_model,
        overwrite=overwrite,
        map_protocol=map_protocol,
        bootstrap=bootstrap,
        bootstrap_seed=bootstrap_seed,
    )
    evaluate = evaluate_run if run is not None else evaluate_checkpoint if checkpoint is not None else evaluate_official
    with ProgressRenderer(err_console, enabled=progress) as render:
        rec = evaluate(opts, on_event=render)
    where = Path(rec["out"])
    _print_results({rec["label"]: rec}, None, where)
    _print_details(rec)
    from rich.markup import escape

    from ...train.store_identity import difference_label

    label = difference_label(rec.get("store") or {})
    if label:
        console.print(f"[bold yellow]note:[/bold yellow] {escape(label)} (recorded in metrics.json)")
    console.print(f"wrote {where / 'predictions.npz'} and {where / 'metrics.json'}")


def register(app: typer.Typer) -> None:
    add_command(app, "train", train_cmd)
    add_command(app, "eval", eval_cmd)
