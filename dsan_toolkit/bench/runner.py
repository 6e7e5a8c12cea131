"""`dsan bench`: a grid of (method, dataset, seed[, ablation]) jobs -> run directories ->
result rows -> tables and reports.

A bench directory::

    BENCH_DIR/
      bench.json                 the bench config (hashed) and one record per job: its run
                                 directory and, once finished, the hashes of its artifacts
                                 (config, checkpoint, predictions, feature store, manifest, lock)
      runs/<dataset>/<method>[-<ablation>]-<preset>-s<seed>-<jobhash8>/   run directories
                                 (layout: docs/training.md)
      results.csv                one line per finished run (the raw numbers)
      report.md / report.html / report.json / report.csv

The job hash covers everything that changes a run (method, preset and its overrides, store
content hash, seed, selection rule, epochs; not the store's path, the device or a local CLIP
file's path), so a finished run directory with that name is reused, after a check that its
recorded config is this job's (:func:`check_reused_run`); an unfinished one is resumed by the
training loop. ``bench.json`` is
rewritten atomically after every job, so an interrupted bench resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import keys
from ..config import config_hash, register_config, runtime_field, sha256_file, to_dict
from ..errors import InputError
from ..store.protocol import FeatureStoreLike
from ..train.store_identity import absolute_store_path
from ..utils.atomic import atomic_write_text
from ..utils.paths import output_folder
from .published import REFERENCE_FEATURES
from .report import BenchReport, PredictionSet, VideoPrediction, render
from .table import (
    TABLE_UNIT,
    ResultRow,
    aggregate,
    details_tables,
    footnotes_for,
    format_ablation_table,
    format_dataset_table,
    headline_table,
    rows_frame,
    table_metrics,
)

BENCH_FILE = "bench.json"
SYNTHETIC_NOTE = (
    "SYNTHETIC DATA, RANDOM BACKBONE: these numbers come from generated videos and a randomly "
    "initialised tiny CLIP; they test the pipeline and say nothing about the methods' accuracy."
)

# The DSANet components the paper ablates, as preset switches (name -> preset field).
ABLATION_COMPONENTS: dict[str, dict[str, str]] = {
    "dsanet": {
        "normality": "use_normality",
        "event_background": "use_event_background",
        "text_adapter": "use_text_adapter",
        "refinement": "use_refinement",
    },
}


@register_config
@dataclass(frozen=True)
class BenchJob:
    """One run of the grid."""

    method: str
    dataset: str
    features: str = runtime_field()  # the store's path; its identity is store_hash
    preset: str
    seed: int
    select: str = "last"
    epochs: int | None = None
    ablation: str = "all"
    overrides: tuple[tuple[str, Any], ...] = ()
    device: str = runtime_field("cpu")
    store_hash: str = ""
    clip_weights: str | None = runtime_field(None)  # local CLIP file for the text encoder (offline machines)

    @property
    def key(self) -> str:
        """The job's identity hash (paths and the device are runtime fields)."""
        return config_hash(self)

    @property
    def run_name(self) -> str:
        abl = "" if self.ablation == "all" else f"-{self.ablation}"
        return f"{self.dataset}/{self.method}{abl}-{self.preset}-s{self.seed}-{self.key[:8]}"


@register_config
@dataclass(frozen=True)
class BenchConfig:
    methods: tuple[str, ...]
    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    features: dict[str, str] = runtime_field()  # dataset -> store path (the jobs hold the stores' hashes)
    preset: str | None = None  # None: the preset named like the dataset (ucf, xd)
    epochs: int | None = None
    select: str = "last"
    device: str = runtime_field("cpu")
    ablation: str | None = None  # a method name: run its component ablations
    lock: dict[str, str] = runtime_field(default_factory=dict)  # dataset -> lock file (verify; hashed per job)
    clip_weights: str | None = runtime_field(None)


