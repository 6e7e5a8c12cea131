"""`dsan train --select best-on-val`: real runs on synthetic stores. The validation videos never
train, the split is part of the run's identity, selection on crafted validation labels picks
an earlier checkpoint than the last, resume equals an uninterrupted run, and the audit passes
(rerun included)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from typer.testing import CliRunner

from dsan_toolkit.cli.app import app
from dsan_toolkit.config import sha256_file, to_dict
from dsan_toolkit.manifest.valsplit import derive_val_split, read_val_split, val_split_from_ids, write_val_split
from dsan_toolkit.store import open_store
from dsan_toolkit.store.synthetic import SynthFeaturesConfig, synthetic_manifest, write_synthetic_feature_store
from dsan_toolkit.train.setup import BEST_VAL, SELECTIONS

FAST = ["--preset", "tiny", "--set", "batch_size=4", "--set", "visual_length=32", "--no-progress"]
# 32 training videos: 16 normal, 16 anomalous (13 classes: three of them with two videos), so
# the default 10 % split holds out 2 normal and 3 anomalous videos
STORE = SynthFeaturesConfig(num_train=32, num_test=8, crops=2, median_t=100, min_t=20, max_t=300, seed=5, signal=1.0)


def run_cli(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def _events(run: Path, kind: str) -> list[dict]:
    return [e for e in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if e["event"] == kind]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return write_synthetic_feature_store(tmp_path_factory.mktemp("val-store") / "s.zarr", STORE)


@pytest.fixture(scope="module")
def val_run(store, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("val-runs") / "vadclip"
    code, output = run_cli(
        "train", "-m", "vadclip", "-f", store, "--out", out, "--epochs", 2, "--select", BEST_VAL, *FAST
    )
    assert code == 0, output
    return out


def test_label_constant():
    assert BEST_VAL == "best-on-val" and BEST_VAL in SELECTIONS


def test_best_on_val_run_records_and_numbers(val_run, store):
    run = val_run
    manifest = open_store(store).manifest
    split = derive_val_split(manifest, 0.1, 0)  # a custom manifest: derived at the defaults
    assert split.size == 5 and sum(manifest.is_anomalous(manifest.video(i)) for i in split.ids) == 3
    assert (run / "val_split.json").read_text() == split.to_json()
    cfg = json.loads((run / "config.json").read_text())["config"]
    assert cfg["val_split"] == {"hash": split.hash, "fraction": 0.1, "seed": 0, "size": 5}
    assert cfg["select"] == BEST_VAL and cfg["selection_metric"] == "video_auc"
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["select"] == summary["selected"] == BEST_VAL
    assert set(summary["results"]) == {"last", BEST_VAL}
    assert "val_split.json" in summary["artifacts"]
    evals = _events(run, "eval")
    assert [e["epoch"] for e in evals] == [0, 1]  # the tiny preset's cadence: each epoch
    for e in evals:  # video-level metrics of the 5 validation videos, class accuracy logged
        assert e["metrics"]["videos"] == 5 and e["metrics"]["anomalous_videos"] == 3
        assert 0.0 <= e["metrics"]["video_class_accuracy"] <= 1.0
        assert e["value"] == e["metrics"]["video_auc"]
    best = summary["results"][BEST_VAL]
    assert best["value"] == max(e["value"] for e in evals) and best["selection_metric"] == "video_auc"
    assert best["step"] == next(e["step"] for e in evals if e["value"] == best["value"])
    assert best["checkpoint"] == "best-on-val.safetensors" and (run / "checkpoints" / best["checkpoint"]).is_file()
    for label in ("last", BEST_VAL):  # both evaluated on the test split, labelled
        rec = json.loads((run / "eval" / label / "metrics.json").read_text())
        assert rec["label"] == label and rec["metrics"]["videos"] == 8
        assert rec["metrics"] == summary["results"][label]["metrics"]


def test_validation_videos_never_train(store, tmp_path):
    from dsan_toolkit.models.registry import get_method
    from dsan_toolkit.train import distributed as ddp
    from dsan_toolkit.train.run import TrainOptions, resolve_config, resolve_selection
    from dsan_toolkit.train.trainer import Trainer

    st = open_store(store)
    manifest = st.manifest
    method = get_method("mil")  # standardised inputs: the statistics are fitted on training videos
    opts = TrainOptions(
        method="mil", features=store, out=tmp_path / "r", preset="tiny", select=BEST_VAL, val_fraction=0.25, val_seed=2
    )
    split = resolve_selection(opts, manifest, method)
    cfg = resolve_config(opts, st, manifest, method, 1, split)
    trainer = Trainer(
        cfg, method, manifest, st, torch.device("cpu"), ddp.DistInfo(), out=tmp_path / "r", val_ids=split.ids
    )
    trainer.setup()
    held = set(split.ids)
    assert len(held) == 7  # 25 %: 4 of 16 normal videos, 1 of each two-video class, none of a one-video class
    train_ids = {v.id for v in manifest.split("train")} - held
    assert set(trainer.samples.video_ids) == train_ids
    seen = set()
    for epoch in range(3):
        for batch in trainer.plan.epoch(epoch):
            for idx in batch:
                seen |= {trainer.samples.video_ids[int(i)] for i in trainer.samples.video[idx]}
    assert seen and not seen & held
    assert trainer.val is not None and trainer.val.video_ids == list(split.ids)
    # the input standardisation is fitted on the training videos only
    from dsan_toolkit.models.input_norm import fit_input_norm

    other = Trainer(cfg, method, manifest, st, torch.device("cpu"), ddp.DistInfo(), out=tmp_path / "r2")
    other.setup()  # no validation videos held out: other statistics
    assert not torch.equal(_norm_buffers(trainer.model), _norm_buffers(other.model))
    fit_input_norm(other.model, st, sorted(train_ids, key=[v.id for v in manifest.videos].index), cfg.train_crops)
    assert torch.equal(_norm_buffers(trainer.model), _norm_buffers(other.model))


def _norm_buffers(model: torch.nn.Module) -> torch.Tensor:
    bufs = [b.flatten() for n, b in model.named_buffers() if "norm" in n]
    assert bufs, [n for n, _ in model.named_buffers()]
    return torch.cat(bufs)


def test_the_split_is_part_of_the_run_identity(store, tmp_path):
    from dsan_toolkit.models.registry import get_method
    from dsan_toolkit.train.run import TrainOptions, resolve_config

    st = open_store(store)
    method = get_method("vadclip")

    def cfg(**kw):
        opts = TrainOptions(method="vadclip", features=store, out=tmp_path / "r", preset="tiny", **kw)
        return resolve_config(opts, st, st.manifest, method, 1)

    last, val, val2, seed1 = (
        cfg(),
        cfg(select=BEST_VAL),
        cfg(select=BEST_VAL, val_fraction=0.2),
        cfg(select=BEST_VAL, val_seed=1),
    )
    assert len({last.hash, val.hash, val2.hash, seed1.hash}) == 4
    assert (
        val2.val_split["size"] == 6
    )  # 3 of 16 normal + 1 of each of 3 two-video classes and seed1.val_split["seed"] == 1
    assert "val_split" not in to_dict(last)  # runs of other selections keep their records (and hashes)
    # a split file gives the same identity as the split it holds
    path = write_val_split(derive_val_split(st.manifest, 0.2, 0), tmp_path / "v.json")
    assert cfg(select=BEST_VAL, val_split=path).hash == val2.hash


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--val-fraction", "0.2"], "need --select best-on-val"),
        (["--select", BEST_VAL, "--val-fraction", "1.5"], "must be in (0, 1)"),
        (["--select", BEST_VAL, "--val-seed", "-1"], "non-negative integer"),
        (["--select", BEST_VAL, "--val-split", "missing.json"], "not found"),
        (["--select", BEST_VAL, "--val-split", "v.json", "--val-seed", "2"], "not both"),
        (["-m", "zeroshot", "--select", BEST_VAL], "training-free"),
    ],
)
def test_bad_inputs(store, tmp_path, extra, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["train", "-f", store, "--out", tmp_path / "r", "--epochs", 1, *FAST]
    if "-m" not in extra:
        args += ["-m", "vadclip"]
    code, output = run_cli(*args, *extra)
    assert code == 2, output
    assert message in output and "Traceback" not in output
    assert not (tmp_path / "r").exists()


def test_a_split_of_another_manifest_is_refused(store, tmp_path):
    from dsan_toolkit.manifest.builtin import load_builtin_manifest

    path = write_val_split(derive_val_split(load_builtin_manifest("ucf")), tmp_path / "ucf.json")
    code, output = run_cli(
        "train", "-m", "vadclip", "-f", store, "--out", tmp_path / "r", "--select", BEST_VAL, "--val-split", path, *FAST
    )
    assert code == 2 and "made from another manifest" in output
    assert not (tmp_path / "r").exists()


def test_crafted_validation_labels_select_an_earlier_checkpoint(tmp_path):
    """The validation videos' labels are flipped (their features follow the true labels): the
    better the model learns from the training videos, the worse it ranks the validation videos,
    so the selection keeps an early checkpoint and not the last one."""
    cfg = SynthFeaturesConfig(num_train=64, num_test=8, crops=1, median_t=100, min_t=20, max_t=300, seed=7, signal=1.0)
    manifest, _ = synthetic_manifest(cfg)
    train = manifest.split("train").videos
    anomalous = [v for v in train if manifest.is_anomalous(v)][:4]
    normal = [v for v in train if not manifest.is_anomalous(v)][:4]
    flipped = {v.id: (manifest.normal_class,) for v in anomalous}
    flipped |= {v.id: (anomalous[0].labels[0],) for v in normal}
    store = write_synthetic_feature_store(tmp_path / "s.zarr", cfg, mislabel=flipped)
    crafted = open_store(store).manifest
    split_file = write_val_split(val_split_from_ids(crafted, flipped), tmp_path / "val.json")
    out = tmp_path / "run"
    args = ["train", "-m", "vadclip", "-f", store, "--out", out, "--epochs", 3, "--select", BEST_VAL]
    code, output = run_cli(*args, "--val-split", split_file, "--set", "eval_every_iters=2", *FAST)
    assert code == 0, output
    summary = json.loads((out / "metrics.json").read_text())
    last, best = summary["results"]["last"], summary["results"][BEST_VAL]
    values = [e["value"] for e in _events(out, "eval")]
    assert len(values) == 9 and values[0] > 0.5 and values[-1] == 0.0  # validation AUC falls as the model learns
    assert best["value"] == max(values) and best["step"] == 3 and last["step"] == 21
    assert last["metrics"]["auc"] > 0.95  # the model did learn from the training videos
    assert best["metrics"]["auc"] < 0.8  # and the early checkpoint selected on the crafted labels is worse
    assert json.loads((out / "config.json").read_text())["config"]["val_split"]["seed"] is None
    assert read_val_split(out / "val_split.json", crafted).ids == tuple(sorted(flipped))


@pytest.mark.integration
def test_resume_equals_uninterrupted(store, tmp_path):
    args = ["train", "-m", "vadclip", "-f", store, "--epochs", 2, "--select", BEST_VAL]
    args += ["--set", "eval_every_iters=1", "--set", "reload_best_each_epoch=true", *FAST]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert run_cli(*args, "--out", whole)[0] == 0
    assert run_cli(*args, "--out", parts, "--stop-after-steps", 3)[0] == 0
    assert not (parts / "metrics.json").exists() and (parts / "checkpoints" / "resume.safetensors").is_file()
    code, output = run_cli(*args, "--out", parts)
    assert code == 0, output
    a, b = json.loads((whole / "metrics.json").read_text()), json.loads((parts / "metrics.json").read_text())
    assert a["results"] == b["results"] and set(a["results"]) == {"last", BEST_VAL}
    assert len(_events(whole, "eval")) == len(_events(parts, "eval")) > 2
    for f in ("checkpoints/best-on-val.safetensors", "checkpoints/last.safetensors", "val_split.json"):
        assert sha256_file(whole / f) == sha256_file(parts / f), f
    wa, wb = (
        load_file(str(whole / "checkpoints/best-on-val.safetensors")),
        load_file(str(parts / "checkpoints/best-on-val.safetensors")),
    )
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)


@pytest.mark.integration
def test_audit_passes_and_rerun_reproduces(val_run, cli, tmp_path):
    report = tmp_path / "audit.md"
    code, out = cli("audit", str(val_run), "--rerun", "--tolerance", "1e-6", "--report-file", report, "--no-progress")
    assert code == 0, out
    md = report.read_text()
    assert "| ok | validation split |" in md and "| ok | rerun config hash |" in md
    rerun = md.split("## Re-training")[1].splitlines()
    for label in ("last", BEST_VAL):
        rows = [ln for ln in rerun if ln.startswith(f"| {label} |")]
        assert {"auc", "map_mean"} <= {ln.split("|")[2].strip() for ln in rows}, label
        assert all(("exact" in ln) or ("within" in ln) for ln in rows)
    # an edited split file is caught
    edited = tmp_path / "edited"
    import shutil

    shutil.copytree(val_run, edited)
    data = json.loads((edited / "val_split.json").read_text())
    data["ids"] = data["ids"][:-1]
    (edited / "val_split.json").write_text(json.dumps(data))
    code, out = cli("audit", str(edited), "--report-file", tmp_path / "a2.md", "--no-progress")
    assert code == 1
    assert "| FAIL | validation split |" in (tmp_path / "a2.md").read_text().replace("fail", "FAIL")
