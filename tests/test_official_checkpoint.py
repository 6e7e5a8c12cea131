"""Official-format checkpoints: key maps, strict load with weights_only, exact round trip, bad files.

The files here are written in the official format (official key names, CLIP included, a plain
tensor dict saved by torch.save) from the tiny architecture; equality with the authors' code in
the official configurations is checked by ``tests/test_official_fixtures.py`` (and, with real
ViT-B/16 CLIP weights, by ``benchmarks/train_step.py --official-src ... --check``; see
docs/models.md).
"""

from __future__ import annotations

import pickle

import pytest
import torch

from dsan_toolkit.clip import TINY_MODEL, create_clip
from dsan_toolkit.errors import InputError
from dsan_toolkit.manifest.schema import ClassInfo
from dsan_toolkit.models import get_method, predict_video
from dsan_toolkit.models.official import (
    VADCLIP_KEYMAP,
    load_official_checkpoint,
    save_official_checkpoint,
    to_official_state_dict,
)

CLASSES = (
    ClassInfo("A", "normal", "normal", True),
    ClassInfo("B1", "fighting", "fighting"),
    ClassInfo("G", "explosion", "explosion"),
)

# the official VadCLIP state-dict names (src/model.py, CLIPVAD) for a 1-layer encoder
OFFICIAL_TOP = {
    "temporal.resblocks.0.attn.in_proj_weight",
    "temporal.resblocks.0.attn.in_proj_bias",
    "temporal.resblocks.0.attn.out_proj.weight",
    "temporal.resblocks.0.attn.out_proj.bias",
    "temporal.resblocks.0.ln_1.weight",
    "temporal.resblocks.0.ln_1.bias",
    "temporal.resblocks.0.mlp.c_fc.weight",
    "temporal.resblocks.0.mlp.c_fc.bias",
    "temporal.resblocks.0.mlp.c_proj.weight",
    "temporal.resblocks.0.mlp.c_proj.bias",
    "temporal.resblocks.0.ln_2.weight",
    "temporal.resblocks.0.ln_2.bias",
    "gc1.weight",
    "gc1.residual.weight",
    "gc1.residual.bias",
    "gc2.weight",
    "gc3.weight",
    "gc3.residual.weight",
    "gc3.residual.bias",
    "gc4.weight",
    "disAdj.sigma",
    "linear.weight",
    "linear.bias",
    "mlp1.c_fc.weight",
    "mlp1.c_fc.bias",
    "mlp1.c_proj.weight",
    "mlp1.c_proj.bias",
    "mlp2.c_fc.weight",
    "mlp2.c_fc.bias",
    "mlp2.c_proj.weight",
    "mlp2.c_proj.bias",
    "classifier.weight",
    "classifier.bias",
    "frame_position_embeddings.weight",
    "text_prompt_embeddings.weight",
}


@pytest.fixture(scope="module")
def tiny_official(tmp_path_factory):
    """An official-format file of the tiny architecture, with a fake CLIP image tower."""
    method = get_method("vadclip")
    torch.manual_seed(3)
    model = method.build(method.get_preset("tiny"), CLASSES, feature_dim=512, clip=create_clip(TINY_MODEL, seed=5))
    g = torch.Generator().manual_seed(0)
    extras = {
        "clipmodel.visual.conv1.weight": torch.randn(8, 3, 4, 4, generator=g),
        "clipmodel.logit_scale": torch.tensor(4.6052),
    }
    path = save_official_checkpoint(model, "vadclip", tmp_path_factory.mktemp("ckpt") / "model_tiny.pth", extras)
    return method, model, extras, path


def load_tiny(path, **kw):
    return load_official_checkpoint("vadclip", path, preset="tiny", classes=CLASSES, clip_model=TINY_MODEL, **kw)


def test_official_names_are_produced(tiny_official):
    _, model, extras, path = tiny_official
    state = torch.load(path, weights_only=True)
    top = {k for k in state if not k.startswith("clipmodel.")}
    assert top == OFFICIAL_TOP
    clip_keys = {k for k in state if k.startswith("clipmodel.")}
    assert {
        "clipmodel.token_embedding.weight",
        "clipmodel.positional_embedding",
        "clipmodel.text_projection",
        "clipmodel.ln_final.weight",
        "clipmodel.transformer.resblocks.0.attn.in_proj_weight",
    } <= clip_keys
    assert set(extras) <= clip_keys


