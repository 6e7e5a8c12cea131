"""A run's feature store is found one way and checked by identity everywhere it is reopened
(eval, score, audit, bench), and evaluations never overwrite a run's records.

The scenario: a run trained with the relative path ``f.zarr``; later another store of the same
name (other extraction config, other content) sits where the commands look.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from dsan_toolkit.config import sha256_file


@pytest.fixture()
def world(extracted_world):
    root, run, video, _ = extracted_world
    return root, run, video


def _record_bytes(run: Path) -> dict[str, bytes]:
    return {p.relative_to(run).as_posix(): p.read_bytes() for p in (run / "eval").rglob("*") if p.is_file()}


def _hashes(root: Path) -> tuple[str, str]:
    from dsan_toolkit.store import open_store

    return open_store(root / "a" / "f.zarr").content_hash(), open_store(root / "b" / "f.zarr").content_hash()


def test_the_run_records_its_store_by_absolute_path_and_identity(world, tmp_path, cli):
    root, run, _ = world
    cfg = json.loads((run / "config.json").read_text())["config"]
    ha, _ = _hashes(root)
    assert cfg["store"] == str((root / "a" / "f.zarr").resolve()) and cfg["store_hash"] == ha
    # from another folder holding another f.zarr: the recorded store is used, not the local one
    (tmp_path / "f.zarr").symlink_to(root / "b" / "f.zarr")
    before = _record_bytes(run)
    code, out = cli("eval", "--run", str(run))
    assert code == 0, out
    rec = json.loads(next((run / "evaluations").glob("last-crop0-*/metrics.json")).read_text())
    recorded = json.loads((run / "metrics.json").read_text())["results"]["last"]["metrics"]
    assert rec["metrics"] == recorded and rec["store"]["matches_training_store"] is True
    # the printed table is in percent, mAP included (no fractions next to percents)
    assert "test metrics (%)" in out and f"{100 * recorded['auc']:.2f}" in out and f"{recorded['map_mean']:.2f}" in out
    assert _record_bytes(run) == before  # the run's own records are untouched
    # the same evaluation again: refused without --overwrite, then replaced
    code, out = cli("eval", "--run", str(run))
    assert code == 2 and "already holds an evaluation" in out and "--overwrite" in out
    code, out = cli("eval", "--run", str(run), "--overwrite")
    assert code == 0, out
    shutil.rmtree(run / "evaluations")


def test_another_store_at_the_recorded_path_is_refused_everywhere(world, tmp_path, cli):
    root, run, video = world
    ha, hb = _hashes(root)
    a, b = root / "a" / "f.zarr", root / "b" / "f.zarr"
    a.rename(root / "a" / "f.zarr.orig")
    shutil.copytree(b, a)
    try:
        before = _record_bytes(run)
        code, out = cli("eval", "--run", str(run))
        flat = out.replace("\n", "")
        assert code == 2 and ha in flat and hb in flat and "--features" in flat, out
        code, out = cli("score", str(video), "--run", str(run), "--out", str(tmp_path / "s"))
        assert code == 2 and "not the one" in out.replace("\n", " ") and "--features" in out, out
        assert not (tmp_path / "s").exists()
        code, out = cli("audit", str(run), "--report-file", str(tmp_path / "audit.md"))
        assert code == 1 and "feature store content hash" in out
        assert _record_bytes(run) == before
    finally:
        shutil.rmtree(a)
        (root / "a" / "f.zarr.orig").rename(a)


def test_an_explicit_other_store_is_allowed_recorded_and_labelled(world, tmp_path, cli):
    root, run, video = world
    ha, hb = _hashes(root)
    before = _record_bytes(run)
    out_dir = tmp_path / "ev"
    code, out = cli("eval", "--run", str(run), "--features", str(root / "b" / "f.zarr"), "--out", str(out_dir))
    assert code == 0, out
    assert "NOT THE TRAINING FEATURES" in out
    rec = json.loads((out_dir / "metrics.json").read_text())
    manifest_hash = json.loads((run / "config.json").read_text())["config"]["manifest_hash"]
    assert rec["store"] == {
        "path": str((root / "b" / "f.zarr").resolve()),
        "explicit": True,
        "identity": "content",
        "trained_hash": ha,
        "hash": hb,
        "trained_manifest_hash": manifest_hash,
        "manifest_hash": manifest_hash,  # same videos and labels: only the features differ
        "matches_training_store": False,
    }
    assert rec["store_hash"] == hb
    assert _record_bytes(run) == before  # --features OTHER never replaces eval/last
    # another test crop, without --out: a new named folder, never eval/last
    code, out = cli("eval", "--run", str(run), "--test-crop", "0", "--features", str(root / "b" / "f.zarr"))
    assert code == 0, out
    assert (run / "evaluations" / f"last-crop0-{hb[:8]}" / "predictions.npz").is_file()
    assert _record_bytes(run) == before
    # an output inside the run's records is refused
    code, out = cli("eval", "--run", str(run), "--out", str(run / "eval" / "last"), "--overwrite")
    assert code == 2 and "only training writes" in out.replace("\n", " ")
    assert _record_bytes(run) == before
    # score with another store's extraction config: allowed and labelled; default output next to the run
    code, out = cli("score", str(video), "--run", str(run), "--features", str(root / "b" / "f.zarr"))
    assert code == 0, out
    assert "NOT THE TRAINING FEATURES" in out and (run / "scores" / f"{video.stem}.scores.csv").is_file()
    shutil.rmtree(run / "evaluations")
    shutil.rmtree(run / "scores")


def test_audit_catches_predictions_changed_without_changing_the_ranking(world, tmp_path):
    from dsan_toolkit.audit.bench import audit_path

    root, run, _ = world
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    assert audit_path(copy).ok
    path = copy / "eval" / "last" / "predictions.npz"
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["scores"] = (arrays["scores"] * np.float32(1 - 1e-6)).astype(np.float32)  # same ranking, same AUC
    assert not np.array_equal(arrays["scores"], np.load(path)["scores"])
    np.savez(path, **arrays)
    rep = audit_path(copy)
    assert not rep.ok
    assert any(p.startswith("artifact sha256: eval/last/predictions.npz") for p in rep.problems), rep.problems
    assert any(p.startswith("predictions sha256 (eval record)") for p in rep.problems), rep.problems


def test_bench_reuses_a_finished_run_only_of_the_same_store(world):
    from dsan_toolkit.bench.jobs import BenchJob
    from dsan_toolkit.bench.rows import check_reused_run
    from dsan_toolkit.errors import InputError

    root, run, _ = world
    cfg = json.loads((run / "config.json").read_text())["config"]
    job = BenchJob(
        method="vadclip",
        dataset="synth",
        features=str(root / "a" / "f.zarr"),
        preset="tiny",
        seed=cfg["seed"],
        store_hash=cfg["store_hash"],
        manifest_hash=cfg["manifest_hash"],
    )
    check_reused_run(run, job)  # the same job: reused
    _, hb = _hashes(root)
    with pytest.raises(InputError, match=f"store_hash '{cfg['store_hash']}' \\(this bench: '{hb}'\\)"):
        check_reused_run(run, dataclasses.replace(job, store_hash=hb))
    # the same arrays with another manifest (other ground truth) are another job
    with pytest.raises(InputError, match="manifest_hash"):
        check_reused_run(run, dataclasses.replace(job, manifest_hash="0" * 64))
    assert dataclasses.replace(job, manifest_hash="0" * 64).key != job.key


def test_checkpoint_eval_uses_the_checkpoints_store_identity(world, tmp_path, cli):
    root, run, _ = world
    ck = run / "checkpoints" / "last.safetensors"
    code, out = cli("eval", "--checkpoint", str(ck), "--out", str(tmp_path / "c"))
    assert code == 0, out
    rec = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert rec["store"]["matches_training_store"] and rec["store"]["explicit"] is False
    assert rec["predictions_sha256"] == sha256_file(tmp_path / "c" / "predictions.npz")


def test_eval_refuses_to_write_into_a_run_or_to_evaluate_an_unfinished_one(world, tmp_path, cli):
    root, run, _ = world
    before = _record_bytes(run)
    summary = (run / "metrics.json").read_bytes()
    code, out = cli("eval", "--run", str(run), "--out", str(run), "--overwrite")
    assert code == 2 and "is a run directory" in out.replace("\n", " ")
    assert (run / "metrics.json").read_bytes() == summary and _record_bytes(run) == before
    unfinished = tmp_path / "unfinished"
    shutil.copytree(run, unfinished)
    (unfinished / "metrics.json").unlink()
    code, out = cli("eval", "--run", str(unfinished))
    assert code == 2 and "not a finished run" in out.replace("\n", " ") and "--checkpoint" in out
    # a checkpoint evaluated on purpose records its epoch and step
    code, out = cli(
        "eval", "--checkpoint", str(unfinished / "checkpoints" / "last.safetensors"), "--out", str(tmp_path / "ev")
    )
    assert code == 0, out
    rec = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert rec["epoch"] is not None and rec["step"] is not None


def test_the_same_arrays_with_another_manifest_are_another_store(world, tmp_path, cli):
    """A store whose arrays are the training ones but whose embedded manifest (ground truth)
    differs is refused at the recorded path, and labelled when given explicitly."""
    root, run, _ = world
    a = root / "a" / "f.zarr"
    edited = tmp_path / "f.zarr"
    shutil.copytree(a, edited)
    meta = edited / "meta" / "zarr.json"
    doc = json.loads(meta.read_text())
    video = next(r for r in doc["attributes"]["manifest"][1:] if r.get("segments"))
    video["segments"][0]["end"] = video["segments"][0]["start"] + 1  # another ground truth, same features
    meta.write_text(json.dumps(doc))
    code, out = cli("eval", "--run", str(run), "--features", str(edited), "--out", str(tmp_path / "ev"))
    assert code == 0, out
    flat = " ".join(out.split())
    assert "NOT THE TRAINING FEATURES" in flat and "manifest hash" in flat
    rec = json.loads((tmp_path / "ev" / "metrics.json").read_text())["store"]
    assert rec["hash"] == rec["trained_hash"] and rec["manifest_hash"] != rec["trained_manifest_hash"]
    a.rename(root / "a" / "f.zarr.orig")
    shutil.copytree(edited, a)
    try:
        code, out = cli("eval", "--run", str(run))
        assert code == 2 and "manifest hash" in " ".join(out.split()), out
        code, out = cli(
            "score", str(next((root / "data").rglob("*.mp4"))), "--run", str(run), "--out", str(tmp_path / "s")
        )
        assert code == 2 and "manifest hash" in " ".join(out.split()), out
    finally:
        shutil.rmtree(a)
        (root / "a" / "f.zarr.orig").rename(a)


def test_audit_fails_a_run_whose_summary_was_overwritten(world, tmp_path):
    from dsan_toolkit.audit.bench import audit_path

    root, run, _ = world
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "metrics.json").write_text(
        json.dumps({"config_hash": json.loads((copy / "config.json").read_text())["hash"], "metrics": {"auc": 1.0}})
    )
    rep = audit_path(copy)
    assert any(p.startswith("run summary: metrics.json") for p in rep.problems), rep.problems


def _rewrite_safetensors_metadata(path: Path, **changes: str) -> None:
    """Change a safetensors file's metadata in place (the data section is kept)."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    header["__metadata__"].update(changes)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n :])


