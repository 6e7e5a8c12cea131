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
recorded config is this job's (:func:`~.rows.check_reused_run`); an unfinished one is resumed by
the training loop. ``bench.json`` is rewritten atomically after every job, so an interrupted
bench resumes where it stopped. The grid and its jobs are :mod:`.jobs`; what is read from a
finished run directory is :mod:`.rows`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from ..config import config_hash, sha256_file, to_dict
from ..errors import InputError
from ..train.predictions import EVAL_RECORD_FILE, PREDICTIONS_FILE, load_prediction_set
from ..train.predictions import PredictionSet as RunPredictions  # a run's test predictions (not the figures' set)
from ..train.store_identity import absolute_store_path
from ..utils.atomic import atomic_write_text
from ..utils.paths import output_folder
from .executors import LocalExecutor, RayExecutor, Task, Trainer, default_trainer
from .jobs import BenchConfig, BenchJob, ablation_overrides, check_config, expand_jobs
from .protocol import (
    mark_below_best,
    protocol_section,
    run_statistics,
    with_protocol_metrics,
)
from .report import BenchReport, PredictionSet, render
from .rows import artifact_hashes, check_reused_run, predictions_of, row_from_run, row_label
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
)

BENCH_FILE = "bench.json"
BENCH_LOCK = ".bench.json.lock"  # filelock next to bench.json, held while a bench runs
SYNTHETIC_NOTE = (
    "SYNTHETIC DATA, RANDOM BACKBONE: these numbers come from generated videos and a randomly "
    "initialised tiny CLIP; they test the pipeline and say nothing about the methods' accuracy."
)


# the training adapter lives with the executors; the old private name stays for callers
_default_trainer = default_trainer


def _store_info(path: str) -> dict[str, Any]:
    from ..store import open_store

    try:
        fs = open_store(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable store is a user input problem
        raise InputError(f"cannot open feature store {path}: {exc}") from None
    return {"store": fs, "hash": (fs.content_hash(), fs.manifest.content_hash())}


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
    executor: LocalExecutor | RayExecutor | None = None,
    progress: Callable[[str], None] | None = None,
    figures: bool = True,
) -> BenchResult:
    """Run (or reuse) every job of the grid, then build the tables and the report.

    ``executor`` trains the missing runs (default: one after the other in this process);
    ``trainer`` is what trains one job (default: the library's training loop; with worker
    processes or Ray it must be a module-level function)."""
    out = Path(out)
    say = progress or (lambda _m: None)
    train = trainer or _default_trainer
    check_config(cfg)
    cfg = dataclasses.replace(cfg, features={ds: absolute_store_path(p) for ds, p in cfg.features.items()})
    if out.exists() and not out.is_dir():
        raise InputError(f"bench directory {out} is a file, not a folder")
    stores: dict[str, Any] = {}
    hashes: dict[str, tuple[str, str]] = {}  # dataset -> (content hash, manifest hash)
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
    # held for the whole bench (an OS lock, released when the process ends, even killed): the
    # driver alone writes bench.json, and a second bench on this directory is refused
    bench_lock = FileLock(str(out / BENCH_LOCK), timeout=0)
    try:
        bench_lock.acquire()
    except Timeout:
        raise InputError(
            f"another dsan bench is running in {out} (it holds {out / BENCH_LOCK}); wait for it or use another --out"
        ) from None
    try:
        return _run_jobs(cfg, out, jobs, stores, bench_lock, train, executor, say, figures)
    finally:
        bench_lock.release()


