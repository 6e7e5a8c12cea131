"""Decoder backends: the same frames decoded with decord and with PyAV, timed.

The workload is synthetic H.264 video in UCF-Crime's format (320x240, 30 fps) of UCF length
(thousands of frames per video). Each backend decodes, through the extraction's block reader
(:func:`dsan_toolkit.decode.reader.iter_video_blocks`, default 64 MiB blocks), the frames the
snippet rule needs, video after video in this process. Measured per repeat and backend: wall
seconds, CPU seconds of this process (every thread: PyAV decodes with FFmpeg's threads,
decord with one), frames delivered per wall second and CPU seconds per delivered frame; the
ratio pyav / decord of each. An untimed pass first checks that both deliver the same frames
(mean and max absolute pixel difference over every delivered frame).

    python benchmarks/decode_backends.py --videos 6 --min-frames 4000 --max-frames 9000 --repeats 3 \
        --json benchmarks/results/decode_backends.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def blocks(path: Path, decoder: str, rule: str):
    from dsan_toolkit.decode.messages import FrameBlock, VideoFailed
    from dsan_toolkit.decode.reader import iter_video_blocks

    for msg in iter_video_blocks(path.stem, path, rule=rule, decoder=decoder):
        if isinstance(msg, VideoFailed):
            raise SystemExit(f"{path}: {msg.error}")
        if isinstance(msg, FrameBlock):
            yield msg.frames.numpy()


def agreement(paths: list[Path], rule: str) -> dict:
    total, worst, count = 0.0, 0, 0
    for p in paths:
        for a, b in zip(blocks(p, "decord", rule), blocks(p, "pyav", rule), strict=True):
            d = np.abs(a.astype(np.int16) - b.astype(np.int16))
            total += float(d.sum())
            count += d.size
            worst = max(worst, int(d.max()))
    return {"mean_abs_diff": total / count, "max_abs_diff": worst, "values_compared": count}


def time_backend(paths: list[Path], decoder: str, rule: str) -> dict:
    frames = 0
    c0, t0 = cpu_s(), time.perf_counter()
    for p in paths:
        for f in blocks(p, decoder, rule):
            frames += f.shape[0]
    wall, cpu = time.perf_counter() - t0, cpu_s() - c0
    return {
        "frames": frames,
        "wall_s": wall,
        "cpu_s": cpu,
        "frames_per_s": frames / wall,
        "cpu_s_per_frame": cpu / frames,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=6)
    ap.add_argument("--min-frames", type=int, default=4000)
    ap.add_argument("--max-frames", type=int, default=9000)
    ap.add_argument("--snippet", default="middle")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--work", type=Path, default=None, help="Folder for the videos (kept); default: a temp folder.")
    args = ap.parse_args()

    import decord
    from extract_throughput import synthetic_workload  # the same workload as the extraction benchmark

    from dsan_toolkit.decode.backends import decoder_record

    work = args.work or Path(tempfile.mkdtemp(prefix="dsan-decode-bench-"))
    manifest = synthetic_workload(work, args.videos, args.min_frames, args.max_frames, 320, 240)
    paths = [work / "videos" / v.path for v in manifest.videos]
    lengths = [len(decord.VideoReader(str(p))) for p in paths]
    result: dict = {
        "videos": len(paths),
        "frames_per_video": lengths,
        "resolution": "320x240",
        "snippet": args.snippet,
        "decoders": {d: decoder_record(d) for d in ("decord", "pyav")},
        "machine": platform.processor() or platform.machine(),
        "agreement": agreement(paths, args.snippet),
        "repeats": [],
    }
    print("agreement", result["agreement"], flush=True)
    for r in range(args.repeats):
        row = {d: time_backend(paths, d, args.snippet) for d in ("decord", "pyav")}
        row["ratio_frames_per_s"] = row["pyav"]["frames_per_s"] / row["decord"]["frames_per_s"]
        row["ratio_cpu_s_per_frame"] = row["pyav"]["cpu_s_per_frame"] / row["decord"]["cpu_s_per_frame"]
        result["repeats"].append(row)
        print(
            f"repeat {r + 1}: "
            + ", ".join(
                f"{d} {row[d]['wall_s']:.2f} s wall, {row[d]['cpu_s']:.2f} CPU-s, {row[d]['frames_per_s']:.1f} frames/s, "
                f"{1e3 * row[d]['cpu_s_per_frame']:.2f} CPU-ms/frame"
                for d in ("decord", "pyav")
            )
            + f"; pyav/decord frames/s {row['ratio_frames_per_s']:.2f}, CPU/frame {row['ratio_cpu_s_per_frame']:.2f}",
            flush=True,
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
