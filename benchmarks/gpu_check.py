"""GPU check: do the GPU paths work, and how fast? One command, no network, one table + a JSON.

    python benchmarks/gpu_check.py --device cuda --json gpu_check.json          # < 8 min on one GPU
    python benchmarks/gpu_check.py --device cuda --official-src-vadclip /tmp/VadCLIP/src \\
        --official-src-dsanet /tmp/DSANet/src --json gpu_check.json              # ours vs the official step
    python benchmarks/gpu_check.py --device cpu --tiny --json /tmp/check.json     # CPU smoke run (tests)

Sections (each runs on its own; a failure is recorded with its error and the next one runs):

1. ``extraction``: ``extract_throughput.py`` on synthetic UCF-format videos (320x240, 30 fps,
   3,000 frames each) with a random-init ``ViT-B-16`` (fp16 on CUDA), ``--crops 10``, one decode
   worker per core: pipeline crops/s, model-only crops/s, efficiency (target >= 0.9), GPU memory
   peak, and the projected time for all of UCF-Crime (1,900 videos, ~13.8 M frames).
2. ``training``: the training step of dsanet and vadclip (ucf presets, random-init ViT-B-16
   text tower) on the device: step time, samples/s, peak memory; with ``--official-src-*`` also
   ``train_step.py``'s row against the official code. Then one epoch (plus the test
   evaluation) of the ucf preset on a synthetic store of UCF-Crime's size, timed.
3. ``distributed``: ``torchrun --nproc-per-node 1 ... train --device DEV`` on the tiny preset and
   ``dsan bench --jobs 2 --devices DEV,DEV`` on the tiny presets.
4. ``demo``: ``dsan demo --device DEV`` end to end.

``--tiny`` shrinks every size (tiny CLIP, 64-frame videos, 16 + 6 video stores, tiny presets,
one demo method) so that the whole check runs on a CPU in about a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
UCF_VIDEOS, UCF_FRAMES = 1900, 13.8e6
SECTIONS = ("extraction", "training", "distributed", "demo")


@dataclass(frozen=True)
class Sizes:
    videos: int  # synthetic videos for the extraction
    frames: int  # frames per video
    model: str  # CLIP image tower
    preset: str  # training preset
    clip_model: str | None  # text tower for the training checks (random init)
    per_half: int  # normal + anomalous videos per training step (each)
    repeats: int  # timed steps
    store_train: int  # videos of the epoch's store (UCF-Crime: 1610 + 290, 10 crops)
    store_test: int
    store_crops: int
    store_median_t: float
    store_max_t: int
    demo_methods: str


FULL = Sizes(
    videos=4,
    frames=3000,
    model="ViT-B-16",
    preset="ucf",
    clip_model="ViT-B-16",
    per_half=64,
    repeats=10,
    store_train=1610,
    store_test=290,
    store_crops=10,
    store_median_t=250.0,
    store_max_t=2000,
    demo_methods="dsanet,vadclip,mil,zeroshot",
)
TINY = Sizes(
    videos=2,
    frames=64,
    model="dsan-tiny",
    preset="tiny",
    clip_model=None,
    per_half=4,
    repeats=2,
    store_train=16,
    store_test=6,
    store_crops=1,
    store_median_t=48.0,
    store_max_t=96,
    demo_methods="mil",
)


def run(cmd: list[str], timeout: float, cwd: Path | None = None) -> tuple[float, str]:
    """Run a command; its wall time and output. A non-zero exit raises with the output's tail."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)
    out = p.stdout + p.stderr
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])} ... exited {p.returncode}:\n{out[-3000:]}")
    return time.perf_counter() - t0, out


def cuda_sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_mb(device: str) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None


def reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


