"""VadCLIP on the tiny preset with the tiny random CLIP: shapes, predictions, bad inputs, learning."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from dsan_toolkit.clip import TINY_MODEL, create_clip
from dsan_toolkit.errors import InputError
from dsan_toolkit.manifest.schema import ClassInfo
from dsan_toolkit.models import TrainBatch, get_method, predict_video, split_chunks

CLASSES = (
    ClassInfo("A", "normal", "normal", True),
    ClassInfo("B1", "fighting", "fighting"),
    ClassInfo("B2", "shooting", "shooting"),
)


@pytest.fixture(scope="module")
def clip():
    return create_clip(TINY_MODEL)


@pytest.fixture(scope="module")
def method():
    return get_method("vadclip")


def build(method, clip, **over):
    preset = method.get_preset("tiny", **over)
    torch.manual_seed(0)
    return method.build(preset, CLASSES, feature_dim=512, clip=clip), preset


def test_forward_shapes_and_prediction_ranges(method, clip):
    model, preset = build(method, clip)
    feats = torch.randn(3, preset.visual_length, 512)
    n = preset.visual_length
    lengths = torch.tensor([n, 20, 1])
    out = model(feats, lengths)
    assert out.logits1.shape == (3, n, 1) and out.logits2.shape == (3, n, 3) and out.text_features.shape == (3, 512)
    pred = method.predict(model, feats, lengths)
    assert pred.scores.shape == (3, n) and pred.class_probs.shape == (3, n, 3)
    torch.testing.assert_close(pred.scores, torch.sigmoid(out.logits1[..., 0]))  # the classifier score
    torch.testing.assert_close(pred.class_probs.sum(-1), torch.ones(3, n))
    torch.testing.assert_close(pred.align_scores, 1 - pred.class_probs[..., 0])


def test_only_the_prompt_and_heads_train_and_clip_stays_frozen(method, clip):
    model, preset = build(method, clip)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "prompt.text_prompt_embeddings.weight" in trainable and "encoder.gc1.weight" in trainable
    assert not any(n.startswith("text_encoder.") for n in trainable)
    model.train()
    assert not model.text_encoder.training
    before = {n: p.detach().clone() for n, p in model.text_encoder.named_parameters()}
    opt = method.optimizers(model, preset, 1, schedule_iters_per_epoch=2)[0]
    labels = torch.tensor([[1.0, 0, 0], [0, 1, 1]])
    batch = TrainBatch(
        torch.randn(2, preset.visual_length, 512),
        torch.tensor([preset.visual_length, 30]),
        labels,
        torch.tensor([False, True]),
    )
    loss, logs = method.loss(model, batch, preset)
    loss.backward()
    assert model.prompt.text_prompt_embeddings.weight.grad is not None
    opt.optimizer.step()
    assert all(torch.equal(p, before[n]) for n, p in model.text_encoder.named_parameters())
    assert set(logs) == {"cls_mil", "align_mil", "text_sep", "loss"}


def test_predict_video_stitches_chunks_like_per_chunk_calls(method, clip):
    model, preset = build(method, clip)
    model.eval()
    feats = torch.randn(150, 512)
    whole = predict_video(method, model, feats)
    chunks, lengths = split_chunks(feats, preset.visual_length)
    parts = [method.predict(model, chunks[i : i + 1], lengths[i : i + 1]) for i in range(len(lengths))]
    stitched = torch.cat([p.scores.reshape(-1) for p in parts])[:150]
    assert whole.scores.shape == (150,) and whole.class_probs.shape == (150, 3)
    torch.testing.assert_close(whole.scores, stitched, rtol=1e-5, atol=1e-6)


def test_truncated_text_context_equals_full_context(method, clip):
    """The causal text tower up to the last EOT gives the official 77-position features."""
    fast, _ = build(method, clip)
    full, _ = build(method, clip, truncate_text_context=False)
    full.load_state_dict(fast.state_dict())
    assert fast.text_context is not None and fast.text_context < 77 and full.text_context is None
    a, b = fast.encode_text(), full.encode_text()
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    a.sum().backward()
    b.sum().backward()
    torch.testing.assert_close(
        fast.prompt.text_prompt_embeddings.weight.grad,
        full.prompt.text_prompt_embeddings.weight.grad,
        rtol=1e-3,
        atol=2e-4,
    )


def test_bad_inputs_are_refused(method, clip):
    preset = method.get_preset("tiny")
    with pytest.raises(InputError, match="512"):
        method.build(preset, CLASSES, feature_dim=256, clip=clip)
    with pytest.raises(InputError, match="CLIP"):
        method.build(preset, CLASSES, feature_dim=512, clip=None)
    with pytest.raises(InputError, match="normal class"):
        method.build(preset, CLASSES[1:], feature_dim=512, clip=clip)
    with pytest.raises(InputError, match="divide"):
        method.build(preset.replace(attn_window=10), CLASSES, feature_dim=512, clip=clip)
    long = (CLASSES[0], ClassInfo("X", "x", " ".join(["word"] * 70)))
    with pytest.raises(InputError, match="too long"):
        method.build(preset, long, feature_dim=512, clip=clip)


def synthetic_videos(n: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normal videos: noise; anomalous ones: an event (a fixed direction) in a random interval."""
    g = torch.Generator().manual_seed(seed)
    direction = torch.randn(512, generator=torch.Generator().manual_seed(99))
    feats = torch.randn(n, length, 512, generator=g)
    gt = torch.zeros(n, length)
    anomalous = torch.arange(n) >= n // 2
    for i in torch.nonzero(anomalous).flatten().tolist():
        s = int(torch.randint(0, length - 8, (1,), generator=g))
        gt[i, s : s + 8] = 1
    feats = feats + 1.5 * gt.unsqueeze(-1) * direction
    return feats, gt, anomalous, torch.full((n,), length)


def test_training_learns_on_synthetic_events(method, clip):
    """A few epochs on the tiny preset separate event snippets from background (frame AUC)."""
    model, preset = build(method, clip, visual_length=32)
    torch.manual_seed(1)
    feats, _, anomalous, lengths = synthetic_videos(32, preset.visual_length, seed=0)
    labels = torch.zeros(32, 3)
    labels[~anomalous, 0] = 1
    labels[anomalous, 1] = 1
    opt = method.optimizers(model, preset, 4, schedule_iters_per_epoch=8)[0].optimizer
    model.train()
    for _step in range(10):
        idx = torch.cat([torch.randperm(16)[:4], 16 + torch.randperm(16)[:4]])  # paired: normal half first
        batch = TrainBatch(feats[idx], lengths[idx], labels[idx], anomalous[idx])
        loss, _ = method.loss(model, batch, preset)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    test_feats, gt, _, _ = synthetic_videos(8, preset.visual_length, seed=1)
    pred = method.predict(model, test_feats, torch.full((8,), preset.visual_length))
    auc = roc_auc_score(gt.flatten().numpy(), pred.scores.flatten().numpy())
    assert auc > 0.9, auc
    assert np.isfinite(float(loss.detach()))
