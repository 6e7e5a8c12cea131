"""`dsan score`: one new video through a trained run.

Features are extracted with the run's own extraction config (read from the run's feature
store), scored with the run's selected checkpoint, and turned into anomalous intervals
(snippets whose classifier score reaches ``threshold``, merged when contiguous), each with
its most likely anomaly classes (mean class probability over the interval, normal class
excluded). Writes a per-frame CSV, a PNG plot and a JSON record of what made them (video
sha256, run, config hash, checkpoint sha256, store identity, threshold, intervals, the
sha256 of the CSV and PNG). The record is written last: a CSV without it is unfinished.
Existing outputs are kept unless ``overwrite``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..store.protocol import FeatureStoreLike
from ..utils.atomic import atomic_write_text

SCORES_DIR = "scores"  # default output folder inside the run directory (not one of its audited records)


@dataclass(frozen=True)
class Interval:
    start_frame: int
    end_frame: int  # exclusive
    start_s: float
    end_s: float
    peak: float
    mean: float
    classes: tuple[tuple[str, float], ...]  # most likely first


def find_intervals(scores: np.ndarray, threshold: float, *, min_snippets: int = 1) -> list[tuple[int, int]]:
    """Runs of consecutive snippets with ``score >= threshold``: ``[start, end)`` snippet indices."""
    above = np.asarray(scores) >= threshold
    if not above.any():
        return []
    edges = np.diff(np.concatenate([[0], above.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    keep = (ends - starts) >= min_snippets
    return list(zip(starts[keep].tolist(), ends[keep].tolist()))


def describe_intervals(
    scores: np.ndarray,
    class_probs: np.ndarray | None,
    classes: Sequence[str],
    *,
    threshold: float,
    fps: float,
    snippet_len: int,
    num_frames: int,
    top: int = 2,
    min_snippets: int = 1,
) -> list[Interval]:
    out = []
    for s, e in find_intervals(scores, threshold, min_snippets=min_snippets):
        f0, f1 = s * snippet_len, min(e * snippet_len, num_frames)
        cls: tuple[tuple[str, float], ...] = ()
        if class_probs is not None and len(classes) > 1:
            mean = class_probs[s:e, 1:].mean(0)  # class 0 is the normal class
            order = np.argsort(-mean)[:top]
            cls = tuple((str(classes[1 + i]), float(mean[i])) for i in order)
        out.append(Interval(f0, f1, f0 / fps, f1 / fps, float(scores[s:e].max()), float(scores[s:e].mean()), cls))
    return out


def frame_table(
    scores: np.ndarray,
    align: np.ndarray | None,
    class_probs: np.ndarray | None,
    classes: Sequence[str],
    *,
    fps: float,
    snippet_len: int,
    num_frames: int,
) -> str:
    """CSV text: one line per frame (snippet values repeated over its frames)."""
    T = len(scores)
    n = min(num_frames, T * snippet_len) if num_frames else T * snippet_len
    snip = np.minimum(np.arange(n) // snippet_len, T - 1)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    head = ["frame", "time_s", "snippet", "score"]
    if align is not None:
        head.append("align_score")
    if class_probs is not None:
        head.append("top_class")
        head += [f"p_{c}" for c in classes]
    w.writerow(head)
    top = class_probs.argmax(1) if class_probs is not None else None
    for f in range(n):
        i = int(snip[f])
        row: list[Any] = [f, f"{f / fps:.4f}", i, f"{scores[i]:.6f}"]
        if align is not None:
            row.append(f"{align[i]:.6f}")
        if class_probs is not None:
            row.append(classes[int(top[i])])
            row += [f"{p:.6f}" for p in class_probs[i]]
        w.writerow(row)
    return buf.getvalue()


def plot_scores(
    path: Path,
    scores: np.ndarray,
    align: np.ndarray | None,
    intervals: Sequence[Interval],
    *,
    fps: float,
    snippet_len: int,
    threshold: float,
    title: str,
) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    t = np.arange(len(scores) * snippet_len) / fps
    fig, ax = plt.subplots(figsize=(9, 3))
    ax.plot(t, np.repeat(scores, snippet_len), label="anomaly score", lw=1.3)
    if align is not None:
        ax.plot(t, np.repeat(align, snippet_len), label="alignment score", lw=1.0, alpha=0.7)
    ax.axhline(threshold, color="k", ls=":", lw=0.8, label=f"threshold {threshold:g}")
    for iv in intervals:
        ax.axvspan(iv.start_s, iv.end_s, color="tab:red", alpha=0.18, lw=0)
        if iv.classes:
            ax.text((iv.start_s + iv.end_s) / 2, 1.03, iv.classes[0][0], ha="center", fontsize=8)
    ax.set(xlabel="time (s)", ylabel="score", ylim=(-0.02, 1.12), title=title)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path


@dataclass
class ScoreResult:
    video: Path
    intervals: list[Interval]
    csv_path: Path
    png_path: Path
    fps: float
    num_frames: int
    snippets: int
    random_backbone: bool
    selection: str
    store_label: str = ""  # non-empty when the extraction config came from another store than the run's
    record_path: Path | None = None


def output_paths(out_dir: Path, video: Path) -> dict[str, Path]:
    """The three outputs of scoring ``video`` into ``out_dir``."""
    return {ext: out_dir / f"{video.stem}.scores.{ext}" for ext in ("csv", "png", "json")}


def score_video(
    video: str | Path,
    run_dir: str | Path,
    *,
    out: str | Path | None = None,
    threshold: float = 0.5,
    selection: str | None = None,
    device: str = "cpu",
    min_snippets: int = 1,
    features: str | Path | None = None,
    clip_weights: str | Path | None = None,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> ScoreResult:
    """Extract, score and describe one video with a finished run; the CSV, PNG and JSON record
    go to ``out`` (default: ``RUN/scores/``). ``features``: a store to take the extraction
    config from instead of the run's own (recorded and labelled when it differs).
    ``clip_weights``: the local CLIP weight file of a run on features extracted from one
    (default: the path the run recorded; checked by sha256)."""
    say = progress or (lambda _m: None)
    video, run = Path(video), Path(run_dir)
    if not video.is_file():
        raise InputError(f"video not found: {video}")
    if not (run / "metrics.json").is_file():
        raise InputError(f"{run} is not a finished run directory (no metrics.json); see docs/training.md")
    paths = output_paths(Path(out) if out else run / SCORES_DIR, video)
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise InputError(f"{', '.join(existing)} already exist(s); pass --overwrite to replace them")
    from ..media.probe import probe_video

    probe = probe_video(video)
    met = json.loads((run / "metrics.json").read_text())
    label = selection or str(met.get("selected", "last"))
    if label not in met.get("results", {}):
        raise InputError(f"run {run} has no '{label}' model; it has: {', '.join(met.get('results', {}))}")
    say("loading the run's model")
    method, model, cfg, use = _load_run_model(run, label, device, features, clip_weights)
    store = use.store
    say("extracting features with the run's extraction config")
    feats, snippet_len, random_bb = extract_like_store(
        video, store, crop=cfg.test_crop, device=device, say=say, weights=clip_weights or cfg.clip_weights
    )
    say(f"scoring {feats.shape[0]} snippets")
    import torch

    from ..models.sampling import predict_video

    with torch.no_grad():
        pred = predict_video(method, model, torch.as_tensor(feats)).detach_cpu()
    scores = pred.scores.numpy().reshape(-1)
    align = pred.align_scores.numpy().reshape(-1)
    probs = None if pred.class_probs is None else pred.class_probs.numpy().reshape(len(scores), -1)
    classes = tuple(store.manifest.class_codes)
    fps = float(probe.fps)
    ivs = describe_intervals(
        scores,
        probs,
        classes,
        threshold=threshold,
        fps=fps,
        snippet_len=snippet_len,
        num_frames=probe.num_frames,
        min_snippets=min_snippets,
    )
    paths["json"].unlink(missing_ok=True)  # the record goes last: never one describing older files
    csv_path = atomic_write_text(
        paths["csv"],
        frame_table(scores, align, probs, classes, fps=fps, snippet_len=snippet_len, num_frames=probe.num_frames),
    )
    png_path = plot_scores(
        paths["png"],
        scores,
        align,
        ivs,
        fps=fps,
        snippet_len=snippet_len,
        threshold=threshold,
        title=f"{video.name} ({cfg.method}, {label})",
    )
    random_all = random_bb or bool((cfg.text_encoder or {}).get("random_weights", False))
    record = score_record(
        video=video,
        run=run,
        cfg=cfg,
        label=label,
        use=use,
        threshold=threshold,
        min_snippets=min_snippets,
        device=device,
        fps=fps,
        num_frames=probe.num_frames,
        intervals=ivs,
        outputs=(csv_path, png_path),
    )
    rec_path = atomic_write_text(paths["json"], json.dumps(record, indent=2) + "\n")
    return ScoreResult(
        video,
        ivs,
        csv_path,
        png_path,
        fps,
        probe.num_frames,
        len(scores),
        random_all,
        label,
        store_label=use.label(),
        record_path=rec_path,
    )


def score_record(
    *,
    video: Path,
    run: Path,
    cfg: Any,
    label: str,
    use: Any,
    threshold: float,
    min_snippets: int,
    device: str,
    fps: float,
    num_frames: int,
    intervals: Sequence[Interval],
    outputs: Sequence[Path],
) -> dict[str, Any]:
    """The JSON record of one scored video: the identity of everything that made its outputs."""
    from .. import __version__
    from ..config import sha256_file

    ck = run / "checkpoints" / f"{label}.safetensors"
    return {
        "producer": "score",
        "toolkit_version": __version__,
        "video": {"path": str(video.resolve()), "sha256": sha256_file(video), "fps": fps, "num_frames": num_frames},
        "run": str(run.resolve()),
        "config_hash": cfg.hash,
        "selection": label,
        "checkpoint_sha256": sha256_file(ck),
        "store": use.record(),
        "store_label": use.label(),
        "threshold": threshold,
        "min_snippets": min_snippets,
        "device": str(device),
        "intervals": [dataclasses.asdict(iv) for iv in intervals],
        "outputs": {p.name: sha256_file(p) for p in outputs},
    }


def _load_run_model(
    run: Path, label: str, device: str, features: str | Path | None = None, clip_weights: str | Path | None = None
) -> tuple[Any, Any, Any, Any]:
    """(method, model with the selected weights, RunConfig, :class:`StoreUse`) of a run.

    The run's store is found and checked by the one rule of
    :mod:`dsan_toolkit.train.store_identity`, at the config level: scoring uses the store's
    extraction config (to extract the new video like the training features) and its class
    table, not its arrays."""
    from ..models import get_method
    from ..train.checkpoint import load_weights, read_run_config
    from ..train.setup import build_model, resolve_device
    from ..train.store_identity import CONFIG, open_run_store

    cfg = read_run_config(run / "config.json")
    use = open_run_store(cfg, features, level=CONFIG, run=run)
    store = use.store
    dev = resolve_device(device)
    method = get_method(cfg.method)
    model = build_model(method, cfg, store.manifest, dev, Path(clip_weights) if clip_weights else None)
    ck = run / "checkpoints" / f"{label}.safetensors"
    if not ck.is_file():
        raise InputError(f"{run} has no checkpoint {ck.name}")
    load_weights(model, ck, dev)
    model.eval()
    return method, model, cfg, use


def extract_like_store(
    video: Path,
    store: FeatureStoreLike,
    *,
    crop: int,
    device: str,
    say: Callable[[str], None],
    weights: str | Path | None = None,
) -> tuple[np.ndarray, int, bool]:
    """(T, D) features of the run's test crop, extracted with the store's own (hashed)
    extraction config: a one-video manifest through the normal extraction pipeline. A store
    extracted from a local weight file needs that file (``weights``, checked by sha256).

    The precision follows ``device`` (:func:`~dsan_toolkit.extract.pipeline.precision_for_device`):
    features made on a GPU in fp16/bf16 are re-extracted in fp32 on a CPU. On a CPU the model
    keeps torch's thread setting (``cpu_threads=None``; every core by default): these features
    are scored, never stored."""
    import tempfile

    from ..config import from_dict
    from ..extract import ExtractConfig, RunOptions, extract_features
    from ..extract.pipeline import precision_for_device
    from ..manifest import Manifest, VideoRecord
    from ..store import open_store
    from ..train.setup import resolve_device

    attrs = getattr(store, "attrs", {}) or {}
    raw = attrs.get("config") or {}
    if attrs.get("producer") != "extract" or raw.get("type") != "ExtractConfig":
        raise InputError(
            f"the run's feature store was not made by `dsan extract` (producer {attrs.get('producer')!r}); "
            "scoring a new video needs the extraction config of the training features"
        )
    cfg = from_dict(raw, ExtractConfig)
    dev = resolve_device(device)
    precision = precision_for_device(cfg.precision, dev)
    if precision != cfg.precision:
        say(f"the run's features were extracted in {cfg.precision} (GPU autocast); on {dev.type} in {precision}")
        cfg = dataclasses.replace(cfg, precision=precision)
    if cfg.weights is not None:
        cfg = dataclasses.replace(cfg, weights=str(_checked_weights(str(cfg.weights), weights)))
    info = store.manifest.info
    rec = VideoRecord(id=video.stem, path=video.name, split="test", labels=(store.manifest.normal_class,))
    one = Manifest(info, (rec,))
    with tempfile.TemporaryDirectory(prefix="dsan-score-") as tmp:
        res = extract_features(
            one, video.parent, Path(tmp) / "one.zarr", cfg, RunOptions(device=str(dev), workers=0, cpu_threads=None)
        )
        if res.failed:
            raise InputError(f"cannot extract features from {video}: {res.failed[0][1]}")
        feats = open_store(Path(tmp) / "one.zarr").read(rec.id, crop=crop)
    return np.asarray(feats, dtype=np.float32), int(cfg.snippet_len), bool(attrs.get("random_weights", False))


def _checked_weights(recorded: str, given: str | Path | None) -> Path:
    """The local CLIP weight file of a store's extraction config (recorded as ``sha256:HEX``)."""
    from ..config import sha256_file

    want = recorded.removeprefix("sha256:")
    if given is None or not Path(given).is_file():
        where = f" ({given} not found)" if given else ""
        raise InputError(
            f"the run's features were extracted from a local CLIP weight file (sha256 {want[:12]}){where}; "
            "pass --clip-weights FILE"
        )
    got = sha256_file(given)
    if got != want:
        raise InputError(f"--clip-weights {given} has sha256 {got[:12]}, the features were extracted with {want[:12]}")
    return Path(given)
