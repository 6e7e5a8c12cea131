"""Speed of `dsan synth` (render + H.264 encode) and `dsan verify` (probe, decode, hash).

Usage:
  python benchmarks/synth_verify.py                 # default SynthConfig (26 videos)
  python benchmarks/synth_verify.py --scale 4       # 4x the videos
Prints a markdown table; best of --repeat runs per row.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from dsan_toolkit.datasets.synth import SynthConfig, make_synthetic_dataset, plan_dataset, render_video
from dsan_toolkit.datasets.verify import verify_dataset


def best(fn, repeat: int) -> tuple[float, float]:
    """Best wall time and best CPU time of this process (+ finished children) over the runs."""
    walls, cpus = [], []
    for _ in range(repeat):
        c0 = _cpu()
        t = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t)
        cpus.append(_cpu() - c0)
    return min(walls), min(cpus)


def _cpu() -> float:
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=1, help="multiply the number of videos")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    base = SynthConfig()
    cfg = replace(
        base,
        train_normal=base.train_normal * args.scale,
        train_anomalous=base.train_anomalous * args.scale,
        test_normal=base.test_normal * args.scale,
        test_anomalous=base.test_anomalous * args.scale,
    )
    plan = plan_dataset(cfg)
    frames = sum(v.num_frames for v in plan)
    tmp = Path(tempfile.mkdtemp(prefix="dsan-bench-"))
    rows = []
    try:
        rows.append(("render only (numpy)", best(lambda: [render_video(cfg, v) for v in plan], args.repeat)))
        for workers in (1, 2):

            def gen(w: int = workers) -> None:
                make_synthetic_dataset(tmp / "d", cfg, overwrite=True, workers=w)

            rows.append((f"synth: render + encode, {workers} process(es)", best(gen, args.repeat)))
        m = make_synthetic_dataset(tmp / "d", cfg)
        for label, kw in (
            ("verify --decode ends", {}),
            ("verify --decode ends --checksums", {"checksums": True}),
            ("verify --decode all", {"decode": "all"}),
        ):
            rows.append(
                (label + " (2 threads)", best(lambda kw=kw: verify_dataset(m, tmp / "d", workers=2, **kw), args.repeat))
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load = os.getloadavg()[0]
    print(f"{len(plan)} videos, {frames} frames of {cfg.width}x{cfg.height}; {os.cpu_count()} CPUs, load {load:.1f}\n")
    print("| step | wall s | CPU s | videos/s (wall) | frames/s (wall) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, (t, c) in rows:
        print(f"| {label} | {t:.2f} | {c:.2f} | {len(plan) / t:.1f} | {frames / t:,.0f} |")


if __name__ == "__main__":
    main()
