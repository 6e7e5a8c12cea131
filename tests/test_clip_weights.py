"""A store extracted from a local CLIP weight file, through train, eval, score and audit: the
file is identified by its sha256 (its path is a runtime field), a missing or different file is
refused with a way out, and a moved file is found again with --clip-weights."""

from __future__ import annotations

import json
import shutil

import pytest


@pytest.fixture(scope="module")
def local_weights_world(tmp_path_factory):
    from safetensors.torch import save_file

    from dsan_toolkit.clip import TINY_MODEL, create_clip
    from dsan_toolkit.testing import SMALL_SYNTH, extract_tiny, synthetic_dataset

    root = tmp_path_factory.mktemp("local-weights")
    state = create_clip(TINY_MODEL, seed=5).model.state_dict()
    weights = root / "w" / "tiny.safetensors"
    weights.parent.mkdir()
    save_file({k: v.contiguous() for k, v in state.items()}, str(weights))
    other = root / "w" / "other.safetensors"
    save_file({k: v.contiguous() for k, v in create_clip(TINY_MODEL, seed=6).model.state_dict().items()}, str(other))
    data, manifest = synthetic_dataset(root / "data", SMALL_SYNTH)
    store = extract_tiny(manifest, data, root / "f.zarr", weights=str(weights))
    video = next(data / v.path for v in manifest.videos if v.split == "test")
    return root, store, weights, other, video


def test_local_weight_file_is_identified_by_sha256(local_weights_world, tmp_path, cli):
    root, store, weights, other, video = local_weights_world
    run = tmp_path / "run"
    base = ("train", "-m", "vadclip", "-f", str(store), "--preset", "tiny", "--epochs", "1", "--set", "batch_size=2")
    base = (*base, "--no-progress")
    code, out = cli(*base, "--out", str(run))
    assert code == 2 and "--clip-weights" in out and not run.exists(), out
    code, out = cli(*base, "--out", str(run), "--clip-weights", str(other))
    assert code == 2 and "sha256" in out and not run.exists(), out
    code, out = cli(*base, "--out", str(run), "--clip-weights", str(weights))
    assert code == 0, out
    cfg = json.loads((run / "config.json").read_text())
    te = cfg["config"]["text_encoder"]
    assert "weights_file" not in te and te["random_weights"] is False and te["weights_sha256"]
    assert cfg["config"]["clip_weights"] == str(weights.resolve())

    # the same run with the file elsewhere: the same config hash (the path is not hashed)
    moved = tmp_path / "elsewhere.safetensors"
    shutil.copy(weights, moved)
    code, out = cli(*base, "--out", str(tmp_path / "run2"), "--clip-weights", str(moved))
    assert code == 0, out
    assert json.loads((tmp_path / "run2" / "config.json").read_text())["hash"] == cfg["hash"]

    # eval and score find the recorded file, or take --clip-weights (checked)
    code, out = cli("eval", "--run", str(run), "--out", str(tmp_path / "e1"), "--no-progress")
    assert code == 0, out
    code, out = cli("eval", "--run", str(run), "--out", str(tmp_path / "e2"), "--clip-weights", str(other))
    assert code == 2 and "sha256" in out and not (tmp_path / "e2").exists(), out
    code, out = cli("score", str(video), "--run", str(run), "--out", str(tmp_path / "s"), "--no-progress")
    assert code == 0, out
    code, out = cli("score", str(video), "--run", str(run), "--out", str(tmp_path / "s2"), "--clip-weights", str(other))
    assert code == 2 and "sha256" in out and not (tmp_path / "s2").exists(), out

    # the recorded file gone: eval says how to give it; --clip-weights with the moved copy works
    cfg["config"]["clip_weights"] = str(tmp_path / "gone.safetensors")
    (tmp_path / "run2" / "config.json").write_text(json.dumps(cfg))
    code, out = cli("eval", "--run", str(tmp_path / "run2"), "--out", str(tmp_path / "e3"))
    assert code == 2 and "--clip-weights" in out, out
    code, out = cli(
        "eval", "--run", str(tmp_path / "run2"), "--out", str(tmp_path / "e3"), "--clip-weights", str(moved)
    )
    assert code == 0, out

    # audit --rerun retrains with the recorded file and resolves the recorded config hash
    code, out = cli("audit", str(run), "--rerun", "--tolerance", "1e-6", "--report-file", str(tmp_path / "a.md"))
    assert code == 0, out
    assert "| ok | rerun config hash |" in (tmp_path / "a.md").read_text()
