"""From finished run directories to what a bench records: result rows, predictions for the
figures, artifact hashes for the audit, and the check before a finished run is reused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .. import keys
from ..config import sha256_file
from ..errors import InputError
from ..store.protocol import FeatureStoreLike
from .jobs import ABLATION_COMPONENTS, BenchJob
from .published import REFERENCE_FEATURES
from .report import PredictionSet, VideoPrediction
from .table import ResultRow, table_metrics


def store_features_tag(fs: FeatureStoreLike) -> tuple[str, str, bool, bool]:
    """(features tag, backbone, random backbone, synthetic) of a feature store."""
    attrs = getattr(fs, "attrs", {}) or {}
    producer = str(attrs.get("producer", ""))
    backbone = attrs.get("backbone") or {}
    model = str(backbone.get("model", "?")) if isinstance(backbone, dict) else str(backbone)
    random_w = bool(
        attrs.get("random_weights", backbone.get("random_weights", False) if isinstance(backbone, dict) else False)
    )
    synthetic = "synth" in producer or fs.manifest.name == "synth"
    if "vadclip" in producer or "import" in producer:
        tag = REFERENCE_FEATURES
    elif synthetic and "synth" in producer:
        tag = "synthetic"
    else:
        pre = backbone.get("pretrained") if isinstance(backbone, dict) else None
        tag = f"{model}/{pre or ('random' if random_w else 'file')}:{attrs.get('snippet_rule', '?')}"
    return tag, model, random_w, synthetic


def row_label(run_dir: Path) -> str:
    """The selection label a finished run reports (its ``metrics.json`` ``selected``)."""
    return str(json.loads((run_dir / "metrics.json").read_text()).get(keys.SELECTED, "last"))


def row_from_run(run_dir: Path, job: BenchJob, fs: FeatureStoreLike) -> ResultRow:
    cfg = json.loads((run_dir / "config.json").read_text())
    met = json.loads((run_dir / "metrics.json").read_text())
    label = met.get("selected", job.select)
    entry = met.get("results", {}).get(label, {})
    metrics = table_metrics(entry.get(keys.METRICS, {}) if isinstance(entry, dict) else {})
    tag, model, random_w, synthetic = store_features_tag(fs)
    c = cfg.get("config", {})
    text_random = (
        bool((c.get("text_encoder") or {}).get("random_weights", False))
        or bool(met.get("random_text_encoder", False))
        or bool((c.get("backbone") or {}).get("random_weights", False))
    )
    params = met.get("params", {}) or {}
    comps = (
        {name: dict(job.overrides).get(fld, True) for name, fld in ABLATION_COMPONENTS.get(job.method, {}).items()}
        if job.ablation != "all" or job.overrides
        else {}
    )
    class_branch = has_class_branch(job.method)  # without one, evaluation computed no fine-grained metric
    return ResultRow(
        method=job.method,
        dataset=job.dataset,
        seed=job.seed,
        preset=job.preset,
        selection=label if is_trainable(job.method) else "none",
        config_hash=str(cfg.get("hash", "")),
        features=tag,
        backbone=model,
        random_backbone=random_w or text_random,
        synthetic=synthetic,
        metrics=metrics,
        ablation=job.ablation,
        components=comps,
        train_time_s=met.get("train_seconds"),
        params_trainable=params.get("trainable"),
        params_total=params.get("total"),
        run_dir=str(run_dir),
        official_preset=job.preset in ("ucf", "xd"),
        class_branch=class_branch,
        precision=str(c.get("precision", "fp32")),
    )


def is_trainable(method: str) -> bool:
    from ..models import get_method

    return bool(getattr(get_method(method), "trainable", True))


def has_class_branch(method: str) -> bool:
    from ..models import get_method

    return bool(get_method(method).has_class_branch)


def predictions_of(run_dir: Path, manifest: Any, method: str, dataset: str) -> PredictionSet | None:
    """The selected model's test predictions as a :class:`PredictionSet` (figures)."""
    met = json.loads((run_dir / "metrics.json").read_text())
    path = run_dir / "eval" / str(met.get("selected", "last")) / "predictions.npz"
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        p = {k: z[k] for k in z.files}
    off = p["offsets"].astype(np.int64)
    classes = tuple(str(c) for c in p.get("classes", np.array(manifest.class_codes)).tolist())
    videos = []
    for i, vid in enumerate(p["video_ids"].tolist()):
        sl = slice(int(off[i]), int(off[i + 1]))
        rec = manifest.video(str(vid))
        videos.append(
            VideoPrediction(
                video_id=str(vid),
                scores=p["scores"][sl],
                segments=tuple((s.start, s.end, s.label) for s in rec.segments),
                class_probs=p["class_probs"][sl] if "class_probs" in p else None,
                label=rec.labels[0] if rec.labels else "",
            )
        )
    return PredictionSet(
        method, dataset, classes, videos, snippet_len=manifest.info.snippet_len, class_branch=has_class_branch(method)
    )


def artifact_hashes(run_dir: Path) -> dict[str, str]:
    """Hashes of a finished run's artifacts, recorded in ``bench.json`` for the audit."""
    cfg = json.loads((run_dir / "config.json").read_text())
    met = json.loads((run_dir / "metrics.json").read_text())
    out = {
        "config_hash": str(cfg.get("hash", "")),
        "store_hash": str(cfg.get("config", {}).get("store_hash", "")),
        "manifest_hash": str(cfg.get("config", {}).get("manifest_hash", "")),
        keys.METRICS_SHA256: sha256_file(run_dir / "metrics.json"),
    }
    for label in met.get("results", {}):
        ev = run_dir / "eval" / label
        if (ev / "predictions.npz").is_file():
            out[keys.predictions_sha256(label)] = sha256_file(ev / "predictions.npz")
        em = ev / "metrics.json"
        if em.is_file():
            ck = json.loads(em.read_text()).get("checkpoint") or {}
            f = run_dir / "checkpoints" / str(ck.get("file", ""))
            if ck.get("file") and f.is_file():
                out[keys.checkpoint_sha256(label)] = sha256_file(f)
    return out


def check_reused_run(run_dir: Path, job: BenchJob) -> None:
    """A finished run directory is reused only if it was trained on this job's store (content
    hash) with this job's method, preset, seed and selection rule."""
    rec = json.loads((run_dir / "config.json").read_text()).get("config", {})
    want = {
        "store_hash": job.store_hash,
        "manifest_hash": job.manifest_hash,
        "method": job.method,
        "preset_name": job.preset,
        "seed": job.seed,
    }
    if is_trainable(job.method):
        want["select"] = job.select
        want["precision"] = job.precision
    rec = {"precision": "fp32", **rec}  # fp32 runs do not record it
    diff = [f"{k} {rec.get(k)!r} (this bench: {v!r})" for k, v in want.items() if rec.get(k) != v]
    if diff:
        raise InputError(
            f"{run_dir} is a finished run of another job: "
            + "; ".join(diff)
            + ". Move it away (or use another bench directory) to train this job."
        )
