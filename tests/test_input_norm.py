"""The NON-official input normalisation of the tiny presets (preset field ``input_norm``): off in the
official presets, fitted on the training split, carried by checkpoints, applied identically in
training, evaluation and prediction, refused by the official checkpoint format."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from dsan_toolkit.errors import InputError
from dsan_toolkit.models import get_method
from dsan_toolkit.models.input_norm import attach_input_norm, normalize_features
from dsan_toolkit.store import open_store
from dsan_toolkit.store.synthetic import SynthFeaturesConfig, write_synthetic_feature_store
from dsan_toolkit.train.predictions import read_predictions
from dsan_toolkit.train.run import TrainOptions, train


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("norm-store") / "synth.zarr"
    # features far from centred (a large shared offset, as a random-init backbone gives)
    cfg = SynthFeaturesConfig(num_train=12, num_test=6, crops=2, median_t=40, min_t=10, max_t=80, seed=3, signal=1.0)
    return write_synthetic_feature_store(path, cfg)


@pytest.fixture(scope="module")
def mil_run(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "mil"
    res = train(TrainOptions(method="mil", features=store, out=out, preset="tiny", epochs=2, progress=False))
    assert res.finished
    return out


@pytest.mark.parametrize("name", ["dsanet", "vadclip", "mil"])
def test_official_presets_keep_features_as_they_are(name):
    m = get_method(name)
    assert m.presets["ucf"].input_norm == "none" and m.presets["xd"].input_norm == "none"
    assert m.presets["tiny"].input_norm == "standardize" and not m.presets["tiny"].official
    with pytest.raises(InputError, match="input_norm"):
        m.get_preset("tiny", input_norm="whiten")


def test_padding_stays_zero_and_valid_rows_are_standardised():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 5, 4, generator=g) * 3 + 7
    mean, std = torch.full((4,), 7.0), torch.full((4,), 3.0)
    out = normalize_features(feats, mean, std, torch.tensor([5, 2]))
    torch.testing.assert_close(out[0], (feats[0] - 7) / 3)
    torch.testing.assert_close(out[1, :2], (feats[1, :2] - 7) / 3)
    assert (out[1, 2:] == 0).all()


def test_fitted_on_the_training_split_and_recorded(mil_run, store):
    cfg = json.loads((mil_run / "config.json").read_text())["config"]
    assert cfg["preset"]["input_norm"] == "standardize"
    weights = load_file(str(mil_run / "checkpoints" / "last.safetensors"))
    fs = open_store(store)
    train_ids = [v.id for v in fs.manifest.split("train")]
    rows = np.concatenate([fs.read(v, cfg["train_crops"]).reshape(-1, fs.feature_dim) for v in train_ids]).astype(
        np.float64
    )
    assert len(cfg["train_crops"]) == 2
    np.testing.assert_allclose(weights["input_norm_mean"], rows.mean(0), rtol=1e-5, atol=1e-6)
    scale = np.linalg.norm(rows, axis=1).mean() / np.sqrt(rows.shape[1])  # rows keep their average norm
    np.testing.assert_allclose(weights["input_norm_std"], rows.std(0) / scale, rtol=1e-4, atol=1e-6)
    assert float(np.abs(weights["input_norm_mean"]).max()) > 1e-3  # really fitted, not the identity


def test_evaluation_applies_the_training_transform(mil_run, store):
    """The stored test predictions equal the plain network (no normalisation) run on features
    standardised by hand with the checkpoint's statistics."""
    weights = {k: torch.from_numpy(v) for k, v in load_file(str(mil_run / "checkpoints" / "last.safetensors")).items()}
    m = get_method("mil")
    fs = open_store(store)
    plain = m.build(
        m.get_preset("tiny", input_norm="none"), fs.manifest.info.classes, feature_dim=fs.feature_dim, clip=None
    )
    plain.load_state_dict({k: v for k, v in weights.items() if not k.startswith("input_norm_")})
    plain.eval()
    preds = read_predictions(mil_run / "eval" / "last" / "predictions.npz")
    cfg = json.loads((mil_run / "config.json").read_text())["config"]
    for i, vid in enumerate(preds["video_ids"].tolist()):
        x = torch.from_numpy(np.asarray(fs.read(vid, cfg["test_crop"]), np.float32))
        manual = plain((x - weights["input_norm_mean"]) / weights["input_norm_std"]).detach().numpy()
        got = preds["scores"][preds["offsets"][i] : preds["offsets"][i + 1]]
        np.testing.assert_allclose(got, manual, rtol=1e-5, atol=1e-6)


def test_off_means_official_keys_only(store, tmp_path):
    out = tmp_path / "mil-none"
    train(
        TrainOptions(
            method="mil",
            features=store,
            out=out,
            preset="tiny",
            epochs=1,
            progress=False,
            overrides={"input_norm": "none"},
        )
    )
    assert not [k for k in load_file(str(out / "checkpoints" / "last.safetensors")) if k.startswith("input_norm")]


def test_official_checkpoints_refuse_a_fitted_normalisation(tmp_path):
    from dsan_toolkit.clip import TINY_MODEL, create_clip
    from dsan_toolkit.datasets.synth import SynthConfig, class_table
    from dsan_toolkit.models.official import load_official_checkpoint, save_official_checkpoint

    m = get_method("vadclip")
    classes = class_table(SynthConfig())
    model = m.build(m.get_preset("tiny"), classes, feature_dim=512, clip=create_clip(TINY_MODEL, seed=1))
    # unfitted = identity: written without the buffers, read back as the identity
    path = save_official_checkpoint(model, "vadclip", tmp_path / "m.pth")
    assert not [k for k in torch.load(path, weights_only=True) if "input_norm" in k]
    loaded = load_official_checkpoint("vadclip", path, preset="tiny", classes=classes, clip_model=TINY_MODEL)
    assert float(loaded.model.input_norm_std.min()) == 1.0 and float(loaded.model.input_norm_mean.abs().max()) == 0.0
    model.input_norm_mean.fill_(0.5)
    with pytest.raises(InputError, match="official"):
        save_official_checkpoint(model, "vadclip", tmp_path / "m2.pth")


def test_attach_none_is_untouched():
    net = torch.nn.Linear(4, 1)
    keys = set(net.state_dict())
    assert attach_input_norm(net, "none", 4) is net and set(net.state_dict()) == keys
