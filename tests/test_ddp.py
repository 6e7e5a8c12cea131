"""Data-parallel training under a real `torchrun` (gloo, CPU processes): DDP with two
processes sees the batches and gradients of one process; one process under torchrun goes
through the process-group path and equals a plain run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from safetensors.torch import load_file as load_tensors

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


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra)
    return env


def _torchrun(nproc: int, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(nproc),
        "-m",
        "dsan_toolkit.cli.app",
        *args,
    ]


def _train_here(*args: str) -> None:
    """A plain (no torchrun) run in this process."""
    from typer.testing import CliRunner

    from dsan_toolkit.cli.app import app

    res = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output


def _steps(run: Path) -> list[dict]:
    return [e for e in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if e["event"] == "step"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ddp-store") / "synth.zarr"
    cfg = SynthFeaturesConfig(num_train=16, num_test=6, crops=2, median_t=60, min_t=20, max_t=200, seed=11, signal=1.0)
    return write_synthetic_feature_store(path, cfg)


@pytest.mark.integration
def test_two_process_torchrun_matches_single_process(store, tmp_path, monkeypatch):
    ddp_out, ref_out = tmp_path / "ddp", tmp_path / "single"
    cmd = _torchrun(2, "train", "-m", "vadclip", "-f", str(store), "--out", str(ddp_out), *ARGS)
    env = _env(DSAN_GRAD_DUMP=str(tmp_path / "grads-ddp"))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # the single-process reference runs in this process (no second interpreter start-up)
    monkeypatch.setenv("DSAN_GRAD_DUMP", str(tmp_path / "grads-single"))
    _train_here("train", "-m", "vadclip", "-f", str(store), "--out", str(ref_out), *ARGS)

    # the first step's gradients, after DDP's all-reduce (each rank's loss scaled by its share
    # times the world size), are the single process's gradients of the global batch
    ga = load_tensors(str(tmp_path / "grads-ddp" / "step-000001.safetensors"))
    gb = load_tensors(str(tmp_path / "grads-single" / "step-000001.safetensors"))
    assert set(ga) == set(gb) and len(ga) > 10
    assert "encoder.disAdj.sigma" not in ga  # no gradient on any rank, as in one process
    for k in gb:
        torch.testing.assert_close(ga[k], gb[k], rtol=1e-5, atol=1e-5 * float(gb[k].abs().max()), msg=k)
    assert not any(torch.equal(ga[k], torch.zeros_like(ga[k])) for k in ga)

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


@pytest.mark.integration
def test_one_process_torchrun_goes_through_the_process_group_and_equals_a_plain_run(store, tmp_path, monkeypatch):
    one_out, plain_out = tmp_path / "one", tmp_path / "plain"
    args = ["--preset", "tiny", "--epochs", "1", "--set", "batch_size=4", "--set", "visual_length=32", "--no-progress"]
    cmd = _torchrun(1, "train", "-m", "vadclip", "-f", str(store), "--out", str(one_out), *args)
    env = _env(DSAN_GRAD_DUMP=str(tmp_path / "grads-one"))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    monkeypatch.setenv("DSAN_GRAD_DUMP", str(tmp_path / "grads-plain"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the torchrun process (OMP_NUM_THREADS=1): the same CPU kernels' sums
    try:
        _train_here("train", "-m", "vadclip", "-f", str(store), "--out", str(plain_out), *args)
    finally:
        torch.set_num_threads(threads)

    one_env = json.loads((one_out / "environment.json").read_text())
    plain_env = json.loads((plain_out / "environment.json").read_text())
    assert (one_env["backend"], one_env["world_size"]) == ("gloo", 1)  # a process group of one
    assert plain_env["backend"] is None
    # the same run: same config hash, the same gradients, losses and weights, bit for bit
    assert json.loads((one_out / "config.json").read_text()) == json.loads((plain_out / "config.json").read_text())
    for step in (1, 4):
        ga = load_tensors(str(tmp_path / "grads-one" / f"step-{step:06d}.safetensors"))
        gb = load_tensors(str(tmp_path / "grads-plain" / f"step-{step:06d}.safetensors"))
        assert set(ga) == set(gb) and all(torch.equal(ga[k], gb[k]) for k in ga)
    d, s = _steps(one_out), _steps(plain_out)
    assert [e["step"] for e in d] == [1, 2, 3, 4]
    assert [(e["loss"], e["losses"]) for e in d] == [(e["loss"], e["losses"]) for e in s]
    wa = load_file(str(one_out / "checkpoints" / "last.safetensors"))
    wb = load_file(str(plain_out / "checkpoints" / "last.safetensors"))
    assert set(wa) == set(wb) and all(np.array_equal(wa[k], wb[k]) for k in wa)
