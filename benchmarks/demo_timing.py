"""Wall time of `dsan demo` per stage, of a rerun (everything reused), of `dsan audit` on the
demo's bench directory, and of building the tables from many result rows.

    python benchmarks/demo_timing.py [--out DIR] [--rows 3000]

Prints a markdown table (paste into docs/benchmarks.md) with the machine's load average, since
the numbers are wall times on a possibly shared machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="demo folder (default: a temporary one)")
    ap.add_argument("--rows", type=int, default=3000, help="synthetic result rows for the table timing")
    args = ap.parse_args()

    import numpy as np
    import torch

    from dsan_toolkit.apps.demo import run_demo
    from dsan_toolkit.audit.bench import audit_bench
    from dsan_toolkit.bench.table import ResultRow, aggregate, format_dataset_table

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    tmp = tempfile.TemporaryDirectory(prefix="dsan-demo-bench-")
    out = args.out or Path(tmp.name) / "demo"
    load0 = os.getloadavg()[0]
    t = time.perf_counter()
    first = run_demo(out)
    t_first = time.perf_counter() - t
    t = time.perf_counter()
    run_demo(out)
    t_rerun = time.perf_counter() - t
    t = time.perf_counter()
    rep = audit_bench(out / "bench")
    t_audit = time.perf_counter() - t
    assert rep.ok, rep.problems

    rng = np.random.default_rng(0)
    rows = [
        ResultRow(
            method=f"m{i % 20}",
            dataset="ucf",
            seed=i // 20,
            preset="ucf",
            selection="last",
            config_hash=f"{i:064x}",
            features="vadclip-release",
            backbone="ViT-B-16",
            random_backbone=False,
            synthetic=False,
            metrics={"auc": float(rng.random()), "ap": float(rng.random()), "map_mean": float(100 * rng.random())},
        )
        for i in range(args.rows)
    ]
    t = time.perf_counter()
    agg = aggregate(rows)
    format_dataset_table(agg, "ucf")
    t_table = time.perf_counter() - t
    load1 = os.getloadavg()[0]

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
        f"{torch.get_num_threads()}, load average {load0:.1f} -> {load1:.1f}"
    )
    print("\n| step | seconds |\n| --- | ---: |")
    for k, v in first.timings.items():
        print(f"| demo: {k} | {v:.1f} |")
    print(f"| demo: total (first run) | {t_first:.1f} |")
    print(f"| demo: rerun (everything reused) | {t_rerun:.1f} |")
    print(f"| dsan audit of the demo bench ({len(first.methods)} runs) | {t_audit:.1f} |")
    print(f"| tables from {args.rows} result rows | {t_table:.2f} |")
    tmp.cleanup()


if __name__ == "__main__":
    main()