def _run_jobs(
    cfg: BenchConfig,
    out: Path,
    jobs: list[BenchJob],
    stores: dict[str, Any],
    bench_lock: FileLock,
    train: Trainer,
    executor: LocalExecutor | RayExecutor | None,
    say: Callable[[str], None],
    figures: bool,
) -> BenchResult:
    record = _load_record(out)
    record.update({"format": "dsan-bench", "config": to_dict(cfg), "config_hash": config_hash(cfg)})
    # only the current grid's jobs are listed (runs of other grids stay on disk and are reused)
    done: dict[str, Any] = {}
    record["jobs"] = done
    lock_hashes = {ds: sha256_file(p) for ds, p in cfg.lock.items() if Path(p).is_file()}

    def record_job(job: BenchJob, run_dir: Path) -> None:
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
        with bench_lock:  # held already (reentrant): bench.json is written by the lock's holder only
            atomic_write_text(out / BENCH_FILE, json.dumps(record, indent=2, sort_keys=True) + "\n")

    tasks: list[Task] = []
    for i, job in enumerate(jobs, 1):
        run_dir = out / "runs" / job.run_name
        rule = f", select {job.select}" if len(cfg.selections) > 1 else ""
        tag = (
            f"[{i}/{len(jobs)}] {job.method}{'' if job.ablation == 'all' else ' ' + job.ablation} on {job.dataset}, "
            f"seed {job.seed}{rule}"
        )
        if (run_dir / "metrics.json").is_file():
            check_reused_run(run_dir, job)
            say(f"{tag}: finished run reused ({run_dir.name})")
            record_job(job, run_dir)
        else:
            tasks.append(Task(index=i, job=job, run_dir=run_dir, tag=tag))
    reused = len(jobs) - len(tasks)
    (executor or LocalExecutor()).run(
        tasks, train, say, lambda t, device: record_job(dataclasses.replace(t.job, device=device), t.run_dir)
    )
    trained = len(tasks)
    # the rows and the protocol statistics, once per run, in grid order (whatever order the runs ended in)
    rows: list[ResultRow] = []
    preds: dict[str, RunPredictions] = {}  # relative run dir -> its selected model's test predictions
    table_metrics_of: dict[str, dict[str, float]] = {}  # relative run dir -> metrics under the bench protocol
    for job in jobs:
        run_dir = out / "runs" / job.run_name
        row = row_from_run(run_dir, job, stores[job.dataset])
        rel = str(run_dir.relative_to(out))  # relocatable
        ev = run_dir / "eval" / row_label(run_dir)
        preds[rel] = load_prediction_set(ev / PREDICTIONS_FILE)
        record = json.loads((ev / EVAL_RECORD_FILE).read_text()) if (ev / EVAL_RECORD_FILE).is_file() else None
        stats = run_statistics(preds[rel], stores[job.dataset].manifest, cfg, record)
        rows.append(dataclasses.replace(row, run_dir=rel, ci=stats.ci, class_auc=stats.class_auc))
        table_metrics_of[rel] = stats.metrics
    say("building tables")
    report = build_report(rows, cfg, stores, figures=figures, base=out, preds=preds, protocol_metrics=table_metrics_of)
    atomic_write_text(out / "results.csv", rows_frame(rows).to_csv(index=False))
    return BenchResult(out=out, rows=rows, report=report, reused=reused, trained=trained)


def build_report(
    rows: Sequence[ResultRow],
    cfg: BenchConfig,
    stores: dict[str, Any],
    *,
    figures: bool = True,
    base: Path = Path("."),
    preds: dict[str, RunPredictions] | None = None,
    protocol_metrics: dict[str, dict[str, float]] | None = None,
) -> BenchReport:
    """The report of a bench: tables from ``rows`` (their recorded metrics, overlaid with those
    the bench computed under its mAP protocol: ``protocol_metrics`` by run directory), the
    protocol section when ``preds`` (run directory -> test predictions) are given, notes and
    figures. The raw rows of the report (csv/json) keep the recorded numbers."""
    shown = [with_protocol_metrics(r, (protocol_metrics or {}).get(r.run_dir)) for r in rows]
    agg = aggregate(shown)
    section = protocol_section(shown, cfg, stores, preds, figures=figures) if preds else None
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
        headline = headline_table(full)
        if section is not None:
            headline = mark_below_best(headline, section.below_best.get(ds, set()), section.rule.get(ds, ""), ds)
        tables.append((f"{ds}: results ({TABLE_UNIT}, mean ± std over seeds)", headline))
        titles = {
            "metrics": f"{ds}: further metrics ({TABLE_UNIT}, mean ± std over seeds)",
            "runs": f"{ds}: runs and protocol",
        }
        details += [(titles[kind], df) for kind, df in details_tables(full)]
    notes = []
    if any(r.synthetic or r.random_backbone for r in rows):
        notes.append(SYNTHETIC_NOTE)
    notes.append(
        f"Model selection: {', '.join(cfg.selections)} (the official code selects the best checkpoint on the test "
        "set; 'last' and 'best-on-val' are honest rules and every row names its rule). "
        f"Detection mAP: {cfg.map_protocol} rules."
    )
    foot = footnotes_for(df for _, df in tables + details)
    figure_sets: dict[str, list[PredictionSet]] = {}
    if figures:
        for ds in cfg.datasets:
            first = {}
            for r in rows:
                if r.dataset == ds and r.ablation == "all" and r.method not in first:
                    first[r.method] = r
            sets = [predictions_of(base / r.run_dir, stores[ds].manifest, r.method, ds) for r in first.values()]
            figure_sets[ds] = [s for s in sets if s is not None]
    return BenchReport(
        title="dsan bench",
        tables=tables,
        notes=notes,
        rows=rows_frame(rows),
        predictions=figure_sets,
        footnotes=foot,
        details=details,
        protocol=section.tables if section else [],
        protocol_notes=section.notes if section else [],
        protocol_figures=section.figures if section else [],
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
