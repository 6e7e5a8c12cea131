"""`dsan synth`: a small synthetic WS-VAD dataset of real H.264 videos plus its manifest."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import typer

from ...config import config_hash, from_dict
from ...datasets.synth import (
    EVENTS,
    MANIFEST_NAME,
    SIDECAR_NAME,
    SynthConfig,
    is_complete,
    list_events,
    make_synthetic_dataset,
)
from ...errors import InputError
from ...manifest import Manifest
from ..base import add_command
from ..errors import console, err_console, user_errors
from ..progress import ProgressRenderer
from .datasets import class_counts_table

_LIKE = {
    "ucf": {"class_table": "ucf", "num_train": 1610, "num_test": 290, "crops": 10, "fps": 30.0},
    "xd": {"class_table": "xd", "num_train": 3954, "num_test": 800, "crops": 10, "fps": 24.0},
}


def _synth_features(store: Path, config: Path | None, like: str | None, seed: int | None, overwrite: bool) -> None:
    """`dsan synth --features`: a synthetic feature store (dsan_toolkit.store.synthetic)."""
    from ...store.synthetic import SynthFeaturesConfig, write_synthetic_feature_store

    cfg = _load_config(config, SynthFeaturesConfig) if config is not None else SynthFeaturesConfig()
    if like is not None:
        if like not in _LIKE:
            raise InputError(f"--like must be one of {sorted(_LIKE)}, not {like!r}")
        cfg = replace(cfg, **_LIKE[like])  # type: ignore[arg-type]
    if seed is not None:
        cfg = replace(cfg, seed=seed)
    with console.status(f"writing {cfg.num_train + cfg.num_test} videos x {cfg.crops} crops of synthetic features"):
        path = write_synthetic_feature_store(store, cfg, overwrite=overwrite)
    console.print(
        f"[green]wrote[/green] {path}: synthetic CLIP-like features ({cfg.class_table} classes), "
        f"{cfg.num_train} train / {cfg.num_test} test videos, {cfg.crops} crops, dim {cfg.feature_dim}; "
        f"config sha256 {config_hash(cfg)[:16]}…"
    )


def _load_config(path: Path, cls: type = SynthConfig):  # noqa: ANN202 - an instance of cls
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a JSON config ({exc})") from None
    if isinstance(data, dict) and "config" in data and isinstance(data["config"], dict):
        data = data["config"]  # a synth.json sidecar
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object of {cls.__name__} fields")
    try:
        cfg = from_dict({**data, "type": cls.__name__}, cls)
    except TypeError as exc:
        raise InputError(f"{path}: {exc}") from None
    return cfg


def _parse_classes(text: str) -> tuple[str, ...]:
    names = tuple(c.strip() for c in text.split(",") if c.strip())
    unknown = [c for c in names if c not in EVENTS]
    if unknown or not names:
        raise InputError(f"--classes: unknown event classes {unknown}; known: {', '.join(list_events())}")
    return names


def _print_summary(out: Path, cfg: SynthConfig, manifest: Manifest) -> None:
    title = f"synthetic dataset in {out}: {len(manifest)} videos, {cfg.width}x{cfg.height} @ {cfg.fps:g} fps"
    table = class_counts_table(manifest, title, totals=("annotated",))
    frames = [v.num_frames or 0 for v in manifest.videos]
    console.print(table)
    console.print(
        f"{sum(frames)} frames ({min(frames)}-{max(frames)} per video); "
        f"manifest: {out / MANIFEST_NAME}; config sha256 {config_hash(cfg)[:16]}… in {out / SIDECAR_NAME}"
    )


@user_errors
def synth_cmd(
    out: Path = typer.Option(None, "--out", "-o", help="Output folder (videos/, manifest.jsonl, synth.json)."),
    features: Path = typer.Option(
        None, "--features", "-f", help="Instead of videos, write a synthetic CLIP-like feature store (.zarr) here."
    ),
    like: str = typer.Option(
        None,
        "--like",
        help="With --features: the size and classes of 'ucf' (1,610/290 videos) or 'xd' (3,954/800), 10 crops.",
    ),
    config: Path = typer.Option(
        None,
        "--config",
        help="JSON file of SynthConfig fields (or a synth.json; SynthFeaturesConfig with --features); options override it.",
    ),
    seed: int = typer.Option(None, "--seed", help="Random seed (same seed, same pixels). [default: 0]"),
    train_normal: int = typer.Option(None, "--train-normal", help="Normal training videos. [default: 8]"),
    train_anomalous: int = typer.Option(
        None, "--train-anomalous", help="Anomalous training videos (weak labels). [default: 8]"
    ),
    test_normal: int = typer.Option(None, "--test-normal", help="Normal test videos. [default: 4]"),
    test_anomalous: int = typer.Option(
        None, "--test-anomalous", help="Anomalous test videos (with segments). [default: 6]"
    ),
    min_frames: int = typer.Option(None, "--min-frames", help="Shortest video, in frames. [default: 160]"),
    max_frames: int = typer.Option(None, "--max-frames", help="Longest video, in frames. [default: 320]"),
    width: int = typer.Option(None, "--width", help="Frame width (even). [default: 160]"),
    height: int = typer.Option(None, "--height", help="Frame height (even). [default: 120]"),
    fps: float = typer.Option(None, "--fps", help="Frame rate. [default: 16]"),
    classes: str = typer.Option(
        None, "--classes", help=f"Comma-separated event classes, from: {', '.join(sorted(EVENTS))}."
    ),
    workers: int = typer.Option(1, "--workers", "-j", help="Processes rendering and encoding videos."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace a synthetic dataset (or store) made with another config."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Count the videos made."),
) -> None:
    """Generate a small synthetic WS-VAD dataset: real H.264 videos and their manifest.

    Normal videos: a slowly panning textured scene with drifting blobs.
    Anomalous videos add a large class-specific event in 1-2 intervals:
    fire (pulsing red/orange disc), fight (two squares clashing), crash (streak).
    Training anomalous videos are weakly labelled; test ones carry segments.
    Deterministic for a seed; the same config again reuses the folder.
    With --features: a synthetic feature store instead (for training tests).

    Examples:
      dsan synth --out synth
      dsan synth --out big --train-normal 40 --train-anomalous 40 -j 2
      dsan synth --out s2 --seed 1 --classes fire,crash --width 224 --height 224
      dsan synth --features feats.zarr --like ucf     (CLIP-like features, no video)
    """
    video_opts = {
        "--train-normal": train_normal,
        "--train-anomalous": train_anomalous,
        "--test-normal": test_normal,
        "--test-anomalous": test_anomalous,
        "--min-frames": min_frames,
        "--max-frames": max_frames,
        "--width": width,
        "--height": height,
        "--fps": fps,
        "--classes": classes,
    }
    if (out is None) == (features is None):
        raise InputError("give exactly one of --out DIR (videos) and --features STORE.zarr (features)")
    if features is not None:
        given = [k for k, v in video_opts.items() if v is not None]
        if given:
            raise InputError(
                f"{', '.join(given)}: video options, not for --features (use --config for a feature config)"
            )
        _synth_features(features, config, like, seed, overwrite)
        return
    if like is not None:
        raise InputError("--like only applies to --features")
    cfg = _load_config(config) if config is not None else SynthConfig()
    overrides = {
        "seed": seed,
        "train_normal": train_normal,
        "train_anomalous": train_anomalous,
        "test_normal": test_normal,
        "test_anomalous": test_anomalous,
        "min_frames": min_frames,
        "max_frames": max_frames,
        "width": width,
        "height": height,
        "fps": fps,
        "classes": None if classes is None else _parse_classes(classes),
    }
    cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    cfg.check()
    if workers < 1:
        raise InputError("--workers must be >= 1")
    if is_complete(out, cfg) and not overwrite:
        console.print(f"{out} already holds this dataset (same config): reusing it")
    total = cfg.train_normal + cfg.train_anomalous + cfg.test_normal + cfg.test_anomalous
    with ProgressRenderer(err_console, enabled=progress) as render, render.task("synth", total, unit="videos") as done:
        manifest = make_synthetic_dataset(out, cfg, overwrite=overwrite, workers=workers, progress=lambda _vid: done())
    _print_summary(out, cfg, manifest)


def register(app: typer.Typer) -> None:
    add_command(app, "synth", synth_cmd)
