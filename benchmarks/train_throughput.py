"""Training data loading (items/s) and training throughput (samples/s), in one run.

Data loading, on the same synthetic UCF-shaped store (T log-normal around 250 snippets, 512-d):

- ``official-style``: what the official ``UCFDataset`` does per item -- a pandas ``.loc``
  look-up of the item's row in a ``path,label`` list, ``np.load`` of its per-crop ``.npy``
  file and the loop-based uniform-average resampling to 256 rows -- reimplemented here as the
  reference (the features are exported to ``.npy`` files first, as the released features are);
- ``ours, cold``: :func:`dsan_toolkit.train.samples.build_train_samples` reading the Zarr store
  and resampling the whole split, vectorised (what a run does once at start);
- ``ours, warm``: assembling the official paired batches (64 normal + 64 anomalous) of one
  epoch from the in-memory cache (what every step does).

Training: median step time (forward, losses, backward, optimisers) and samples/s of
``Trainer`` steps for each method and preset, with the batch size given (paired: that many
normal plus that many anomalous samples).

    python benchmarks/train_throughput.py                       # defaults used in docs/benchmarks.md
    python benchmarks/train_throughput.py --videos 400 --crops 10 --steps 5 --device cuda

Official presets run with a random-init ViT-B-16 text tower (``--clip-model``): the cost of the
real one, without downloading weights.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def official_style_items_per_s(store, ids: list[str], crops: list[int], workdir: Path, limit: int) -> float:
    import pandas as pd

    manifest = store.manifest
    rows = []
    for vid in ids:
        feats = store.read(vid, crops)
        label = manifest.video(vid).labels[0]
        for j, c in enumerate(crops):
            p = workdir / f"{vid}__{c}.npy"
            np.save(p, feats[j])
            rows.append({"path": str(p), "label": label})
    csv = workdir / "list.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    df = pd.read_csv(csv)
    n = min(limit, len(df))

    def uniform_extract(feat: np.ndarray, t_max: int) -> np.ndarray:
        new = np.zeros((t_max, feat.shape[1]), dtype=np.float32)
        r = np.linspace(0, len(feat), t_max + 1, dtype=np.int32)
        for i in range(t_max):
            new[i] = np.mean(feat[r[i] : r[i + 1]], 0) if r[i] != r[i + 1] else feat[r[i]]
        return new

    def item(i: int) -> tuple[torch.Tensor, str, int]:
        feat = np.load(df.loc[i]["path"])
        if feat.shape[0] > 256:
            feat, length = uniform_extract(feat, 256), 256
        else:
            length = feat.shape[0]
            feat = np.pad(feat, ((0, 256 - length), (0, 0)))
        return torch.tensor(feat), df.loc[i]["label"], length

    t0 = time.perf_counter()
    for i in range(n):
        item(i)
    return n / (time.perf_counter() - t0)


def ours_items_per_s(store, ids: list[str], crops: list[int]) -> tuple[float, float, object]:
    from dsan_toolkit.train.batching import BatchPlan, iterate_batches
    from dsan_toolkit.train.samples import build_train_samples

    m = store.manifest
    t0 = time.perf_counter()
    samples = build_train_samples(store, m, ids, crops, m.info.classes, 256)
    cold = len(samples) / (time.perf_counter() - t0)
    plan = BatchPlan.create(samples, "paired", 64, seed=0)
    batches = plan.epoch(0)
    t0 = time.perf_counter()
    n = 0
    for b, _share in iterate_batches(samples, batches):  # the training loop's path (ring buffers, prefetch)
        n += b.batch_size
    warm = n / (time.perf_counter() - t0)
    return cold, warm, samples


def train_steps(
    store_path: Path, method: str, preset: str, batch_size: int, steps: int, device: str
) -> tuple[float, int]:
    from dsan_toolkit.models.registry import get_method
    from dsan_toolkit.store import open_store
    from dsan_toolkit.train import distributed as ddp
    from dsan_toolkit.train.batching import iterate_batches
    from dsan_toolkit.train.run import TrainOptions, resolve_config
    from dsan_toolkit.train.trainer import Trainer

    store = open_store(store_path)
    m = get_method(method)
    with tempfile.TemporaryDirectory() as tmp:
        # official presets need the real text tower depth: a random-init ViT-B-16 (same cost)
        opts = TrainOptions(
            method=method,
            features=store_path,
            out=Path(tmp) / "run",
            preset=preset,
            overrides={"batch_size": batch_size},
            device=device,
            progress=False,
            clip_model=None if preset == "tiny" else "ViT-B-16",
        )
        cfg = resolve_config(opts, store, store.manifest, m, 1)
        tr = Trainer(cfg, m, store.manifest, store, torch.device(device), ddp.DistInfo(), out=opts.out)
        tr.setup()
        tr.model.train()
        batches = tr.plan.epoch(0)[: steps + 1]
        times = []
        n = 0
        for k, (batch, share) in enumerate(iterate_batches(tr.samples, batches, device=torch.device(device))):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            tr.runner.step(batch, share, k + 1)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
            n = batch.batch_size
        return statistics.median(times[1:]), n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=200, help="training videos in the synthetic store")
    ap.add_argument("--crops", type=int, default=10)
    ap.add_argument("--official-items", type=int, default=600, help="items timed for the official-style loader")
    ap.add_argument("--methods", default="vadclip,dsanet")
    ap.add_argument("--presets", default="tiny,ucf")
    ap.add_argument("--batch-size", type=int, default=8, help="per half of a paired batch")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from dsan_toolkit.store import open_store
    from dsan_toolkit.store.synthetic import SynthFeaturesConfig, write_synthetic_feature_store

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        cfg = SynthFeaturesConfig(
            num_train=args.videos,
            num_test=max(8, args.videos // 10),
            crops=args.crops,
            median_t=250.0,
            max_t=2000,
            seed=0,
        )
        path = write_synthetic_feature_store(tmp_path / "bench.zarr", cfg)
        store = open_store(path)
        ids = [v.id for v in store.manifest.split("train")]
        crops = list(store.crop_ids)
        workdir = tmp_path / "npy"
        workdir.mkdir()
        official = official_style_items_per_s(store, ids, crops, workdir, args.official_items)
        cold, warm, samples = ours_items_per_s(store, ids, crops)
        print(
            f"threads {torch.get_num_threads()}, cpu count {os.cpu_count()}, {len(samples)} items "
            f"({args.videos} videos x {args.crops} crops), mean T {np.mean(list(store.lengths().values())):.0f}"
        )
        print("\n| loader | items/s | vs official-style |\n| --- | ---: | ---: |")
        print(f"| official-style (pandas .loc + np.load + loop resampling) | {official:,.0f} | 1.0x |")
        print(f"| ours, cold (Zarr read + vectorised resampling of the split) | {cold:,.0f} | {cold / official:.1f}x |")
        print(f"| ours, warm (paired 64+64 batches from the cache) | {warm:,.0f} | {warm / official:.0f}x |")
        print(
            "\n| method | preset | batch | median step (s) | samples/s | device |\n| --- | --- | --- | ---: | ---: | --- |"
        )
        for method in args.methods.split(","):
            for preset in args.presets.split(","):
                step, n = train_steps(path, method, preset, args.batch_size, args.steps, args.device)
                print(
                    f"| {method} | {preset} | {args.batch_size}+{args.batch_size} | {step:.2f} | {n / step:.1f} | {args.device} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
