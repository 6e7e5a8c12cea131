"""Data-parallel training under a real `torchrun` with two CPU processes (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from dsan_toolkit.store.synthetic import SynthFeaturesConfig, write_synthetic_feature_store

# best-on-test with an evaluation after iterations 1, 2 and 3 and the reload at the epoch end:
# rank 0 evaluates and decides, every rank continues from its choice
ARGS = [
    "--preset",
    "tiny",
    "--epochs",
    "1",
    "--set",
    "batch_size=4",
    "--set",
    "visual_length=32",
    "--no-progress",
    "--select",
    "best-on-test",
    "--set",
    "eval_every_iters=1",
    "--set",
    "reload_best_each_epoch=true",
]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    return env


def _steps(run: Path) -> list[dict]:
    return [e for e in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if e["event"] == "step"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ddp-store") / "synth.zarr"
    cfg = SynthFeaturesConfig(num_train=16, num_test=6, crops=2, median_t=60, min_t=20, max_t=200, seed=11, signal=1.0)
    return write_synthetic_feature_store(path, cfg)


@pytest.mark.integration
def test_two_process_torchrun_matches_single_process(store, tmp_path):
    ddp_out, ref_out = tmp_path / "ddp", tmp_path / "single"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "dsan_toolkit.cli.app",
        "train",
        "-m",
        "vadclip",
        "-f",
        str(store),
        "--out",
        str(ddp_out),
        *ARGS,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # the single-process reference runs in this process (no second interpreter start-up)
    from typer.testing import CliRunner

    from dsan_toolkit.cli.app import app

    single = CliRunner().invoke(
        app, ["train", "-m", "vadclip", "-f", str(store), "--out", str(ref_out), *ARGS], catch_exceptions=False
    )
    assert single.exit_code == 0, single.output

    cfg = json.loads((ddp_out / "config.json").read_text())["config"]
    assert cfg["world_size"] == 2
    env = json.loads((ddp_out / "environment.json").read_text())
    assert env["world_size"] == 2 and env["backend"] == "gloo"
    # rank 0 alone wrote: one start event, one line per global step
    events = [json.loads(x) for x in (ddp_out / "log.jsonl").read_text().splitlines()]
    assert sum(e["event"] == "start" for e in events) == 1
    d, s = _steps(ddp_out), _steps(ref_out)
    assert [e["step"] for e in d] == [e["step"] for e in s] == [1, 2, 3, 4]
    assert all(e["samples"] == 8 for e in d)  # the global batch: 4 normal + 4 anomalous
    # same initial weights and the same global batches: step 1 is the single-process loss
    # (a mean of the two halves' means); later steps follow the averaged gradients
    assert d[0]["loss"] == pytest.approx(s[0]["loss"], rel=1e-5)
    for a, b in zip(d, s):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-3)
    wa = load_file(str(ddp_out / "checkpoints" / "last.safetensors"))
    wb = load_file(str(ref_out / "checkpoints" / "last.safetensors"))
    worst = max(float(np.abs(wa[k] - wb[k]).max()) for k in wa)
    assert worst < 1e-3
    ra = json.loads((ddp_out / "metrics.json").read_text())["results"]
    rb = json.loads((ref_out / "metrics.json").read_text())["results"]
    assert set(ra) == set(rb) == {"last", "best-on-test"}
    assert ra["last"]["metrics"]["auc"] == pytest.approx(rb["last"]["metrics"]["auc"], abs=0.02)
    assert ra["best-on-test"]["value"] == pytest.approx(rb["best-on-test"]["value"], abs=0.02)
    evals = [e for e in events if e["event"] == "eval"]
    assert [e["iter"] for e in evals] == [1, 2, 3]
