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
