"""Mixed precision (`dsan train --precision`), the recorded precision, refused values, and the
step log read at the logging cadence (the non-finite check there)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dsan_toolkit.cli.app import app
from dsan_toolkit.errors import DsanError
from dsan_toolkit.store.synthetic import SynthFeaturesConfig, write_synthetic_feature_store
from dsan_toolkit.train.checkpoint import run_config_from_json
from dsan_toolkit.train.distributed import DistInfo
from dsan_toolkit.train.steplog import PendingSteps

FAST = ["--preset", "tiny", "--set", "batch_size=4", "--set", "visual_length=32", "--no-progress", "--epochs", "1"]


def run_cli(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def _steps(run: Path) -> list[dict]:
    return [e for e in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if e["event"] == "step"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("precision-store") / "synth.zarr"
    cfg = SynthFeaturesConfig(num_train=16, num_test=6, crops=2, median_t=60, min_t=20, max_t=200, seed=11, signal=1.0)
    return write_synthetic_feature_store(path, cfg)


@pytest.mark.parametrize("method", ["vadclip", "dsanet"])
def test_bf16_on_cpu_trains_and_records_the_precision(store, tmp_path, method):
    bf, fp = tmp_path / "bf16", tmp_path / "fp32"
    code, out = run_cli("train", "-m", method, "-f", store, "--out", bf, "--precision", "bf16", *FAST)
    assert code == 0, out
    code, out = run_cli("train", "-m", method, "-f", store, "--out", fp, *FAST)
    assert code == 0, out
    rec_bf, rec_fp = (json.loads((r / "config.json").read_text()) for r in (bf, fp))
    assert rec_bf["config"]["precision"] == "bf16"
    # fp32 stays out of the record, so the hashes of runs made before the option are unchanged;
    # bf16 is part of the identity
    assert "precision" not in rec_fp["config"]
    cfg_bf = run_config_from_json(rec_bf)
    assert rec_bf["hash"] == cfg_bf.hash != rec_fp["hash"]
    assert dataclasses.replace(cfg_bf, precision="fp32").hash == rec_fp["hash"]
    a, b = _steps(bf), _steps(fp)
    assert [e["step"] for e in a] == [e["step"] for e in b] == [1, 2, 3, 4]
    assert all(math.isfinite(e["loss"]) for e in a)
    # the same start and batches: the first losses agree to bfloat16 rounding, but differ
    assert a[0]["loss"] == pytest.approx(b[0]["loss"], rel=0.05) and a[0]["loss"] != b[0]["loss"]
    assert json.loads((bf / "metrics.json").read_text())["results"]["last"]["metrics"]["auc"] > 0.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--precision", "fp8"], "unknown --precision 'fp8'"),
        (["--precision", "fp16"], "needs a CUDA device"),
        (["--log-every", "-1"], "--log-every"),
    ],
)
def test_bad_precision_and_cadence_are_refused(store, tmp_path, args, message):
    out = tmp_path / "run"
    code, text = run_cli("train", "-m", "vadclip", "-f", store, "--out", out, *FAST, *args)
    assert code != 0 and message in text, text
    assert not out.exists()


def test_a_training_free_method_refuses_mixed_precision(store, tmp_path):
    code, text = run_cli(
        "train", "-m", "zeroshot", "-f", store, "--out", tmp_path / "z", "--preset", "tiny", "--precision", "bf16"
    )
    assert code != 0 and "training-free" in text, text


def _parts(loss: float, other: float) -> dict[str, torch.Tensor]:
    return {"a": torch.tensor(other), "loss": torch.tensor(loss)}


def test_pending_steps_are_read_at_once_in_the_method_order():
    pending = PendingSteps(DistInfo(), every=3)
    for i in range(3):
        assert pending.add(_parts(1.0 + i, 0.5 * i), 1.0, step=i + 1) == []
    assert pending.full() and len(pending) == 3
    done = pending.flush()
    assert [s.fields["step"] for s in done] == [1, 2, 3]
    assert [s.loss for s in done] == [1.0, 2.0, 3.0]
    assert list(done[2].values) == ["a", "loss"] and done[2].values["a"] == 1.0
    assert len(pending) == 0 and pending.flush() == []


def test_a_non_finite_loss_names_its_step_and_the_steps_read_together():
    pending = PendingSteps(DistInfo(), every=10)
    pending.add(_parts(1.0, 0.1), 1.0, step=5)
    pending.add(_parts(float("nan"), 0.2), 1.0, step=6)
    pending.add(_parts(float("inf"), 0.3), 1.0, step=7)
    with pytest.raises(DsanError, match=r"the loss became nan at step 6 \(steps 5 to 7 checked together") as err:
        pending.flush()
    assert "'a': 0.2" in str(err.value) and "lower the learning rate" in str(err.value)


def test_the_logging_cadence_changes_no_logged_value(store, tmp_path):
    """Steps read three at a time (and before each checkpoint) log what steps read one by one log."""
    a, b = tmp_path / "every1", tmp_path / "every3"
    code, out = run_cli("train", "-m", "vadclip", "-f", store, "--out", a, *FAST)
    assert code == 0, out
    code, out = run_cli(
        "train", "-m", "vadclip", "-f", store, "--out", b, "--log-every", 3, "--checkpoint-every", 2, *FAST
    )
    assert code == 0, out

    def strip(e: dict) -> dict:
        return {k: v for k, v in e.items() if k != "time"}

    assert [strip(e) for e in _steps(a)] == [strip(e) for e in _steps(b)] and len(_steps(a)) == 4
    events = [json.loads(x)["event"] for x in (b / "log.jsonl").read_text().splitlines()]
    # the checkpoint after step 2 comes after the lines of steps 1 and 2 (read before it)
    assert events[1:5] == ["step", "step", "checkpoint", "step"]
    assert (a / "checkpoints" / "last.safetensors").read_bytes() == (
        b / "checkpoints" / "last.safetensors"
    ).read_bytes()