# -- 1. extraction ---------------------------------------------------------------------------------
def check_extraction(args: argparse.Namespace, sz: Sizes, work: Path) -> dict[str, Any]:
    cores = len(os.sched_getaffinity(0))
    out = work / "extract.json"
    cmd = [sys.executable, str(HERE / "extract_throughput.py"), "--videos", str(sz.videos)]
    cmd += ["--min-frames", str(sz.frames), "--max-frames", str(sz.frames), "--width", "320", "--height", "240"]
    cmd += ["--crops", "10", "--model", sz.model, "--random-weights", "--device", args.device]
    cmd += ["--workers", str(cores), "--no-naive", "--repeats", "1", "--json", str(out)]
    seconds, _ = run(cmd, timeout=args.timeout)
    res = json.loads(out.read_text())
    mode = res["modes"]["10"]
    crops = mode["snippets"] * mode["crops"]
    crops_per_frame = crops / (res["videos"] * sz.frames)
    ucf_s = UCF_FRAMES * crops_per_frame / mode["dsan_crops_per_s"]
    return {
        "seconds": seconds,
        "videos": res["videos"],
        "frames_per_video": sz.frames,
        "model": sz.model,
        "decode_workers": cores,
        "crops": crops,
        "pipeline_crops_per_s": mode["dsan_crops_per_s"],
        "model_only_crops_per_s": mode["model_only_crops_per_s"],
        "efficiency": mode["efficiency_vs_model"],
        "efficiency_target": 0.9,
        "gpu_peak_mb": res.get("gpu_peak_mb"),
        "ucf_projected_hours": ucf_s / 3600,
    }


# -- 2. training -----------------------------------------------------------------------------------
def step_times(method_name: str, sz: Sizes, device: str) -> dict[str, Any]:
    """Our training step alone (train_step.py's batch and stepper), on ``device``."""
    sys.path.insert(0, str(HERE))
    import train_step as ts

    from dsan_toolkit.clip import TINY_MODEL, create_clip
    from dsan_toolkit.manifest.builtin import load_builtin_manifest
    from dsan_toolkit.models import get_method

    method = get_method(method_name)
    preset = method.get_preset(sz.preset)
    classes = load_builtin_manifest("ucf").info.classes
    batch = ts.make_batch(sz.per_half, preset.visual_length, preset.feature_dim, len(classes)).to(device)
    arch = TINY_MODEL if sz.clip_model is None else sz.clip_model
    clip = create_clip(arch, pretrained=None)
    model = method.build(preset, classes, feature_dim=preset.feature_dim, clip=clip, device=device)
    model.train()
    step = ts.our_stepper(method, model, batch, preset)
    reset_peak(device)
    step()  # warm-up
    times = []
    for _ in range(sz.repeats):
        cuda_sync(device)
        times.append(step())
    med = statistics.median(times)
    return {
        "batch": batch.batch_size,
        "step_s": med,
        "samples_per_s": batch.batch_size / med,
        "peak_mb": peak_mb(device),
    }


def epoch_time(method: str, sz: Sizes, device: str, store: Path, work: Path) -> dict[str, Any]:
    from dsan_toolkit.train.run import TrainOptions, train

    out = work / f"epoch-{method}"
    t0 = time.perf_counter()
    res = train(
        TrainOptions(
            method=method,
            features=store,
            out=out,
            preset=sz.preset,
            seed=0,
            epochs=1,
            device=device,
            progress=False,
            clip_model=sz.clip_model,
        )
    )
    if not res.finished:
        raise RuntimeError(f"the epoch of {method} did not finish")
    return {"epoch_and_eval_s": time.perf_counter() - t0}


