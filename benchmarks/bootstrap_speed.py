"""Video-level bootstrap speed on a UCF-sized test set: vectorised vs a naive resampling loop.

The test set is the built-in UCF test split (290 videos, their real segments, 13 anomaly classes
+ normal) with synthetic per-snippet predictions (``make_test_set`` of ``metrics_bench.py``; mean
T 240: about 70k snippets, 1.1 M frames). Timed, per metric group:

* ``bootstrap_metrics`` with ``--resamples`` resamples (default 1000): the classifier-score
  group (AUC, AP, AUC on anomalous videos, macro per-class AUC, FAR, TPR@FPR), both score
  branches, the detection mAP,
  and everything at once;
* the naive loop: ``evaluate_predictions`` on the explicitly duplicated video list for
  ``--naive`` resamples (default 5), extrapolated to the same number of resamples.

Each vectorised timing is the best of ``--repeats``; the script also checks that the
vectorised values of the first naive resamples equal the loop's (exit 1 otherwise).

    python benchmarks/bootstrap_speed.py
    python benchmarks/bootstrap_speed.py --resamples 1000 --naive 5 --repeats 3
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

from dsan_toolkit import keys
from dsan_toolkit.eval import DetectionMapConfig, evaluate_predictions
from dsan_toolkit.eval.bootstrap import ResampledMetrics, bootstrap_metrics, counts_with_full_set

HERE = Path(__file__).resolve().parent


def load_make_test_set():
    spec = importlib.util.spec_from_file_location("metrics_bench", HERE / "metrics_bench.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod.make_test_set


def best_of(repeats: int, fn) -> tuple[float, list[float], object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), times, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--naive", type=int, default=5, help="resamples of the naive loop (extrapolated)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--mean-t", type=int, default=240)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    m, test, lengths, scores, probs = load_make_test_set()("ucf", args.mean_t, args.seed)
    align = {k: np.clip(v * 0.9 + 0.05, 0, 1) for k, v in scores.items()}
    n_snip = sum(lengths.values())
    print(f"UCF test set: {len(lengths)} videos, {n_snip} snippets, {16 * n_snip} frames, {len(m.class_codes)} classes")
    b = args.resamples
    groups = {
        "classifier score (AUC, AP, AUC anom., AUC macro, FAR, TPR@FPR)": lambda: bootstrap_metrics(
            m, lengths, scores, n_resamples=b
        ),
        "both score branches": lambda: bootstrap_metrics(m, lengths, scores, align, n_resamples=b),
        "everything (both branches + mAP)": lambda: bootstrap_metrics(m, lengths, scores, align, probs, n_resamples=b),
    }
    vec: dict[str, float] = {}
    for name, fn in groups.items():
        best, times, _ = best_of(args.repeats, fn)
        vec[name] = best
        print(f"vectorised {name}, {b} resamples: best {best:.2f} s  (all: {', '.join(f'{t:.2f}' for t in times)})")

    # the naive loop: evaluate_predictions on the explicitly duplicated video list
    ids = [v.id for v in test.videos]
    counts = counts_with_full_set(len(ids), args.naive, args.seed)
    naive_times = {"scores": [], "all": []}
    ok = True
    prob = ResampledMetrics(m, lengths, scores, None, "test")
    draws = prob.branch("classifier scores", scores, counts)
    draws.update(prob.detection(probs, counts, DetectionMapConfig()))
    for r in range(1, args.naive + 1):
        dup = [ids[i] for i in np.repeat(np.arange(len(ids)), counts[r].astype(int))]
        sub = {i: scores[i] for i in dup}
        t0 = time.perf_counter()
        evaluate_predictions(m, lengths, sub, video_ids=dup)
        naive_times["scores"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        e = evaluate_predictions(m, lengths, sub, {i: align[i] for i in dup}, probs, video_ids=dup)
        naive_times["all"].append(time.perf_counter() - t0)
        for k in (keys.AUC, keys.AP, keys.AUC_ANOMALOUS, keys.AUC_MACRO, keys.FAR, *keys.TPR_AT_FPR, keys.MAP_MEAN):
            if abs(e[k] - draws[k][r]) > 1e-9:
                print(f"MISMATCH resample {r} {k}: loop {e[k]!r} vectorised {draws[k][r]!r}")
                ok = False
    per = {k: float(np.mean(v)) for k, v in naive_times.items()}
    print(
        f"naive loop, {args.naive} resamples: classifier score {per['scores']:.2f} s/resample "
        f"({', '.join(f'{t:.2f}' for t in naive_times['scores'])}); everything {per['all']:.2f} s/resample "
        f"({', '.join(f'{t:.2f}' for t in naive_times['all'])})"
    )
    first = next(iter(groups))
    last = list(groups)[-1]
    for name, naive in ((first, per["scores"]), (last, per["all"])):
        est = naive * b
        print(f"{name}: naive {b} resamples ~ {est:.0f} s (extrapolated) vs {vec[name]:.2f} s: {est / vec[name]:.0f}x")
    print("values: vectorised == loop on the checked resamples" if ok else "values DIFFER")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
