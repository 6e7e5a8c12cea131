"""The CLIP backbone factory: random init is seeded privately, weight files load safely."""

from __future__ import annotations

import pickle

import pytest
import torch

from dsan_toolkit.clip import TINY_MODEL, create_clip, load_state_dict_file
from dsan_toolkit.errors import InputError


def test_random_init_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = create_clip(TINY_MODEL, seed=0)
    after = torch.rand(3)
    assert torch.equal(after, expected), "create_clip must not reset the caller's RNG"
    b = create_clip(TINY_MODEL, seed=0)
    c = create_clip(TINY_MODEL, seed=1)
    wa, wb, wc = (m.model.visual.conv1.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    assert a.info.random_weights and a.info.weights_tag == "random-init(seed=0)"


def test_weight_file_round_trip_and_refusals(tmp_path):
    from safetensors.torch import save_file

    src = create_clip(TINY_MODEL, seed=3)
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in src.model.state_dict().items()}, str(path))
    loaded = create_clip(TINY_MODEL, pretrained=None, weights=path)
    assert not loaded.info.random_weights and loaded.info.weights_sha256
    assert torch.equal(loaded.model.visual.conv1.weight, src.model.visual.conv1.weight)
    state = load_state_dict_file(path)
    assert torch.equal(state["visual.conv1.weight"], src.model.visual.conv1.weight)

    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as fh:
        pickle.dump({"x": pickle.PicklingError("arbitrary object")}, fh)
    with pytest.raises(InputError, match="weights_only=True"):
        load_state_dict_file(evil)
    with pytest.raises(InputError, match="not found"):
        load_state_dict_file(tmp_path / "missing.safetensors")
    with pytest.raises(InputError, match="unknown open_clip model"):
        create_clip("no-such-model")


def test_openai_weights_get_quickgelu():
    """open_clip only warns when the tag's activation differs from the config's: we match it."""
    from dsan_toolkit.clip import needs_quick_gelu

    assert needs_quick_gelu("ViT-B-16", "openai")
    assert needs_quick_gelu("ViT-B-16-quickgelu", "openai")
    assert not needs_quick_gelu("ViT-B-16", "laion2b_s34b_b88k")
    assert not needs_quick_gelu("ViT-B-16", None)


def test_random_build_does_not_log_open_clip_warning(caplog):
    """The random init is recorded in BackboneInfo; open_clip's own root-logger warning is muted
    for that build only."""
    import logging

    with caplog.at_level(logging.WARNING):
        create_clip(TINY_MODEL, seed=0)
        logging.getLogger().warning("unrelated warning")
    messages = [r.getMessage() for r in caplog.records]
    assert "unrelated warning" in messages
    assert not any("No pretrained weights loaded" in m for m in messages)


def test_locate_pretrained_looks_at_the_caches_only(tmp_path):
    """A Hugging Face hub cache (real layout) without and with the tag's weight file."""
    from dsan_toolkit.clip import locate_pretrained

    src = locate_pretrained("ViT-B-16", "openai", cache_dir=str(tmp_path))
    assert (src.kind, src.where, src.cached) == ("hf", "timm/vit_base_patch16_clip_224.openai", None)
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--timm--vit_base_patch16_clip_224.openai"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    weights = repo / "snapshots" / commit / "open_clip_model.safetensors"
    weights.write_bytes(b"not read here")
    assert locate_pretrained("ViT-B-16", "openai", cache_dir=str(tmp_path)).cached == str(weights)
    with pytest.raises(InputError, match="no pretrained weights 'nosuch'.*openai"):
        locate_pretrained("ViT-B-16", "nosuch")


def test_reachable_probes_a_real_connection():
    import socket

    from dsan_toolkit.clip import reachable

    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert reachable(f"http://127.0.0.1:{port}")
    assert not reachable(f"http://127.0.0.1:{port}", timeout=2.0)  # closed now: refused


def test_hf_hub_offline_fails_at_once_without_cached_weights(tmp_path, monkeypatch):
    from dsan_toolkit.clip import _require_download, locate_pretrained

    source = locate_pretrained("ViT-B-16", "openai", cache_dir=str(tmp_path))  # an empty cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="not in the local cache and HF_HUB_OFFLINE is set.*--weights FILE"):
        _require_download("ViT-B-16", "openai", source)


def test_extract_without_cached_weights_offline_fails_in_seconds(tmp_path):
    """`dsan extract` with the default ViT-B-16/openai, empty caches, HF_HUB_OFFLINE unset and a
    download host that does not answer (as on a machine without network): a message naming
    --weights within seconds (not a minute of hub retries), nothing written."""
    import os
    import subprocess
    import sys
    import time

    from dsan_toolkit.testing import cached_synthetic_dataset

    root, _ = cached_synthetic_dataset()
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_HOME=str(tmp_path / "hf"), XDG_CACHE_HOME=str(tmp_path / "cache"), HF_ENDPOINT="http://127.0.0.1:9")
    t0 = time.monotonic()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "dsan_toolkit.cli.app",
            "extract",
            "--dataset",
            str(root / "manifest.jsonl"),
            "--root",
            str(root),
            "--out",
            str(tmp_path / "f.zarr"),
            "--model",
            "ViT-B-16",
            "--pretrained",
            "openai",
            "--no-progress",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - t0
    flat = " ".join(r.stderr.split())
    assert r.returncode == 2 and "weights are not in the local cache" in flat and "--weights FILE" in flat, r.stderr
    assert "http://127.0.0.1:9 does not answer" in flat and "Retrying" not in r.stderr and "Traceback" not in r.stderr
    assert elapsed < 30, elapsed
    assert not (tmp_path / "f.zarr").exists()