def check_training(args: argparse.Namespace, sz: Sizes, work: Path) -> dict[str, Any]:
    from dsan_toolkit.store.synthetic import SynthFeaturesConfig, write_synthetic_feature_store

    out: dict[str, Any] = {"preset": sz.preset}
    official = {"vadclip": args.official_src_vadclip, "dsanet": args.official_src_dsanet}
    for m in ("dsanet", "vadclip"):
        out[m] = step_times(m, sz, args.device)
        if official[m]:
            cmd = [sys.executable, str(HERE / "train_step.py"), "--method", m, "--preset", sz.preset]
            cmd += ["--device", args.device, "--official-src", str(official[m]), "--repeats", str(sz.repeats)]
            _, text = run(cmd, timeout=args.timeout)
            out[m]["vs_official"] = [ln for ln in text.splitlines() if ln.startswith(f"| {m} |")][-1]
    t0 = time.perf_counter()
    store = write_synthetic_feature_store(
        work / "ucf-size.zarr",
        SynthFeaturesConfig(
            num_train=sz.store_train,
            num_test=sz.store_test,
            crops=sz.store_crops,
            median_t=sz.store_median_t,
            max_t=sz.store_max_t,
            class_table="ucf",
            dtype="float16" if sz.store_crops > 1 else "float32",
        ),
    )
    out["store"] = {
        "train": sz.store_train,
        "test": sz.store_test,
        "crops": sz.store_crops,
        "write_s": time.perf_counter() - t0,
    }
    for m in ("dsanet", "vadclip"):
        out[m].update(epoch_time(m, sz, args.device, store, work))
    return out


# -- 3. torchrun and the parallel bench ------------------------------------------------------------
def tiny_store(work: Path) -> Path:
    from dsan_toolkit.store.synthetic import SynthFeaturesConfig, write_synthetic_feature_store

    path = work / "tiny.zarr"
    if not path.exists():
        cfg = SynthFeaturesConfig(num_train=16, num_test=6, crops=1, median_t=48, max_t=96, class_table="xd", seed=3)
        write_synthetic_feature_store(path, cfg)
    return path


