"""Feature store read speed: load a whole split's crop in memory vs per-file .npy reads.

Writes a synthetic store (UCF-like T distribution) and the same features as per-crop .npy
files (the released layout, read one item at a time as the official loaders do), then times
``FeatureStore.load_all`` (one crop of every video, threads), per-video ``read``, and
``np.load`` of every file (page cache warm for all).

    python benchmarks/store_read.py --videos 400 --crops 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=400)
    ap.add_argument("--crops", type=int, default=2)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from dsan_toolkit.store import open_store
    from dsan_toolkit.store.interop import export_features
    from dsan_toolkit.store.synthetic import SynthFeaturesConfig, write_synthetic_feature_store

    work = args.work or Path(tempfile.mkdtemp(prefix="dsan-store-bench-"))
    cfg = SynthFeaturesConfig(num_train=args.videos, num_test=0, crops=args.crops, seed=1)
    t0 = time.perf_counter()
    path = write_synthetic_feature_store(work / "s.zarr", cfg, overwrite=True)
    write_s = time.perf_counter() - t0
    s = open_store(path)
    ids = s.video_ids()
    rows = sum(s.lengths().values())
    export_features(s, work / "npy")
    files = sorted((work / "npy").rglob("*__0.npy"))

    for vid in ids:  # warm the page cache for all three readers alike
        s.read(vid, 0)
    for f in files:
        np.load(f)
    t0 = time.perf_counter()
    feats, offsets = open_store(path).load_all(ids, crop=0)
    load_all_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for vid in ids:
        s.read(vid, 0)
    read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for f in files:
        np.load(f)
    npy_s = time.perf_counter() - t0
    result = {
        "videos": len(ids),
        "rows": rows,
        "MB_per_crop": rows * 512 * 4 / 1e6,
        "write_store_s": write_s,
        "load_all_s": load_all_s,
        "load_all_MB_per_s": rows * 2048 / 1e6 / load_all_s,
        "read_per_video_ms": read_s / len(ids) * 1e3,
        "npy_per_file_ms": npy_s / len(files) * 1e3,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
