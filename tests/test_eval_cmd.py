"""`dsan eval`: re-evaluating a run, a checkpoint of ours and an official-format .pth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dsan_toolkit.cli.app import app
from dsan_toolkit.store.synthetic import SynthFeaturesConfig, write_synthetic_feature_store
from dsan_toolkit.train.predictions import read_predictions


def run_cli(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("eval-store") / "synth.zarr"
    cfg = SynthFeaturesConfig(num_train=8, num_test=6, crops=1, median_t=150, min_t=20, max_t=400, seed=2, signal=1.0)
    return write_synthetic_feature_store(path, cfg)


@pytest.fixture(scope="module")
def run(store, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("eval-runs") / "run"
    code, output = run_cli(
        "train",
        "-m",
        "vadclip",
        "-f",
        store,
        "--out",
        out,
        "--preset",
        "tiny",
        "--epochs",
        1,
        "--set",
        "batch_size=2",
        "--no-progress",
        "--cache",
        "none",
    )  # features read per batch
    assert code == 0, output
    return out


@pytest.fixture(scope="module")
def plain_run(store, tmp_path_factory) -> Path:
    """A run without the tiny preset's input standardisation: the official code has no such
    step, so only such a model can be written as an official checkpoint."""
    out = tmp_path_factory.mktemp("eval-runs") / "plain"
    code, output = run_cli(
        "train",
        "-m",
        "vadclip",
        "-f",
        store,
        "--out",
        out,
        "--preset",
        "tiny",
        "--epochs",
        1,
        "--set",
        "batch_size=2",
        "--set",
        "input_norm=none",
        "--no-progress",
    )
    assert code == 0, output
    return out


def _same_predictions(a: Path, b: Path) -> None:
    pa, pb = read_predictions(a), read_predictions(b)
    assert pa["video_ids"].tolist() == pb["video_ids"].tolist()
    np.testing.assert_array_equal(pa["offsets"], pb["offsets"])
    for k in ("scores", "align_scores", "class_probs"):
        np.testing.assert_allclose(pa[k], pb[k], rtol=0, atol=1e-6, err_msg=k)


def test_eval_run_reproduces_the_recorded_metrics(run, tmp_path):
    out = tmp_path / "again"
    code, output = run_cli("eval", "--run", run, "--out", out, "--eval-batch", 3)  # other chunk batching
    assert code == 0, output
    _same_predictions(run / "eval" / "last" / "predictions.npz", out / "predictions.npz")
    rec = json.loads((out / "metrics.json").read_text())
    recorded = json.loads((run / "metrics.json").read_text())["results"]["last"]["metrics"]
    assert rec["label"] == "last" and rec["config_hash"] == json.loads((run / "config.json").read_text())["hash"]
    for k in ("auc", "ap", "auc_align", "ap_align"):
        assert rec["metrics"][k] == pytest.approx(recorded[k], abs=1e-6)
    # predictions are plain arrays: readable without pickle
    with np.load(out / "predictions.npz", allow_pickle=False) as z:
        assert z["video_ids"].dtype.kind == "U" and z["classes"][0] == "Normal"


def test_eval_checkpoint_of_ours(run, store, tmp_path):
    out = tmp_path / "ck"
    code, output = run_cli(
        "eval", "--checkpoint", run / "checkpoints" / "last.safetensors", "--features", store, "--out", out
    )
    assert code == 0, output
    _same_predictions(run / "eval" / "last" / "predictions.npz", out / "predictions.npz")


def test_eval_official_format_checkpoint(run, plain_run, store, tmp_path):
    """Our trained weights exported under the official key names (a plain torch .pth) and read
    back through --official-checkpoint give the same per-snippet scores; a model with fitted
    input standardisation (not in the official code) is refused."""
    from dsan_toolkit.clip import TINY_MODEL
    from dsan_toolkit.errors import InputError
    from dsan_toolkit.models.official import save_official_checkpoint
    from dsan_toolkit.models.registry import get_method
    from dsan_toolkit.store import open_store
    from dsan_toolkit.train.checkpoint import load_weights, run_config_from_json
    from dsan_toolkit.train.setup import build_model

    manifest = open_store(store).manifest

    def trained(run_dir: Path) -> torch.nn.Module:
        cfg = run_config_from_json(json.loads((run_dir / "config.json").read_text()))
        model = build_model(get_method("vadclip"), cfg, manifest, torch.device("cpu"))
        load_weights(model, run_dir / "checkpoints" / "last.safetensors")
        return model

    with pytest.raises(InputError, match="cannot be written as an official checkpoint"):
        save_official_checkpoint(trained(run), "vadclip", tmp_path / "refused.pth")
    assert not (tmp_path / "refused.pth").exists()
    pth = save_official_checkpoint(trained(plain_run), "vadclip", tmp_path / "model_official.pth")
    out = tmp_path / "official"
    code, output = run_cli(
        "eval",
        "--official-checkpoint",
        pth,
        "--method",
        "vadclip",
        "--preset",
        "tiny",
        "--clip-model",
        TINY_MODEL,
        "--features",
        store,
        "--out",
        out,
    )
    assert code == 0, output
    _same_predictions(plain_run / "eval" / "last" / "predictions.npz", out / "predictions.npz")
    rec = json.loads((out / "metrics.json").read_text())
    assert rec["checkpoint"]["official"] is True and rec["label"] == "official"


def test_eval_records_protocol_and_intervals(run, store, tmp_path):
    from dsan_toolkit import keys
    from dsan_toolkit.eval import bootstrap_metrics, detection_config_for
    from dsan_toolkit.train.predictions import PredictionSet

    # training wrote the default intervals (1000 resamples, seed 0) into the run's record
    trained = json.loads((run / "eval" / "last" / "metrics.json").read_text())
    ci = trained[keys.CI]
    assert (ci[keys.CI_RESAMPLES], ci[keys.CI_SEED], ci[keys.CI_LEVEL]) == (1000, 0, 0.95)
    assert trained["metrics"][keys.MAP_PROTOCOL] == "official"
    out = tmp_path / "corrected"
    code, output = run_cli(
        "eval", "--run", run, "--out", out, "--map-protocol", "corrected", "--bootstrap", 200, "--bootstrap-seed", 3
    )
    assert code == 0, output
    assert "95% CI" in output and "per-class AUC" in output and "mAP protocol corrected" in output
    rec = json.loads((out / "metrics.json").read_text())
    m = rec["metrics"]
    assert m[keys.MAP_PROTOCOL] == "corrected" and m[keys.MAP_NORMAL_CLASS] == "exclude"
    assert {keys.FAR, *keys.TPR_AT_FPR, keys.AUC_MACRO, keys.CLASS_AUC} <= set(m)
    assert isinstance(m[keys.CLASS_AUC], dict) and m[keys.CLASS_AUC]
    ci = rec[keys.CI]
    assert (ci[keys.CI_RESAMPLES], ci[keys.CI_SEED]) == (200, 3)
    # the recorded intervals are bootstrap_metrics on the written predictions
    arrays = read_predictions(out / "predictions.npz")
    p = PredictionSet(
        [str(v) for v in arrays["video_ids"]],
        arrays["offsets"],
        arrays["scores"],
        arrays["align_scores"],
        arrays["class_probs"],
    )
    from dsan_toolkit.store import open_store

    manifest = open_store(store).manifest
    want = bootstrap_metrics(
        manifest,
        p.lengths(),
        p.per_video("scores"),
        p.per_video("align_scores"),
        p.per_video("class_probs"),
        video_ids=p.video_ids,
        n_resamples=200,
        seed=3,
        detection=detection_config_for("corrected"),
    )
    assert set(ci[keys.CI_INTERVALS]) == {k for k, iv in want.items() if np.isfinite(iv.lo)}
    for k, (lo, hi) in ci[keys.CI_INTERVALS].items():
        assert (lo, hi) == pytest.approx((want[k].lo, want[k].hi), abs=1e-12), k
        assert lo <= m[k] + 1e-12 and m[k] - 1e-12 <= hi or k.startswith("tpr"), k
    code, output = run_cli("eval", "--run", run, "--out", tmp_path / "none", "--bootstrap", 0)
    assert code == 0, output
    assert keys.CI not in json.loads((tmp_path / "none" / "metrics.json").read_text())
    assert "no intervals" in output


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--run", "RUN", "--map-protocol", "honest"],
            "unknown mAP protocol 'honest'; choose one of official, corrected",
        ),
        (["--run", "RUN", "--bootstrap", "-1"], "--bootstrap must be a non-negative integer"),
        ([], "exactly one of"),
        (["--run", "RUN", "--checkpoint", "RUN/checkpoints/last.safetensors"], "exactly one of"),
        (["--run", "NOWHERE"], "not a run directory"),
        (["--run", "RUN", "--select", "best-on-test"], "no best-on-test checkpoint"),
        (["--checkpoint", "RUN/log.jsonl", "--out", "x"], "not a safetensors checkpoint"),
        (["--official-checkpoint", "RUN/log.jsonl"], "needs --method"),
        (["--checkpoint", "RUN/checkpoints/last.safetensors", "--features", "STORE"], "--out"),
    ],
)
def test_bad_inputs_are_short_errors(run, store, tmp_path, args, message):
    args = [
        a.replace("RUN", str(run)).replace("STORE", str(store)).replace("NOWHERE", str(tmp_path / "no")) for a in args
    ]
    code, output = run_cli("eval", *args)
    assert code == 2, output
    assert message in output and "Traceback" not in output