def check_distributed(args: argparse.Namespace, sz: Sizes, work: Path) -> dict[str, Any]:
    store = tiny_store(work)
    dsan = [sys.executable, "-m", "dsan_toolkit.cli.app"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1", "-m", "dsan_toolkit.cli.app"]
    cmd = torchrun + ["train", "--method", "vadclip", "--features", str(store), "--out", str(work / "ddp")]
    cmd += ["--preset", "tiny", "--epochs", "1", "--device", args.device, "--no-progress"]
    t_ddp, _ = run(cmd, timeout=args.timeout)
    ddp_env = json.loads((work / "ddp" / "environment.json").read_text())
    cmd = dsan + ["bench", "--methods", "vadclip,mil", "--datasets", "synth", "--features", f"synth={store}"]
    cmd += ["--preset", "tiny", "--seeds", "0", "--epochs", "1", "--jobs", "2", "--bootstrap", "100", "--no-figures"]
    cmd += ["--devices", f"{args.device},{args.device}", "--out", str(work / "bench"), "--report", "csv"]
    t_bench, text = run(cmd, timeout=args.timeout)
    if "2 run(s) trained" not in text:
        raise RuntimeError(f"the bench did not train its 2 runs:\n{text[-2000:]}")
    jobs = json.loads((work / "bench" / "bench.json").read_text())["jobs"]
    return {
        "torchrun_train_s": t_ddp,
        "torchrun_world_size": ddp_env.get("world_size"),
        "bench_jobs2_s": t_bench,
        "bench_runs": len(jobs),
        "bench_devices": sorted({e["job"]["device"] for e in jobs.values()}),
    }


# -- 4. the demo -----------------------------------------------------------------------------------
def check_demo(args: argparse.Namespace, sz: Sizes, work: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "dsan_toolkit.cli.app", "demo", "--device", args.device, "--out", str(work / "demo")]
    cmd += ["--methods", sz.demo_methods, "--no-progress"] + (["--epochs", "1"] if args.tiny else [])
    seconds, text = run(cmd, timeout=args.timeout)
    if "audit passed" not in text:
        raise RuntimeError(f"the demo's audit did not pass:\n{text[-2000:]}")
    return {"seconds": seconds, "methods": sz.demo_methods, "audit_passed": True}


CHECKS: dict[str, Callable[[argparse.Namespace, Sizes, Path], dict[str, Any]]] = {
    "extraction": check_extraction,
    "training": check_training,
    "distributed": check_distributed,
    "demo": check_demo,
}


def table(result: dict[str, Any]) -> str:
    """One markdown table: a line per check with its key figures."""

    def f(v: Any, d: int = 1) -> str:
        return "n/a" if v is None else f"{v:.{d}f}" if isinstance(v, float) else str(v)

    lines = ["| check | ok | seconds | figures |", "|---|---|---|---|"]
    for name in SECTIONS:
        s = result["sections"][name]
        if not s["ok"]:
            lines.append(f"| {name} | FAILED | {f(s['seconds'])} | {s['error'].splitlines()[0][:100]} |")
            continue
        if name == "extraction":
            fig = (
                f"pipeline {f(s['pipeline_crops_per_s'], 0)} crops/s, model only {f(s['model_only_crops_per_s'], 0)}, "
                f"efficiency {f(s['efficiency'], 2)} (target 0.9), peak {f(s['gpu_peak_mb'], 0)} MiB, "
                f"UCF-Crime ~{f(s['ucf_projected_hours'], 2)} h"
            )
        elif name == "training":
            fig = "; ".join(
                f"{m}: step {f(s[m]['step_s'], 3)} s, {f(s[m]['samples_per_s'], 0)} samples/s, peak "
                f"{f(s[m]['peak_mb'], 0)} MiB, epoch+eval {f(s[m]['epoch_and_eval_s'])} s"
                for m in ("dsanet", "vadclip")
            )
        elif name == "distributed":
            fig = f"torchrun train {f(s['torchrun_train_s'])} s; bench --jobs 2 {f(s['bench_jobs2_s'])} s"
        else:
            fig = f"demo ({s['methods']}) end to end, audit passed"
        lines.append(f"| {name} | yes | {f(s['seconds'])} | {fig} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    ap.add_argument("--tiny", action="store_true", help="tiny sizes (a CPU smoke run)")
    ap.add_argument("--json", type=Path, default=Path("gpu_check.json"))
    ap.add_argument("--only", default=",".join(SECTIONS), help="sections to run, comma-separated")
    ap.add_argument("--official-src-vadclip", type=Path, default=None, help="src/ of a VadCLIP checkout")
    ap.add_argument("--official-src-dsanet", type=Path, default=None, help="src/ of a DSANet checkout")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per external command")
    ap.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one, removed)")
    args = ap.parse_args()
    only = [s for s in args.only.split(",") if s]
    bad = [s for s in only if s not in CHECKS]
    if bad:
        ap.error(f"--only: unknown section(s) {', '.join(bad)}; sections: {', '.join(SECTIONS)}")
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: CUDA is not available here (use --device cpu --tiny for a CPU run)")
    sz = TINY if args.tiny else FULL
    tmp = None if args.work else tempfile.TemporaryDirectory(prefix="dsan-gpu-check-")
    work = args.work or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "device": args.device,
        "gpu": torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else None,
        "torch": torch.__version__,
        "cores": len(os.sched_getaffinity(0)),
        "tiny": args.tiny,
        "sizes": asdict(sz),
        "sections": {},
    }
    t_all = time.perf_counter()
    for name in SECTIONS:
        if name not in only:
            result["sections"][name] = {"ok": False, "seconds": 0.0, "error": "skipped (--only)"}
            continue
        print(f"gpu_check: {name} ...", file=sys.stderr, flush=True)
        sub = work / name
        sub.mkdir(exist_ok=True)
        t0 = time.perf_counter()
        try:
            res = {"ok": True, **CHECKS[name](args, sz, sub)}
        except Exception as exc:  # noqa: BLE001 - recorded in the JSON; the next check still runs
            res = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        res["seconds"] = time.perf_counter() - t0
        result["sections"][name] = res
    result["seconds"] = time.perf_counter() - t_all
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result), end="")
    print(f"total {result['seconds']:.0f} s; JSON: {args.json}")
    if tmp is not None:
        tmp.cleanup()
    return 0 if all(s["ok"] for s in result["sections"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