def test_a_run_recorded_with_the_earlier_hash_scheme_still_audits(world, tmp_path):
    """Runs made before runtime fields left the identity hashed the whole config; their records
    carry that hash and still pass the audit (labelled), and only a real edit fails."""
    from dsan_toolkit.audit.bench import audit_path
    from dsan_toolkit.config import legacy_config_hash

    root, run, _ = world
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    cj = json.loads((copy / "config.json").read_text())
    old = legacy_config_hash(cj["config"])
    assert old != cj["hash"]
    cj["hash"] = old
    (copy / "config.json").write_text(json.dumps(cj))
    summary = json.loads((copy / "metrics.json").read_text())
    summary["config_hash"] = old
    del summary["artifacts"]  # older runs recorded no artifact hashes
    (copy / "metrics.json").write_text(json.dumps(summary))
    ev = json.loads((copy / "eval" / "last" / "metrics.json").read_text())
    ck = copy / "checkpoints" / "last.safetensors"
    _rewrite_safetensors_metadata(ck, config_hash=old)
    ev.update(config_hash=old, checkpoint={"file": ck.name, "sha256": sha256_file(ck)})
    (copy / "eval" / "last" / "metrics.json").write_text(json.dumps(ev))
    rep = audit_path(copy)
    assert rep.ok, rep.problems
    assert any("earlier hash scheme" in c.detail for c in rep.checks)
    cj["config"]["seed"] += 1  # a real edit of an old run is still caught
    (copy / "config.json").write_text(json.dumps(cj))
    assert any(p.startswith("config hash: config.json") for p in audit_path(copy).problems)


def test_an_unfinished_run_of_the_earlier_hash_scheme_is_not_resumed(world, tmp_path, cli):
    """Its checkpoints and records would carry two hashes: refused with the way out; an edited
    hash is refused as such. Nothing in the run directory changes."""
    from dsan_toolkit.config import legacy_config_hash

    root, _, _ = world
    run = tmp_path / "run"
    args = ("train", "-m", "vadclip", "-f", str(root / "a" / "f.zarr"), "--out", str(run), "--preset", "tiny")
    args = (*args, "--epochs", "2", "--set", "batch_size=2", "--no-progress")
    code, out = cli(*args, "--stop-after-steps", "1")
    assert code == 0 and not (run / "metrics.json").exists(), out
    cj = json.loads((run / "config.json").read_text())
    for fake, says in ((legacy_config_hash(cj["config"]), "earlier version"), ("0" * 64, "edited?")):
        (run / "config.json").write_text(json.dumps({**cj, "hash": fake}))
        before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
        code, out = cli(*args)
        assert code == 2 and says in " ".join(out.split()) and "new --out" in " ".join(out.split()), out
        assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
