"""`dsan train`: runs that learn (dsanet, vadclip), resume == uninterrupted, best-on-test
labelling, the run directory contract, and bad inputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file
from typer.testing import CliRunner

from dsan_toolkit.cli.app import app
from dsan_toolkit.config import config_hash
from dsan_toolkit.store.synthetic import SynthFeaturesConfig, write_synthetic_feature_store
from dsan_toolkit.train.checkpoint import run_config_from_json
from dsan_toolkit.train.predictions import read_predictions

# small and quick, non-official: tiny preset, 4 + 4 samples per step, 32-snippet resampling
FAST = ["--preset", "tiny", "--set", "batch_size=4", "--set", "visual_length=32", "--no-progress"]


def run_cli(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("train-store") / "synth.zarr"
    cfg = SynthFeaturesConfig(num_train=16, num_test=8, crops=2, median_t=100, min_t=20, max_t=300, seed=5, signal=1.0)
    return write_synthetic_feature_store(path, cfg)


@pytest.fixture(scope="module")
def vadclip_run(store, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "vadclip"
    code, output = run_cli("train", "-m", "vadclip", "-f", store, "--out", out, "--epochs", 2, *FAST)
    assert code == 0, output
    return out


def _metrics(run: Path, label: str = "last") -> dict:
    return json.loads((run / "metrics.json").read_text())["results"][label]["metrics"]


def test_vadclip_learns_and_writes_the_run_dir_contract(vadclip_run, store):
    run = vadclip_run
    m = _metrics(run)
    assert m["auc"] > 0.75, m  # chance is 0.5
    cfg = json.loads((run / "config.json").read_text())
    rebuilt = run_config_from_json(cfg)
    assert cfg["hash"] == rebuilt.hash == config_hash(rebuilt)
    # the hash is the identity: the store's path and the device are recorded, not hashed
    import dataclasses

    assert dataclasses.replace(rebuilt, store="/elsewhere/s.zarr", device="cuda:3").hash == rebuilt.hash
    assert dataclasses.replace(rebuilt, seed=rebuilt.seed + 1).hash != rebuilt.hash
    c = cfg["config"]
    assert c["method"] == "vadclip" and c["preset_name"] == "tiny" and c["select"] == "last"
    assert c["preset"]["batch_size"] == 4 and c["preset"]["visual_length"] == 32 and c["preset"]["epochs"] == 2
    assert c["train_crops"] == [0, 1] and c["test_crop"] == 0
    assert c["text_encoder"]["random_weights"] is True
    env = json.loads((run / "environment.json").read_text())
    assert {"torch", "device", "python", "world_size"} <= set(env)
    events = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, 9))  # 4 paired steps per epoch, 2 epochs
    assert all(np.isfinite(e["loss"]) and e["losses"] for e in steps)
    assert [e["event"] for e in events][0] == "start" and events[-1]["event"] == "end"
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["selected"] == "last" and list(summary["results"]) == ["last"]
    assert summary["config_hash"] == cfg["hash"]
    # checkpoints carry the config hash; predictions are plain arrays of the store's lengths
    from safetensors import safe_open

    with safe_open(str(run / "checkpoints" / "last.safetensors"), framework="np") as fh:
        meta = fh.metadata()
    assert meta["config_hash"] == cfg["hash"] and meta["selection"] == "last"
    preds = read_predictions(run / "eval" / "last" / "predictions.npz")
    from dsan_toolkit.store import open_store

    fs = open_store(store)
    lengths = fs.lengths()
    t = np.diff(preds["offsets"])
    assert [lengths[v] for v in preds["video_ids"].tolist()] == t.tolist()
    assert preds["class_probs"].shape == (t.sum(), len(fs.manifest.class_codes))
    # the stored arrays give the recorded metrics (what an audit recomputes)
    from dsan_toolkit.audit.run import recompute_metrics

    assert recompute_metrics(fs.manifest, preds) == m
    ev = json.loads((run / "eval" / "last" / "metrics.json").read_text())
    assert ev["metrics"] == m and ev["store_hash"] == c["store_hash"]
    # every file has the permissions a plain open() gives (atomic writes go through 0600 temp files)
    import stat

    from dsan_toolkit.utils.atomic import default_file_mode

    modes = {p.relative_to(run).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in run.rglob("*") if p.is_file()}
    assert {"checkpoints/last.safetensors", "config.json", "log.jsonl"} <= set(modes)
    assert "checkpoints/resume.safetensors" not in modes  # a finished run drops its resume state
    # every file an audit relies on is hashed in metrics.json when the run finishes
    from dsan_toolkit.config import sha256_file

    arts = summary["artifacts"]
    assert set(arts) == {
        "config.json",
        "environment.json",
        "checkpoints/last.safetensors",
        "eval/last/metrics.json",
        "eval/last/predictions.npz",
    }
    assert all(sha256_file(run / f) == h for f, h in arts.items())
    assert ev["predictions_sha256"] == arts["eval/last/predictions.npz"]
    assert c["store"] == str(store.resolve())  # recorded absolute, whatever the command line said
    assert all(mode == default_file_mode() for mode in modes.values()), modes
    assert not [p for p in run.rglob(".*") if p.name.endswith(".tmp")]  # no temporary debris


def test_dsanet_learns(store, tmp_path):
    out = tmp_path / "dsanet"
    code, output = run_cli(
        "train", "-m", "dsanet", "-f", store, "--out", out, "--epochs", 2, *FAST
    )  # tiny lr 2e-4 (standardised inputs; 5e-4 overflows the background loss)
    assert code == 0, output
    m = _metrics(out)
    assert m["auc"] > 0.75, m
    assert m["map_mean"] is not None


def _kill_after_checkpoint(cmd: list[str], log: Path, min_step: int) -> None:
    """Start ``cmd``, SIGKILL it as soon as ``log`` records a checkpoint at step >= min_step."""
    import signal
    import subprocess
    import sys
    import time

    env = dict(os.environ, OMP_NUM_THREADS="2")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dsan_toolkit.cli.app", *cmd], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 300
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if log.exists():
                events = [json.loads(x) for x in log.read_text().splitlines() if x.endswith("}")]
                if any(e["event"] == "checkpoint" and e["step"] >= min_step for e in events):
                    os.kill(proc.pid, signal.SIGKILL)
                    break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode in (0, -signal.SIGKILL), proc.stderr.read().decode()[-2000:]


@pytest.mark.integration
def test_resume_after_sigkill_equals_uninterrupted(vadclip_run, store, tmp_path):
    out = tmp_path / "resumed"
    args = ["train", "-m", "vadclip", "-f", str(store), "--out", str(out), "--epochs", "2", *FAST]
    # checkpoints after every step; killed after the one of step 3 (at the latest the run stops
    # by itself after step 7, so it is unfinished either way)
    _kill_after_checkpoint([*args, "--checkpoint-every", "1", "--stop-after-steps", "7"], out / "log.jsonl", 3)
    assert not (out / "metrics.json").exists() and (out / "checkpoints" / "resume.safetensors").exists()
    code, output = run_cli(*args)
    assert code == 0, output
    a = load_file(str(vadclip_run / "checkpoints" / "last.safetensors"))
    b = load_file(str(out / "checkpoints" / "last.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert _metrics(out) == _metrics(vadclip_run)
    # equal runs give equal files (canonical safetensors headers, deterministic npz)
    from dsan_toolkit.config import sha256_file

    for f in ("checkpoints/last.safetensors", "eval/last/predictions.npz", "eval/last/metrics.json"):
        assert sha256_file(vadclip_run / f) == sha256_file(out / f), f
    events_a = [json.loads(x) for x in (vadclip_run / "log.jsonl").read_text().splitlines()]
    events_b = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    la = [(e["step"], e["loss"]) for e in events_a if e["event"] == "step"]
    lb = [(e["step"], e["loss"]) for e in events_b if e["event"] == "step"]
    assert la == lb  # the log was cut back to the checkpoint: no step twice, none missing
    starts = [e for e in events_b if e["event"] == "start"]
    assert len(starts) == 2 and starts[0]["resumed_from"] is None and starts[1]["resumed_from"] >= 3
    # a finished run is recognised: nothing is retrained
    code, output = run_cli(*args)
    assert code == 0 and "nothing to do" in output


def test_best_on_test_keeps_both_numbers_labelled(store, tmp_path):
    out = tmp_path / "best"
    cublas = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    code, output = run_cli(
        "train",
        "-m",
        "vadclip",
        "-f",
        store,
        "--out",
        out,
        "--epochs",
        1,
        "--select",
        "best-on-test",
        "--set",
        "eval_every_iters=1",
        "--set",
        "reload_best_each_epoch=true",
        "--deterministic",
        *FAST,
    )
    assert code == 0, output
    import torch

    assert not torch.are_deterministic_algorithms_enabled()  # restored after the run
    assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") == cublas
    assert json.loads((out / "config.json").read_text())["config"]["deterministic"] is True
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["select"] == "best-on-test" and summary["selected"] == "best-on-test"
    assert set(summary["results"]) == {"last", "best-on-test"}
    events = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    evals = [e for e in events if e["event"] == "eval"]
    # official rule: evaluate after iteration i when i % every == 0 and i > 0 (4 iterations per epoch)
    assert [(e["epoch"], e["iter"]) for e in evals] == [(0, 1), (0, 2), (0, 3)]
    best = summary["results"]["best-on-test"]
    assert best["value"] == max(e["value"] for e in evals) and best["selection_metric"] == "auc"
    # the selected checkpoint re-evaluated at the end gives the number it was selected on
    assert best["metrics"]["auc"] == pytest.approx(best["value"], abs=1e-12)
    assert (out / "checkpoints" / "best-on-test.safetensors").is_file()
    assert (out / "eval" / "best-on-test" / "predictions.npz").is_file()
    # interrupted after step 2 and resumed: the best-so-far state travels in the resume file
    again = tmp_path / "best-resumed"
    args = [
        "train",
        "-m",
        "vadclip",
        "-f",
        store,
        "--out",
        again,
        "--epochs",
        1,
        "--select",
        "best-on-test",
        "--set",
        "eval_every_iters=1",
        "--set",
        "reload_best_each_epoch=true",
        "--deterministic",
        *FAST,
    ]
    assert run_cli(*args, "--stop-after-steps", 2)[0] == 0 and not (again / "metrics.json").exists()
    code, output = run_cli(*args)
    assert code == 0, output
    resumed = json.loads((again / "metrics.json").read_text())
    assert resumed["results"] == summary["results"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["-m", "nosuch"], "unknown method"),
        (["-m", "vadclip", "--select", "best"], "unknown --select"),
        (["-m", "vadclip", "--test-crop", "7"], "test crop is 7"),
        (["-m", "vadclip", "--dataset", "ucf"], "does not fit"),
        (["-m", "vadclip", "--set", "batch_size=100"], "paired batches of 100"),
        (["-m", "vadclip", "--set", "nosuch=1"], "unknown preset fields"),
        (["-m", "vadclip", "--set", "batch_size"], "KEY=VALUE"),
        (["-m", "vadclip", "--device", "cuda:0"], "CUDA is not available"),
        (["-m", "vadclip", "--preset", "nope"], "no preset"),
    ],
)
def test_bad_inputs_are_short_errors(store, tmp_path, extra, message):
    args = ["train", "-f", store, "--out", tmp_path / "r", "--no-progress"]
    if "--preset" not in extra:
        args += ["--preset", "tiny"]
    code, output = run_cli(*args, *extra)
    assert code == 2, output
    assert message in output and "Traceback" not in output


def test_refuses_store_of_another_dimension_and_other_run_dirs(store, tmp_path):
    small = write_synthetic_feature_store(
        tmp_path / "d64.zarr", SynthFeaturesConfig(num_train=4, num_test=2, crops=1, feature_dim=64, median_t=20)
    )
    code, output = run_cli("train", "-m", "vadclip", "-f", small, "--out", tmp_path / "r", *FAST)
    assert code == 2 and "feature dimension 64" in output
    code, output = run_cli("train", "-m", "vadclip", "-f", tmp_path / "nothing.zarr", "--out", tmp_path / "r", *FAST)
    assert code == 2 and "Traceback" not in output
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("x")
    code, output = run_cli("train", "-m", "vadclip", "-f", store, "--out", busy, *FAST)
    assert code == 2 and "not a run directory" in output
    code, output = run_cli("train", "-m", "vadclip", "-f", store, "--out", busy / "notes.txt", *FAST)
    assert code == 2 and "is a file" in output
    code, output = run_cli("train", "-m", "vadclip", "-f", store, "--out", busy / "notes.txt" / "run", *FAST)
    assert code == 2 and "cannot create the run directory" in output and "Traceback" not in output


def test_refuses_a_run_dir_of_another_config(vadclip_run, store):
    code, output = run_cli("train", "-m", "vadclip", "-f", store, "--out", vadclip_run, "--epochs", 5, *FAST)
    assert code == 2 and "another configuration" in output and "preset" in output


def test_training_free_method_gets_a_run_dir_of_the_same_layout(store, tmp_path):
    out = tmp_path / "zs"
    code, output = run_cli("train", "-m", "zeroshot", "-f", store, "--out", out, "--preset", "tiny", "--no-progress")
    assert code == 0, output
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["training_free"] is True and summary["steps"] == 0 and summary["selected"] == "last"
    assert (out / "checkpoints" / "last.safetensors").is_file() and (
        out / "eval" / "last" / "predictions.npz"
    ).is_file()
    preds = read_predictions(out / "eval" / "last" / "predictions.npz")  # zero-shot: softmax over the prompts
    np.testing.assert_allclose(preds["class_probs"].sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(preds["scores"], 1 - preds["class_probs"][:, 0], atol=1e-6)
    from dsan_toolkit.audit.run import recompute_metrics
    from dsan_toolkit.store import open_store

    assert recompute_metrics(open_store(store).manifest, preds) == summary["results"]["last"]["metrics"]
    code, output = run_cli(
        "train",
        "-m",
        "zeroshot",
        "-f",
        store,
        "--out",
        tmp_path / "zs2",
        "--preset",
        "tiny",
        "--select",
        "best-on-test",
    )
    assert code == 2 and "training-free" in output


def test_refuses_a_store_missing_videos(tmp_path):
    """A store whose extraction failed for a test video is refused, naming the video."""
    from dsan_toolkit.config import to_dict
    from dsan_toolkit.store import StoreSpec, StoreWriter
    from dsan_toolkit.store.synthetic import synthetic_manifest

    cfg = SynthFeaturesConfig(num_train=4, num_test=2, crops=1, median_t=20, seed=1)
    manifest, _ = synthetic_manifest(cfg)
    spec = StoreSpec(
        manifest=manifest,
        crops=(0,),
        feature_dim=512,
        backbone={"model": "synthetic"},
        random_weights=False,
        preprocessing={},
        snippet_rule="synthetic",
        config=to_dict(cfg),
        producer="test",
    )
    broken = manifest.split("test").videos[0].id
    with StoreWriter(tmp_path / "partial.zarr", spec) as w:
        for v in manifest.videos:
            if v.id == broken:
                w.fail_video(v.id, "cannot decode")
            else:
                w.write_video(v.id, np.full((1, 12, 512), 0.1, np.float32), num_frames=v.num_frames, fps=v.fps)
        w.finalize()
    code, output = run_cli("train", "-m", "vadclip", "-f", tmp_path / "partial.zarr", "--out", tmp_path / "r", *FAST)
    assert code == 2 and "lacks features of 1 test videos" in output and broken in output


def test_piped_training_prints_a_line_per_epoch(store, tmp_path):
    """In a log (stdout/stderr not a terminal) training is not silent: one plain line per epoch,
    no bar characters, no wrapped lines; --no-progress keeps only the messages."""
    import subprocess
    import sys

    args = [
        sys.executable,
        "-m",
        "dsan_toolkit.cli.app",
        "train",
        "-m",
        "mil",
        "-f",
        str(store),
        "--preset",
        "tiny",
        "--epochs",
        "2",
        "--set",
        "batch_size=4",
        "--set",
        "visual_length=32",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="2", COLUMNS="40")  # a narrow terminal width must not wrap logs
    done = subprocess.run([*args, "--out", str(tmp_path / "a")], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    epochs = [ln for ln in lines if ln.startswith("epoch ")]
    assert [ln.split(":")[0] for ln in epochs] == ["epoch 1/2", "epoch 2/2"], done.stderr
    assert all("loss" in ln and " s" in ln for ln in epochs)
    assert any(ln.startswith("mil preset tiny on ") and "config" in ln and "select last" in ln for ln in lines)
    assert "━" not in done.stderr  # no bar in a log
    quiet = subprocess.run(
        [*args, "--out", str(tmp_path / "b"), "--no-progress"], env=env, capture_output=True, text=True, timeout=300
    )
    assert quiet.returncode == 0 and not [ln for ln in quiet.stderr.splitlines() if ln.startswith("epoch ")]
