"""Metric computation time on a UCF-sized test set, side by side with the official code.

The test set is the built-in UCF test split (290 videos, their real segments and classes) with
synthetic per-snippet predictions (mean T about 401 snippets; class probabilities with signal on
the annotated segments, float32 like the official softmax output).

Timed: our ``fine_grained_map`` and ``evaluate_predictions`` (frame AUC/AP of two scores + mAP), the
official ``getDetectionMAP`` (imported from a checked-out official snapshot, ``--official-src``,
never committed) with its scikit-learn AUC/AP on repeated scores; without ``--official-src`` the
mAP is compared with the loop reference of ``tests/test_detection_map.py`` instead. The values
must be identical: the script exits non-zero if they are not.

    # official snapshot (VadCLIP @f643c91; DSANet's detection-mAP files are the same):
    #   git clone https://github.com/nwpu-zxr/VadCLIP /tmp/vadclip
    python benchmarks/metrics_bench.py --official-src /tmp/vadclip
    python benchmarks/metrics_bench.py               # against the loop reference
    python benchmarks/metrics_bench.py --dataset xd --videos 120 --official-src /tmp/vadclip
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from dsan_toolkit.eval import DetectionMapConfig, evaluate_predictions, fine_grained_map, frame_gt
from dsan_toolkit.eval.detection_map import installed_float_semantics
from dsan_toolkit.manifest.builtin import load_builtin_manifest

ROOT = Path(__file__).resolve().parents[1]


def make_test_set(dataset: str, mean_t: int, seed: int, videos: int = 0):
    m = load_builtin_manifest(dataset)
    test = m.split("test")
    rng = np.random.default_rng(seed)
    if videos:  # a seeded subset of the test videos
        pick = np.sort(rng.choice(len(test), min(videos, len(test)), replace=False))
        test = test.select(test.videos[i].id for i in pick)
    idx = m.class_index()
    c = len(m.class_codes)
    lengths, scores, probs = {}, {}, {}
    for v in test.videos:
        need = max((s.end for s in v.segments), default=0) // 16 + 1
        t = int(max(need, rng.integers(mean_t // 8, 2 * mean_t - mean_t // 8)))
        logits = rng.normal(size=(t, c)).astype(np.float32)
        for s in v.segments:
            logits[s.start // 16 : min(t, s.end // 16 + 1), idx[s.label]] += 2.5
        if not m.is_anomalous(v):
            logits[:, idx[m.normal_class]] += 1.0
        e = np.exp(logits - logits.max(1, keepdims=True))
        p = (e / e.sum(1, keepdims=True)).astype(np.float32)
        probs[v.id], lengths[v.id] = p, t
        scores[v.id] = (1.0 - p[:, idx[m.normal_class]]).astype(np.float32)
    return m, test, lengths, scores, probs


def official_inputs(m, test, probs):
    """The official test code's inputs: frame-level (repeated) probabilities, string segments,
    normal videos as one segment labelled 'A' over their whole length (make_gt_mAP_*.py)."""
    stack = [np.repeat(probs[v.id], 16, 0) for v in test.videos]
    segs, labs = [], []
    for v in test.videos:
        if m.is_anomalous(v):
            segs.append([[str(s.start), str(s.end)] for s in v.segments])
            labs.append([s.label for s in v.segments])
        else:
            segs.append([[0, len(probs[v.id]) * 16]])
            labs.append(["A"])
    return stack, segs, labs


def load_official(src: Path, dataset: str):
    path = src / "src" / "utils" / f"{dataset}_detectionMAP.py"
    if not path.is_file():
        raise SystemExit(f"{path} not found: pass the root of a VadCLIP or DSANet checkout")
    spec = importlib.util.spec_from_file_location(f"official_{dataset}_map", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.getDetectionMAP


def best_of(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ucf", choices=["ucf", "xd"])
    ap.add_argument("--mean-t", type=int, default=401)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--videos", type=int, default=0, help="a seeded subset of the test videos (0: all)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--official-src", type=Path, default=None, help="root of an official VadCLIP/DSANet checkout")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()

    m, test, lengths, scores, probs = make_test_set(args.dataset, args.mean_t, args.seed, args.videos)
    t_arr = np.array(list(lengths.values()))
    here = installed_float_semantics()
    cfg = DetectionMapConfig(float_semantics=here)
    row: dict[str, object] = {
        "dataset": args.dataset,
        "videos": len(test),
        "mean_T": float(t_arr.mean()),
        "snippets": int(t_arr.sum()),
        "numpy": np.__version__,
        "float_semantics": here,
    }
    row["ours_map_s"], ours = best_of(lambda: fine_grained_map(m, probs, config=cfg), args.repeats)
    row["ours_map_default_s"], _ = best_of(lambda: fine_grained_map(m, probs), args.repeats)
    row["ours_all_metrics_s"], allm = best_of(
        lambda: evaluate_predictions(
            m, lengths, scores, scores, probs, video_ids=[v.id for v in test.videos], detection=cfg
        ),
        args.repeats,
    )
    row["ours_map"] = list(ours.map)
    row["ours_auc"], row["ours_ap"] = allm["auc"], allm["ap"]

    if args.official_src is not None:
        get_map = load_official(args.official_src, args.dataset)
        stack, segs, labs = official_inputs(m, test, probs)
        t0 = time.perf_counter()
        dmap, _ = get_map(stack, segs, labs, excludeNormal=False)
        row["official_map_s"] = time.perf_counter() - t0
        row["official_map"] = [float(x) for x in dmap]
        gt = frame_gt(m, test.videos, lengths)
        rep = np.repeat(np.concatenate([scores[v.id] for v in test.videos]).tolist(), 16)
        t0 = time.perf_counter()
        auc, apv = roc_auc_score(gt, rep), average_precision_score(gt, rep)
        roc_auc_score(gt, rep), average_precision_score(gt, rep)  # the official test computes them twice (both scores)
        row["official_auc_ap_s"] = time.perf_counter() - t0
        row["official_auc"], row["official_ap"] = float(auc), float(apv)
        identical = row["official_map"] == row["ours_map"] and auc == allm["auc"] and apv == allm["ap"]
        ref_time = row["official_map_s"]
    else:
        sys.path.insert(0, str(ROOT / "tests"))
        from test_detection_map import gts_for, loop_map  # the test's loop reference

        mode = "no-gt" if args.dataset == "ucf" else "whole-video"
        probs_list = [probs[v.id] for v in test.videos]
        gts = gts_for(test, probs, mode)
        t0 = time.perf_counter()
        ref = loop_map(probs_list, gts, len(m.class_codes), semantics=here)
        row["loop_map_s"] = time.perf_counter() - t0
        row["loop_map"] = ref
        identical = ref == row["ours_map"]
        ref_time = row["loop_map_s"]
    row["identical"] = bool(identical)
    row["map_speedup"] = ref_time / row["ours_map_s"]

    for k, v in row.items():
        print(f"{k:>22}: {v:.4f}" if isinstance(v, float) else f"{k:>22}: {v}")
    if args.json:
        args.json.write_text(json.dumps(row, indent=2))
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
