"""Auditing a bench directory: every run it lists, against the hashes ``bench.json``
recorded when the run finished, plus the bench's own results table."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import keys
from ..config import legacy_config_hash, recorded_config_hash, recorded_identity_hash
from ..errors import InputError
from .checks import AuditReport, compare_numbers
from .run import RECOMPUTE_TOLERANCE, RERUN_TOLERANCE, audit_run, read_json


def audit_bench(
    bench_dir: str | Path,
    *,
    rerun: bool = False,
    tolerance: float = RERUN_TOLERANCE,
    device: str = "cpu",
    clip_weights: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> AuditReport:
    out = Path(bench_dir)
    rec = read_json(out / "bench.json")
    rep = AuditReport(target=str(out), kind="bench")
    from ..bench.jobs import BenchConfig, BenchJob

    want = str(rec.get("config_hash", ""))
    got = recorded_config_hash(rec.get("config", {}), BenchConfig)
    recorded = rec.get("config", {})
    if got != want and want in (legacy_config_hash(recorded), recorded_identity_hash(recorded, BenchConfig)):
        got = want  # a bench.json of an earlier version (runtime fields hashed; other bench options)
    rep.add(
        "bench config hash", "bench.json", got == want, want, got, "" if got == want else "the bench config was edited"
    )
    jobs: dict[str, Any] = rec.get("jobs", {})
    if not jobs:
        rep.add("jobs", "bench.json", False, ">= 1 job", "0")
    for key, entry in sorted(jobs.items(), key=lambda kv: kv[1].get("run_dir", "")):
        run_dir = out / str(entry.get("run_dir", ""))
        job_hash = recorded_config_hash(entry.get("job", {}), BenchJob)
        rep.add("job hash", f"bench.json[{entry.get('run_dir')}]", job_hash == key, key, job_hash)
        if not run_dir.is_dir():
            rep.add("run directory", str(entry.get("run_dir")), False, "present", "missing")
            continue
        job = entry.get("job", {})
        recorded = dict(entry.get("hashes", {}))
        for k in (keys.STORE_HASH, keys.MANIFEST_HASH):  # the run was trained on the store of this job
            if job.get(k):
                rep.add(
                    f"{k} (job vs run)",
                    f"bench.json[{entry.get('run_dir')}]",
                    recorded.get(k) == job[k],
                    job[k],
                    recorded.get(k),
                    "" if recorded.get(k) == job[k] else "the run was trained on another store",
                )
        exp = {**recorded, **{k: job[k] for k in (keys.STORE_HASH, keys.MANIFEST_HASH) if job.get(k)}}
        if entry.get("lock_path"):
            exp["lock_path"] = entry["lock_path"]
            exp["lock_sha256"] = entry.get("lock_sha256", "")
        audit_run(
            run_dir,
            rerun=rerun,
            tolerance=tolerance,
            device=device,
            clip_weights=clip_weights,
            report=rep,
            prefix=f"{entry.get('run_dir')}/",
            expected=exp,
            store=job.get("features") or None,  # the store this bench recorded for the job
            progress=progress,
        )
    _check_results_csv(rep, out, jobs)
    return rep


def _check_results_csv(rep: AuditReport, out: Path, jobs: dict[str, Any]) -> None:
    """results.csv must hold, for every run, the numbers of the run's own metrics.json: every
    metric the run has (a blank cell fails), none it lacks."""
    import pandas as pd

    from ..bench.table import METRICS, table_metrics

    path = out / "results.csv"
    if not path.is_file():
        rep.add("results table", "results.csv", False, "present", "missing")
        return
    try:
        df = pd.read_csv(io.StringIO(path.read_text()))
    except Exception as exc:  # noqa: BLE001 - any unreadable table is a failed check
        raise InputError(f"{path} is not a readable CSV: {exc}") from None
    by_dir = {str(r["run_dir"]): r for r in df.to_dict("records")}
    for entry in jobs.values():
        run_dir = out / str(entry.get("run_dir", ""))
        row = next((r for d, r in by_dir.items() if (out / d).resolve() == run_dir.resolve()), None)
        if row is None:
            rep.add("results row", f"results.csv[{entry.get('run_dir')}]", False, "present", "missing")
            continue
        if not (run_dir / "metrics.json").is_file():
            continue
        met = json.loads((run_dir / "metrics.json").read_text())
        sel = met.get("results", {}).get(met.get("selected", "last"), {})
        truth = table_metrics(sel.get(keys.METRICS, {}))
        recorded = {k: row.get(k) for k in METRICS if k in row and row.get(k) == row.get(k)}  # blank/NaN left out
        rep.numbers += compare_numbers(
            f"results.csv[{entry.get('run_dir')}]",
            recorded,
            truth,
            RECOMPUTE_TOLERANCE,
            keys=set(recorded) | set(truth),  # a metric the run has must not be blank in the table
        )


def audit_path(path: str | Path, **kw: Any) -> AuditReport:
    """A bench directory (``bench.json``) or a run directory (``config.json``)."""
    p = Path(path)
    if not p.is_dir():
        raise InputError(f"{p} is not a directory (give a run directory or a bench directory)")
    if (p / "bench.json").is_file():
        given = [opt for opt, k in (("--features", "store"), ("--lock", "lock")) if kw.pop(k, None) is not None]
        if given:
            raise InputError(
                f"{' and '.join(given)} apply to a run directory; a bench directory is audited against the stores "
                "and lock files its bench.json records"
            )
        return audit_bench(p, **kw)
    if (p / "config.json").is_file():
        return audit_run(p, **kw)
    raise InputError(f"{p} is neither a run directory (config.json) nor a bench directory (bench.json)")