# -- training adapter ------------------------------------------------------------------------
def _default_trainer(job: BenchJob, run_dir: Path, progress: Callable[[str], None]) -> None:
    """Train and evaluate one job into ``run_dir`` with the library's training loop (which
    evaluates training-free methods into a run directory of the same layout)."""
    from ..progress import DONE
    from ..train.run import TrainOptions, train

    def forward(ev: Any) -> None:  # the epochs' summaries, as bench lines
        if ev.kind == DONE and ev.text:
            progress(f"    {ev.text}")

    res = train(
        on_event=forward,
        opts=TrainOptions(
            method=job.method,
            features=Path(job.features),
            out=run_dir,
            preset=job.preset,
            seed=job.seed,
            epochs=job.epochs,
            device=job.device,
            select=job.select if _trainable(job.method) else "last",
            overrides=dict(job.overrides),
            progress=True,
            clip_weights=Path(job.clip_weights) if job.clip_weights else None,
        ),
    )
    if not res.finished:
        raise InputError(f"training of {run_dir} stopped before the end; run the bench again to resume")


Trainer = Callable[[BenchJob, Path, Callable[[str], None]], None]


# -- grid ------------------------------------------------------------------------------------
def _store_info(path: str) -> dict[str, Any]:
    from ..store import open_store

    try:
        fs = open_store(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable store is a user input problem
        raise InputError(f"cannot open feature store {path}: {exc}") from None
    return {"store": fs, "hash": fs.content_hash()}


def _preset_for(method: str, dataset: str, preset: str | None) -> str:
    from ..models import get_method

    m = get_method(method)
    if preset:
        if preset not in m.presets:
            raise InputError(f"method {method!r} has no preset {preset!r}; presets: {', '.join(sorted(m.presets))}")
        return preset
    if dataset in m.presets:
        return dataset
    raise InputError(
        f"method {method!r} has no preset named {dataset!r}; pass --preset (one of {', '.join(sorted(m.presets))})"
    )


def ablation_overrides(method: str) -> list[tuple[str, tuple[tuple[str, Any], ...]]]:
    """All components on, then each component off in turn (the paper's ablation rows)."""
    comps = ABLATION_COMPONENTS.get(method)
    if comps is None:
        raise InputError(f"no ablation defined for {method!r}; ablations exist for: {', '.join(ABLATION_COMPONENTS)}")
    rows = [("all", tuple((f, True) for f in comps.values()))]
    for name, fld in comps.items():
        rows.append((f"no-{name}", tuple((f, f != fld) for f in comps.values())))
    return rows


def expand_jobs(cfg: BenchConfig, store_hashes: dict[str, str]) -> list[BenchJob]:
    """The bench grid as jobs (ablation: one method, every component setting)."""
    jobs: list[BenchJob] = []
    methods = (cfg.ablation,) if cfg.ablation else cfg.methods
    for dataset in cfg.datasets:
        for method in methods:
            preset = _preset_for(method, dataset, cfg.preset)
            variants = ablation_overrides(method) if cfg.ablation else [("all", ())]
            for seed in cfg.seeds:
                for abl, ov in variants:
                    jobs.append(
                        BenchJob(
                            method=method,
                            dataset=dataset,
                            features=cfg.features[dataset],
                            preset=preset,
                            seed=seed,
                            select=cfg.select,
                            epochs=cfg.epochs,
                            ablation=abl,
                            overrides=ov,
                            device=cfg.device,
                            store_hash=store_hashes[dataset],
                            clip_weights=cfg.clip_weights,
                        )
                    )
    return jobs


# -- rows from run directories ---------------------------------------------------------------
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
    class_branch = _has_class_branch(job.method)  # without one, evaluation computed no fine-grained metric
    return ResultRow(
        method=job.method,
        dataset=job.dataset,
        seed=job.seed,
        preset=job.preset,
        selection=label if _trainable(job.method) else "none",
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
    )


def _trainable(method: str) -> bool:
    from ..models import get_method

    return bool(getattr(get_method(method), "trainable", True))


def _has_class_branch(method: str) -> bool:
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
        method, dataset, classes, videos, snippet_len=manifest.info.snippet_len, class_branch=_has_class_branch(method)
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


# -- the bench -------------------------------------------------------------------------------
@dataclass
class BenchResult:
    out: Path
    rows: list[ResultRow]
    report: BenchReport
    reused: int = 0
    trained: int = 0


def _load_record(out: Path) -> dict[str, Any]:
    p = out / BENCH_FILE
    if not p.is_file():
        return {}
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError:
        raise InputError(f"{p} is corrupt; move it away to start the bench afresh") from None


def run_bench(
    cfg: BenchConfig,
    out: str | Path,
    *,
    trainer: Trainer | None = None,
    progress: Callable[[str], None] | None = None,
    figures: bool = True,
) -> BenchResult:
    """Run (or reuse) every job of the grid, then build the tables and the report."""
    out = Path(out)
    say = progress or (lambda _m: None)
    train = trainer or _default_trainer
    _check_config(cfg)
    cfg = dataclasses.replace(cfg, features={ds: absolute_store_path(p) for ds, p in cfg.features.items()})
    if out.exists() and not out.is_dir():
        raise InputError(f"bench directory {out} is a file, not a folder")
    stores: dict[str, Any] = {}
    hashes: dict[str, str] = {}
    for ds in cfg.datasets:
        say(f"hashing feature store {cfg.features[ds]}")
        info = _store_info(cfg.features[ds])
        stores[ds], hashes[ds] = info["store"], info["hash"]
        held = stores[ds].manifest.name
        if ds in ("ucf", "xd") and held != ds:  # the key decides which published row is compared
            raise InputError(
                f"--features {ds}=...: that store holds dataset {held!r}, not {ds!r}; name it --features {held}=STORE"
            )
    jobs = expand_jobs(cfg, hashes)
    output_folder(out)
    record = _load_record(out)
    record.update({"format": "dsan-bench", "config": to_dict(cfg), "config_hash": config_hash(cfg)})
    # only the current grid's jobs are listed (runs of other grids stay on disk and are reused)
    done: dict[str, Any] = {}
    record["jobs"] = done
    lock_hashes = {ds: sha256_file(p) for ds, p in cfg.lock.items() if Path(p).is_file()}
    rows: list[ResultRow] = []
    reused = trained = 0
    for i, job in enumerate(jobs, 1):
        run_dir = out / "runs" / job.run_name
        tag = f"[{i}/{len(jobs)}] {job.method}{'' if job.ablation == 'all' else ' ' + job.ablation} on {job.dataset}, seed {job.seed}"
        if (run_dir / "metrics.json").is_file():
            check_reused_run(run_dir, job)
            say(f"{tag}: finished run reused ({run_dir.name})")
            reused += 1
        else:
            say(f"{tag}: {'resuming' if run_dir.exists() else 'training'} -> {run_dir}")
            t0 = time.perf_counter()
            train(job, run_dir, say)
            trained += 1
            say(f"{tag}: done in {time.perf_counter() - t0:.1f} s")
        entry = {
            "job": to_dict(job),
            "key": job.key,
            "run_dir": str(run_dir.relative_to(out)),
            "hashes": artifact_hashes(run_dir),
        }
        if job.dataset in cfg.lock:
            entry["lock_path"] = str(Path(cfg.lock[job.dataset]).resolve())
            entry["lock_sha256"] = lock_hashes.get(job.dataset, "")
        done[job.key] = entry
        atomic_write_text(out / BENCH_FILE, json.dumps(record, indent=2, sort_keys=True) + "\n")
        row = row_from_run(run_dir, job, stores[job.dataset])
        rows.append(dataclasses.replace(row, run_dir=str(run_dir.relative_to(out))))  # relocatable
    say("building tables")
    report = build_report(rows, cfg, stores, figures=figures, base=out)
    atomic_write_text(out / "results.csv", rows_frame(rows).to_csv(index=False))
    return BenchResult(out=out, rows=rows, report=report, reused=reused, trained=trained)


def check_reused_run(run_dir: Path, job: BenchJob) -> None:
    """A finished run directory is reused only if it was trained on this job's store (content
    hash) with this job's method, preset, seed and selection rule."""
    rec = json.loads((run_dir / "config.json").read_text()).get("config", {})
    want = {"store_hash": job.store_hash, "method": job.method, "preset_name": job.preset, "seed": job.seed}
    if _trainable(job.method):
        want["select"] = job.select
    diff = [f"{k} {rec.get(k)!r} (this bench: {v!r})" for k, v in want.items() if rec.get(k) != v]
    if diff:
        raise InputError(
            f"{run_dir} is a finished run of another job: "
            + "; ".join(diff)
            + ". Move it away (or use another bench directory) to train this job."
        )


def _check_config(cfg: BenchConfig) -> None:
    missing = [d for d in cfg.datasets if d not in cfg.features]
    if missing:
        raise InputError(f"no feature store for dataset(s) {', '.join(missing)}: pass --features {missing[0]}=STORE")
    if not cfg.seeds:
        raise InputError("at least one seed is needed (--seeds 0,1,2)")
    if not cfg.methods and not cfg.ablation:
        raise InputError("no method given (--methods dsanet,vadclip,mil,zeroshot)")
    if cfg.select not in ("last", "best-on-test"):
        raise InputError(f"--select must be 'last' or 'best-on-test', not {cfg.select!r}")
    from ..models import list_methods

    for m in (*cfg.methods, *([cfg.ablation] if cfg.ablation else [])):
        if m not in list_methods():
            raise InputError(f"unknown method {m!r}; methods: {', '.join(list_methods())}")


def build_report(
    rows: Sequence[ResultRow], cfg: BenchConfig, stores: dict[str, Any], *, figures: bool = True, base: Path = Path(".")
) -> BenchReport:
    agg = aggregate(rows)
    tables, details = [], []
    for ds in cfg.datasets:
        if cfg.ablation:
            tables.append(
                (
                    f"{ds}: {cfg.ablation} ablation ({TABLE_UNIT}, each component off in turn, all on last)",
                    format_ablation_table(agg, ds, cfg.ablation),
                )
            )
            continue
        full = format_dataset_table(agg, ds)
        tables.append((f"{ds}: results ({TABLE_UNIT}, mean ± std over seeds)", headline_table(full)))
        titles = {
            "metrics": f"{ds}: further metrics ({TABLE_UNIT}, mean ± std over seeds)",
            "runs": f"{ds}: runs and protocol",
        }
        details += [(titles[kind], df) for kind, df in details_tables(full)]
    notes = []
    if any(r.synthetic or r.random_backbone for r in rows):
        notes.append(SYNTHETIC_NOTE)
    notes.append(
        f"Model selection: '{cfg.select}' (the official code selects the best checkpoint on the test set; "
        "'last' is the honest rule and every row names its rule)."
    )
    foot = footnotes_for(df for _, df in tables + details)
    preds: dict[str, list[PredictionSet]] = {}
    if figures:
        for ds in cfg.datasets:
            first = {}
            for r in rows:
                if r.dataset == ds and r.ablation == "all" and r.method not in first:
                    first[r.method] = r
            sets = [predictions_of(base / r.run_dir, stores[ds].manifest, r.method, ds) for r in first.values()]
            preds[ds] = [s for s in sets if s is not None]
    return BenchReport(
        title="dsan bench",
        tables=tables,
        notes=notes,
        rows=rows_frame(rows),
        predictions=preds,
        footnotes=foot,
        details=details,
    )


def write_reports(result: BenchResult, formats: Sequence[str]) -> dict[str, Path]:
    """Write ``report.<fmt>`` for each format into the bench directory."""
    return {fmt: atomic_write_text(result.out / f"report.{fmt}", render(result.report, fmt)) for fmt in formats}


__all__ = [
    "BenchConfig",
    "BenchJob",
    "BenchResult",
    "ablation_overrides",
    "build_report",
    "expand_jobs",
    "row_from_run",
    "run_bench",
    "write_reports",
]
