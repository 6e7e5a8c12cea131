"""Extraction throughput: the dsan pipeline vs a naive extractor, same videos, same model, one run.

The naive baseline is written the way common extractors work: one video at a time, frames
read with decord, per-frame PIL preprocessing (resize, crops, ToTensor, Normalize per crop),
one model call per video. Both use the same frames (the snippet rule), the same geometry and
the same backbone; the benchmark checks that they produce the same features (cosine).

Also measured: model-only crops/s on pre-decoded, pre-processed tensors, and decode-only
frames/s, to report pipeline efficiency. Runs are interleaved (naive, dsan, naive, dsan, ...)
and the best of ``--repeats`` is kept, because the machine may be shared.

    python benchmarks/extract_throughput.py --videos 6 --crops 10 --repeats 2 \
        --json benchmarks/results/extract_throughput.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def naive_extract(manifest, root: Path, bundle, crops: tuple[int, ...], resize: int, snippet: str) -> dict[str, np.ndarray]:
    """One video at a time, per-frame PIL preprocessing, one model call per video."""
    import decord
    from PIL import Image
    from torchvision import transforms as T

    from dsan_toolkit.decode.crops import crop_boxes
    from dsan_toolkit.decode.snippets import snippet_frame_indices

    size = bundle.info.image_size
    to_tensor = T.Compose([T.ToTensor(), T.Normalize(bundle.info.mean, bundle.info.std)])
    resize_tf = T.Resize(resize, interpolation=T.InterpolationMode.BICUBIC)
    out = {}
    for v in manifest.videos:
        vr = decord.VideoReader(str(root / v.path))
        idx = snippet_frame_indices(snippet, len(vr))
        frames = vr.get_batch(idx.reshape(-1).tolist()).asnumpy()
        images = []
        for fr in frames:
            img = resize_tf(Image.fromarray(fr))
            (h, w), boxes = crop_boxes(crops, fr.shape[0], fr.shape[1], resize, size)
            for b in boxes:
                c = img.crop((b.left, b.top, b.left + size, b.top + size))
                if b.flip:
                    c = c.transpose(Image.FLIP_LEFT_RIGHT)
                images.append(to_tensor(c))
        x = torch.stack(images)
        with torch.inference_mode():
            f = bundle.model.encode_image(x)
        f = f.reshape(idx.shape[0], idx.shape[1], len(crops), -1).mean(1).permute(1, 0, 2)
        out[v.id] = f.numpy()
    return out


def model_only(bundle, n_images: int, batch: int) -> float:
    x = torch.randn(min(n_images, batch), 3, bundle.info.image_size, bundle.info.image_size)
    done = 0
    t0 = time.perf_counter()
    with torch.inference_mode():
        while done < n_images:
            bundle.model.encode_image(x)
            done += x.shape[0]
    return done / (time.perf_counter() - t0)


def decode_only(manifest, root: Path, snippet: str) -> tuple[float, int]:
    import decord

    from dsan_toolkit.decode.snippets import snippet_frame_indices

    n = 0
    t0 = time.perf_counter()
    for v in manifest.videos:
        vr = decord.VideoReader(str(root / v.path), num_threads=1)
        idx = snippet_frame_indices(snippet, len(vr)).reshape(-1)
        for s in range(0, len(idx), 64):
            n += vr.get_batch(idx[s : s + 64].tolist()).shape[0]
    return n / (time.perf_counter() - t0), n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=6)
    ap.add_argument("--min-frames", type=int, default=320)
    ap.add_argument("--max-frames", type=int, default=480)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--crops", default="10", choices=["10", "center"])
    ap.add_argument("--snippet", default="middle")
    ap.add_argument("--model", default="dsan-tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--work", type=Path, default=None, help="Folder for the videos (kept); default: a temp folder.")
    args = ap.parse_args()

    from dsan_toolkit.clip import TINY_MODEL, create_clip
    from dsan_toolkit.datasets.synth import SynthConfig, make_synthetic_dataset
    from dsan_toolkit.decode.crops import parse_crops
    from dsan_toolkit.extract import ExtractConfig, RunOptions, extract_features
    from dsan_toolkit.extract.pipeline import resolve_config
    from dsan_toolkit.store import open_store

    work = args.work or Path(tempfile.mkdtemp(prefix="dsan-bench-"))
    half = max(1, args.videos // 2)
    cfg_v = SynthConfig(train_normal=half, train_anomalous=args.videos - half, test_normal=0, test_anomalous=0,
                        min_frames=args.min_frames, max_frames=args.max_frames, width=args.width, height=args.height,
                        fps=30.0)
    manifest = make_synthetic_dataset(work / "videos", cfg_v, workers=2)
    root = work / "videos"
    pretrained = None if args.model == TINY_MODEL else "openai"
    bundle = create_clip(args.model, pretrained, device=args.device)
    cfg = ExtractConfig(model=args.model, pretrained=pretrained, snippet=args.snippet, crops=args.crops)
    rcfg = resolve_config(cfg, torch.device(args.device), bundle.info.image_size)
    crops = parse_crops(args.crops)
    opts = RunOptions(device=args.device, workers=args.workers, batch_size=args.batch_size, progress=False)

    naive_s, ours_s, model_cps_all, decode_all, snippets = [], [], [], [], 0
    ours_feats = naive_feats = None
    for rep in range(args.repeats):
        t0 = time.perf_counter()
        naive_feats = naive_extract(manifest, root, bundle, crops, int(rcfg.resize), args.snippet)
        naive_s.append(time.perf_counter() - t0)
        out = work / f"ours{rep}.zarr"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        res = extract_features(manifest, root, out, cfg, opts, overwrite=True, bundle=bundle)
        ours_s.append(time.perf_counter() - t0)
        snippets = res.snippets
        ours_feats = open_store(out)
        frames_per_row = 16 if args.snippet == "mean" else 1
        n_crops_total = snippets * len(crops) * frames_per_row
        model_cps_all.append(model_only(bundle, n_crops_total, args.batch_size))
        decode_all.append(decode_only(manifest, root, args.snippet)[0])
    model_cps, decode_fps = max(model_cps_all), max(decode_all)
    cos = []
    for vid, f in naive_feats.items():
        g = ours_feats.read(vid)
        num = (f * g).sum(-1)
        cos.append(float((num / (np.linalg.norm(f, axis=-1) * np.linalg.norm(g, axis=-1))).mean()))
    best_naive, best_ours = min(naive_s), min(ours_s)
    ours_cps = n_crops_total / best_ours
    result = {
        "videos": len(manifest),
        "frames_per_video": [args.min_frames, args.max_frames],
        "resolution": f"{args.width}x{args.height}",
        "snippet": args.snippet,
        "crops": len(crops),
        "model": args.model,
        "device": args.device,
        "workers": args.workers,
        "cpu_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "load_avg_start": os.getloadavg()[0],
        "snippets": snippets,
        "naive_s": naive_s,
        "model_only_crops_per_s_runs": model_cps_all,
        "dsan_s": ours_s,
        "speedup": best_naive / best_ours,
        "dsan_videos_per_s": len(manifest) / best_ours,
        "dsan_snippets_per_s": snippets / best_ours,
        "dsan_crops_per_s": ours_cps,
        "naive_crops_per_s": n_crops_total / best_naive,
        "model_only_crops_per_s": model_cps,
        "decode_only_frames_per_s": decode_fps,
        "efficiency_vs_model": ours_cps / model_cps,
        "efficiency_vs_decode": (snippets * frames_per_row / best_ours) / decode_fps,
        "cosine_naive_vs_dsan_min": min(cos),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
