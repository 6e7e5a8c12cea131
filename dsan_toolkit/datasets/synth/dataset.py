"""The synthetic dataset on disk: its manifest, the ``synth.json`` sidecar, and the driver
:func:`make_synthetic_dataset` (plan, render, encode each video; reuse a finished folder)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...config import config_hash, to_dict
from ...errors import InputError
from ...manifest import ClassInfo, DatasetInfo, Manifest, Segment, VideoRecord, read_manifest, write_manifest
from ...utils.atomic import atomic_write_json
from .encode import write_video
from .events import EVENTS
from .plan import PlannedVideo, SynthConfig, plan_dataset
from .render import render_video

MANIFEST_NAME = "manifest.jsonl"
SIDECAR_NAME = "synth.json"
NORMAL_CODE = "Normal"


def class_table(cfg: SynthConfig) -> tuple[ClassInfo, ...]:
    classes = [ClassInfo(NORMAL_CODE, "normal", "normal", normal=True)]
    classes += [ClassInfo(EVENTS[c].code, EVENTS[c].name, EVENTS[c].prompt) for c in cfg.classes]
    return tuple(classes)


def build_manifest(cfg: SynthConfig) -> Manifest:
    """The manifest of a config (no video is written)."""
    chash = config_hash(cfg)
    info = DatasetInfo(
        name="synth",
        classes=class_table(cfg),
        fps=float(cfg.fps),
        snippet_len=cfg.snippet_len,
        test_crop=0,
        description=f"synthetic WS-VAD videos (dsan synth), config sha256 {chash}",
    )
    videos = []
    for v in plan_dataset(cfg):
        label = NORMAL_CODE if v.label == "normal" else EVENTS[v.label].code
        segments = tuple(Segment(s, e, label) for s, e in v.events) if v.split == "test" else ()
        videos.append(
            VideoRecord(
                id=v.id,
                path=v.rel_path,
                split=v.split,
                labels=(label,),
                segments=segments,
                fps=float(cfg.fps),
                num_frames=v.num_frames,
            )
        )
    return Manifest(info, tuple(videos))


def read_sidecar(out_dir: str | Path) -> dict[str, Any] | None:
    """The ``synth.json`` of a generated dataset, or None when there is none (or it is bad)."""
    path = Path(out_dir) / SIDECAR_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_complete(out_dir: str | Path, cfg: SynthConfig) -> bool:
    """True when ``out_dir`` holds a finished dataset generated from exactly ``cfg``."""
    out_dir = Path(out_dir)
    side = read_sidecar(out_dir)
    if not side or not side.get("complete") or side.get("config_hash") != config_hash(cfg):
        return False
    if not (out_dir / MANIFEST_NAME).is_file():
        return False
    return all((out_dir / v.rel_path).is_file() for v in plan_dataset(cfg))


def _generate_one(args: tuple[SynthConfig, PlannedVideo, str]) -> str:
    cfg, video, out_dir = args
    write_video(Path(out_dir) / video.rel_path, render_video(cfg, video), cfg.fps, crf=cfg.crf)
    return video.id


def make_synthetic_dataset(
    out_dir: str | Path,
    cfg: SynthConfig = SynthConfig(),
    *,
    overwrite: bool = False,
    workers: int = 1,
    progress: Callable[[str], None] | None = None,
) -> Manifest:
    """Generate the dataset of ``cfg`` under ``out_dir`` and return its manifest.

    A folder that already holds the same config's finished dataset is reused as is. A
    folder holding another finished synthetic dataset is refused unless ``overwrite`` (its
    ``videos/`` are then deleted and regenerated); an unfinished one (interrupted run) is
    regenerated; any other non-empty folder is refused. ``synth.json`` says
    ``"complete": false`` until every file is written. ``workers > 1`` renders
    and encodes videos in that many processes. ``progress`` is called with each finished id.
    """
    from ... import __version__

    cfg.check()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir} exists and is not a folder")
    if is_complete(out_dir, cfg) and not overwrite:
        return read_manifest(out_dir / MANIFEST_NAME)
    side = read_sidecar(out_dir)
    if side is None and out_dir.is_dir() and any(out_dir.iterdir()):
        raise InputError(f"{out_dir} is not empty and does not hold a synthetic dataset; choose another folder")
    if side is not None and side.get("config_hash") != config_hash(cfg) and side.get("complete") and not overwrite:
        raise InputError(
            f"{out_dir} holds a synthetic dataset made with another config; pass --overwrite "
            "to replace it, or choose another folder"
        )
    # from here on the folder is ours: start clean, mark it as a generation in progress
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out_dir / "videos", ignore_errors=True)
    (out_dir / MANIFEST_NAME).unlink(missing_ok=True)
    sidecar = {"config": to_dict(cfg), "config_hash": config_hash(cfg), "toolkit_version": __version__}
    atomic_write_json(out_dir / SIDECAR_NAME, {**sidecar, "complete": False})

    manifest = build_manifest(cfg)
    plan = plan_dataset(cfg)
    jobs = [(cfg, v, str(out_dir)) for v in plan]
    if workers > 1 and len(jobs) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            for vid in pool.map(_generate_one, jobs):
                if progress:
                    progress(vid)
    else:
        for job in jobs:
            vid = _generate_one(job)
            if progress:
                progress(vid)

    write_manifest(manifest, out_dir / MANIFEST_NAME)
    events = {
        v.id: [{"start": s, "end": e, "label": EVENTS[v.label].code} for s, e in v.events] for v in plan if v.events
    }
    atomic_write_json(
        out_dir / SIDECAR_NAME,
        {**sidecar, "complete": True, "manifest_hash": manifest.content_hash(), "events": events},
    )
    return manifest


__all__ = [
    "MANIFEST_NAME",
    "NORMAL_CODE",
    "SIDECAR_NAME",
    "build_manifest",
    "class_table",
    "is_complete",
    "make_synthetic_dataset",
    "read_sidecar",
]
