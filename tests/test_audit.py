"""`dsan audit` on a real run directory (synthetic feature store, vadclip tiny preset, one
epoch): a clean run passes; a changed score, a swapped feature array, an edited config, a
changed checkpoint each fail and are named; environment differences are reported."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from dsan_toolkit.audit.bench import audit_path
from dsan_toolkit.audit.checks import FAIL, NumberComparison
from dsan_toolkit.audit.environment import compare_environments


@pytest.fixture()
def trained(xd_feature_store, vadclip_xd_run):
    return vadclip_xd_run.parent, xd_feature_store, vadclip_xd_run


def _copy(trained, tmp_path) -> Path:
    _, _, run = trained
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst


def test_clean_run_passes_and_writes_report(trained, tmp_path, cli):
    run = _copy(trained, tmp_path)
    code, out = cli("audit", str(run))
    assert code == 0, out
    assert "audit passed" in out
    md = (run / "audit.md").read_text()
    assert "**PASS**" in md
    for check in ("config hash", "feature store content hash", "manifest hash", "checkpoint sha256"):
        assert f"| ok | {check} |" in md
    assert "| eval/last/metrics.json | auc |" in md and "exact" in md
    assert "| eval/last/metrics.json | far |" in md and "| eval/last/metrics.json | class_auc." in md
    assert "| eval/last/metrics.json[ci] | auc.lo |" in md  # the bootstrap intervals, recomputed


def test_changed_score_is_caught(trained, tmp_path, cli):
    run = _copy(trained, tmp_path)
    path = run / "eval" / "last" / "predictions.npz"
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    gt_order = np.argsort(arrays["scores"])
    arrays["scores"][gt_order[:5]] = 1.0  # the five lowest snippet scores become the highest
    np.savez(path, **arrays)
    code, out = cli("audit", str(run))
    assert code == 1
    assert "eval/last/metrics.json: auc recorded" in out
    assert "**FAIL**" in (run / "audit.md").read_text()


def test_swapped_feature_array_is_caught(trained, tmp_path, cli):
    import zarr

    _, store, run = trained
    store2 = tmp_path / "s2.zarr"
    shutil.copytree(store, store2)
    videos = zarr.open_group(str(store2 / "videos"), mode="r+")
    keys = sorted(videos.array_keys())
    a, b = videos[keys[0]], videos[keys[1]]
    n = min(a.shape[1], b.shape[1])
    tmp = np.array(a[:, :n])
    a[:, :n] = b[:, :n]
    b[:, :n] = tmp
    code, out = cli("audit", str(run), "--features", str(store2), "--report-file", str(tmp_path / "a.md"))
    assert code == 1
    assert "feature store content hash" in out
    assert "a feature array changed" in (tmp_path / "a.md").read_text()


def test_edited_config_is_caught(trained, tmp_path, cli):
    run = _copy(trained, tmp_path)
    cj = json.loads((run / "config.json").read_text())
    cj["config"]["preset"]["lr"] = cj["config"]["preset"]["lr"] * 10
    (run / "config.json").write_text(json.dumps(cj))
    code, out = cli("audit", str(run))
    assert code == 1
    assert "config hash: config.json" in out


def test_changed_checkpoint_is_caught(trained, tmp_path, cli):
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    run = _copy(trained, tmp_path)
    ck = run / "checkpoints" / "last.safetensors"
    with safe_open(str(ck), framework="np") as fh:
        meta = fh.metadata()
    tensors = load_file(str(ck))
    name = next(k for k, v in tensors.items() if v.dtype == np.float32 and v.size > 1)
    tensors[name] = tensors[name] + 1e-3
    save_file(tensors, str(ck), metadata=meta)
    code, out = cli("audit", str(run))
    assert code == 1
    assert "checkpoint sha256: checkpoints/last.safetensors" in out


def test_environment_difference_reported_not_failed(trained, tmp_path, monkeypatch):
    """Auditing on another machine: the differences are listed (marked when they can change
    numbers) but are not failures."""
    import dsan_toolkit.audit.run as audit_run_mod

    run = _copy(trained, tmp_path)
    now = json.loads((run / "environment.json").read_text())
    now.update(torch="1.0.0", hostname="elsewhere")
    monkeypatch.setattr(audit_run_mod, "_capture", lambda device: dict(now))
    rep = audit_path(run)
    assert rep.ok, rep.problems
    keys = {d.key: d for d in rep.env_diffs}
    assert keys["torch"].numeric and keys["torch"].current == "1.0.0"
    assert not keys["hostname"].numeric
    assert "| torch |" in rep.to_markdown() and "| 1.0.0 |" in rep.to_markdown()


def test_an_edited_environment_record_is_caught(trained, tmp_path):
    run = _copy(trained, tmp_path)
    env = json.loads((run / "environment.json").read_text())
    env["torch"] = "1.0.0"
    (run / "environment.json").write_text(json.dumps(env))
    rep = audit_path(run)
    assert [p for p in rep.problems if p.startswith("artifact sha256: environment.json")], rep.problems
    assert len(rep.problems) == 1, rep.problems


def test_unfinished_and_wrong_dirs(tmp_path, cli, trained):
    code, out = cli("audit", str(tmp_path))
    assert code == 2 and "neither a run directory" in out
    code, out = cli("audit", str(trained), "--report-file", str(tmp_path))
    assert code == 2 and "--report-file" in out and "is a folder" in out
    run = _copy(trained, tmp_path)
    (run / "metrics.json").unlink()
    code, out = cli("audit", str(run))
    assert code == 1 and "did not finish" in out


def test_number_comparison_verdicts():
    assert NumberComparison("w", "auc", 0.5, 0.5, 1e-4).verdict == "exact"
    assert "drift" in NumberComparison("w", "auc", 0.5, 0.50001, 1e-4).verdict
    bad = NumberComparison("w", "auc", 0.5, 0.6, 1e-4)
    assert bad.status == FAIL and "MISMATCH" in bad.verdict
    assert NumberComparison("w", "auc", None, 0.5, 1.0).status == FAIL
    diffs = compare_environments({"torch": "2.0", "started": "x"}, {"torch": "2.1", "started": "y"})
    assert [d.key for d in diffs] == ["torch"]


def test_rerun_reproduces_the_recorded_numbers(trained, tmp_path, cli):
    """The rerun trains on the store given with --features (the recorded path is gone) and
    resolves the recorded config hash before its numbers are compared."""
    from dsan_toolkit.train.run import TrainOptions, train

    _, store, _ = trained
    here, moved, run = tmp_path / "here.zarr", tmp_path / "moved.zarr", tmp_path / "run"
    shutil.copytree(store, here)
    train(TrainOptions(method="vadclip", features=here, out=run, preset="tiny", seed=0, epochs=1, progress=False))
    here.rename(moved)
    code, out = cli("audit", str(run), "--rerun", "--tolerance", "1e-6")
    assert code != 0 and "not found" in out  # the recorded store is gone
    code, out = cli("audit", str(run), "--rerun", "--tolerance", "1e-6", "--features", str(moved))
    assert code == 0, out
    md = (run / "audit.md").read_text()
    assert "| ok | rerun config hash |" in md
    assert "## Re-training with the same config and seed" in md
    rerun_rows = [ln for ln in md.split("## Re-training")[1].splitlines() if ln.startswith("| last |")]
    keys = {ln.split("|")[2].strip() for ln in rerun_rows}
    assert {"auc", "ap", "map_mean"} <= keys
    assert all(("exact" in ln) or ("within" in ln) for ln in rerun_rows)