def test_round_trip_is_exact_and_scores_identical(tiny_official):
    method, model, extras, path = tiny_official
    original = torch.load(path, weights_only=True)
    loaded = load_tiny(path)
    assert set(loaded.extras) == set(extras)
    again = to_official_state_dict(loaded.model, "vadclip", loaded.extras)
    assert set(again) == set(original)
    assert all(torch.equal(again[k], original[k]) for k in original)
    # a model with different random weights gives different scores; the loaded one the same
    feats = torch.randn(300, 512, generator=torch.Generator().manual_seed(1))
    model.eval()
    a = predict_video(method, model, feats)
    b = predict_video(method, loaded.model, feats)
    assert torch.equal(a.scores, b.scores) and torch.equal(a.class_probs, b.class_probs)
    assert loaded.model.text_encoder.info.random_weights is False
    assert loaded.report()["sha256"] and loaded.report()["dropped_keys"] == len(extras)


def test_float16_clip_weights_load_and_round_trip(tiny_official, tmp_path):
    """GPU-trained releases hold CLIP in float16: loaded into float32 (as the official CPU code
    does), and written back in the file's dtypes."""
    method, model, extras, path = tiny_official
    state = torch.load(path, weights_only=True)
    half = {k: (v.half() if k.startswith("clipmodel.") and v.is_floating_point() else v) for k, v in state.items()}
    torch.save(half, tmp_path / "half.pth")
    loaded = load_tiny(tmp_path / "half.pth")
    assert loaded.model.text_encoder.token_embedding.weight.dtype == torch.float32
    torch.testing.assert_close(
        loaded.model.text_encoder.token_embedding.weight, half["clipmodel.token_embedding.weight"].float()
    )
    again = to_official_state_dict(loaded.model, "vadclip", loaded.extras, loaded.dtypes)
    assert all(again[k].dtype == half[k].dtype and torch.equal(again[k], half[k]) for k in half)


def test_clip_text_weights_come_from_the_checkpoint(tiny_official):
    method, model, _, path = tiny_official
    loaded = load_tiny(path)  # built on a CLIP of another seed: the file's text tower must win
    ref = model.text_encoder.encode_texts(["fighting"])
    torch.testing.assert_close(loaded.model.text_encoder.encode_texts(["fighting"]), ref)


def test_keymap_refuses_unknown_and_inconsistent_keys(tiny_official, tmp_path):
    _, _, _, path = tiny_official
    state = torch.load(path, weights_only=True)
    with pytest.raises(InputError, match="not in the key map"):
        VADCLIP_KEYMAP.to_ours("video_anomaly_refiner.video_prototypes")
    bad = dict(state, **{"video_anomaly_refiner.video_prototypes": torch.zeros(2, 2)})
    torch.save(bad, tmp_path / "other.pth")
    with pytest.raises(InputError, match="not in the key map"):
        load_tiny(tmp_path / "other.pth")
    missing = {k: v for k, v in state.items() if k != "gc1.weight"}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(InputError, match="missing"):
        load_tiny(tmp_path / "missing.pth")
    with pytest.raises(InputError, match="does not fit preset"):
        load_official_checkpoint("vadclip", path, preset="ucf", classes=CLASSES, clip_model=TINY_MODEL)


def test_pickled_objects_are_never_unpickled(tmp_path):
    class Boom:
        def __reduce__(self):
            return (print, ("unpickled!",))

    with open(tmp_path / "evil.pth", "wb") as fh:
        pickle.dump({"gc1.weight": Boom()}, fh)
    with pytest.raises(InputError, match="weights_only"):
        load_tiny(tmp_path / "evil.pth")
    with pytest.raises(InputError, match="not found"):
        load_tiny(tmp_path / "absent.pth")
    with pytest.raises(InputError, match="no official checkpoint format"):
        load_official_checkpoint("mil", tmp_path / "absent.pth")
