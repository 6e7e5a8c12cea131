"""DSANet: presets vs the official option files, official state-dict layout, the model's
components against straightforward oracles, text cache, ablations, optimisers, a short
training run that learns, bad inputs.

Real parts only: open_clip CLIP towers (the tiny random one, and ViT-B/16 with QuickGELU
random-initialised for the official key layout), real checkpoint files on disk.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from dsan_toolkit.clip import TINY_MODEL, create_clip
from dsan_toolkit.errors import InputError
from dsan_toolkit.manifest.builtin import load_builtin_manifest
from dsan_toolkit.models import TrainBatch, get_method, list_methods, predict_video
from dsan_toolkit.models.dsanet import ABLATIONS, DSANetModel, DSANetPreset, ablation
from dsan_toolkit.models.dsanet.presets import TINY, UCF, XD
from dsan_toolkit.models.dsanet.text import encode_class_text
from dsan_toolkit.models.official import load_official_checkpoint, save_official_checkpoint, to_official_state_dict

UCF_CLASSES = load_builtin_manifest("ucf").info.classes
XD_CLASSES = load_builtin_manifest("xd").info.classes
METHOD = get_method("dsanet")
# a fast variant of the tiny preset for unit tests: 64-d features (the tiny CLIP text width)
SMALL = TINY.replace(
    visual_width=64, feature_dim=64, visual_length=32, num_prototypes=4, decoder_depth=2, input_norm="none"
)


@pytest.fixture(scope="module")
def tiny_clip():
    return create_clip(TINY_MODEL)


@pytest.fixture(scope="module")
def vit_clip(tiny_clip):
    """The released CLIP architecture (OpenAI ViT-B/16, QuickGELU) on the meta device: shapes only."""
    import open_clip

    from dsan_toolkit.clip import ClipBundle

    with torch.device("meta"):
        model = open_clip.create_model("ViT-B-16-quickgelu", pretrained=None, device="meta")
    return ClipBundle(model=model, tokenizer=open_clip.get_tokenizer("ViT-B-16-quickgelu"), info=tiny_clip.info)


def build(preset=SMALL, clip=None, classes=UCF_CLASSES, seed=0) -> DSANetModel:
    torch.manual_seed(seed)
    clip = clip or create_clip(TINY_MODEL)
    return METHOD.build(preset, classes, feature_dim=preset.feature_dim, clip=clip)  # type: ignore[return-value]


def batch(preset=SMALL, per_half=3, c=14, seed=0) -> TrainBatch:
    g = torch.Generator().manual_seed(seed)
    b, n = 2 * per_half, preset.visual_length
    lengths = torch.randint(1, n + 1, (b,), generator=g)
    lengths[0], lengths[-1] = n, 1
    feats = torch.randn(b, n, preset.feature_dim, generator=g) * (
        torch.arange(n)[None, :] < lengths[:, None]
    ).unsqueeze(-1)
    labels = torch.zeros(b, c)
    labels[:per_half, 0] = 1
    labels[torch.arange(per_half, b), 1 + torch.arange(per_half) % (c - 1)] = 1
    return TrainBatch(feats=feats, lengths=lengths, labels=labels, anomalous=labels[:, 0] == 0)


# ----------------------------------------------------------------- registry and presets


def test_registered_with_presets():
    assert "dsanet" in list_methods()
    assert METHOD.describe() == {
        "name": "dsanet",
        "trainable": True,
        "presets": ["tiny", "ucf", "xd"],
        "needs_clip": True,
        "has_class_branch": True,
    }
    assert METHOD.get_preset("ucf") is UCF and not TINY.official


# the official option files (src/ucf_option.py, src/xd_option.py) and training scripts
OFFICIAL = {
    "ucf": dict(
        seed=234,
        embed_dim=512,
        visual_length=256,
        visual_width=512,
        visual_heads=1,
        visual_layers=2,
        attn_window=8,
        prompt_prefix=10,
        prompt_postfix=10,
        epochs=10,
        batch_size=64,
        lr=7e-5,
        decoder_depth=8,
        normal_selection_ratio=0.8,
        num_prototypes=16,
        use_normality=True,
        text_adapt_until=3,
        text_adapter_weight=0.1,
        refine_temp=5.0,
        align_weight=1.1,
        text_sep_divisor=13.0,
        batch_composition="paired",
        drop_last=True,
        refiner_schedule="loaders",
        eval_every_iters=10,
        select_metric="auc",
    ),
    "xd": dict(
        seed=234,
        embed_dim=512,
        visual_length=256,
        visual_width=512,
        visual_heads=1,
        visual_layers=1,
        attn_window=64,
        prompt_prefix=10,
        prompt_postfix=10,
        epochs=10,
        batch_size=96,
        lr=1e-5,
        decoder_depth=8,
        normal_selection_ratio=0.8,
        num_prototypes=16,
        use_normality=True,
        text_adapt_until=1,
        text_adapter_weight=0.6,
        refine_temp=1.0,
        align_weight=5.0,
        text_sep_divisor=6.0,
        batch_composition="mixed",
        drop_last=False,
        refiner_schedule="loaders",
        eval_every_iters=None,
        select_metric="ap",
    ),
}
COMMON = dict(
    align_temperature=0.07,
    pool_scale=10.0,
    label_smoothing=0.1,
    background_floor=0.01,
    extractor_depth=1,
    normality_heads=8,
    normality_mlp_ratio=4.0,
    normality_ln_eps=1e-8,
    weight_decay=0.01,
    refiner_weight_decay=1e-4,
    refiner_betas=(0.9, 0.999),
    refiner_eps=1e-10,
    refiner_amsgrad=True,
    refiner_clip_threshold=1.0,
    refiner_warmup_iters=100,
    refiner_final_lr_ratio=0.1,
    mask_padding_attention=False,
    mask_padding_pooling=False,
    mask_padding_selection=False,
    sim_threshold=0.7,
    sim_cut="zero",
    mask_distance_graph=False,
    text_cache="official",
    use_event_background=True,
    use_text_adapter=True,
    use_refinement=True,
    official=True,
    reload_best_each_epoch=True,
    input_norm="none",
)


@pytest.mark.parametrize("name", ["ucf", "xd"])
def test_presets_equal_official_options(name):
    preset = METHOD.get_preset(name)
    for field, value in {**OFFICIAL[name], **COMMON}.items():
        assert getattr(preset, field) == value, field


def test_ablation_switches_recorded_in_config():
    from dsan_toolkit.config import config_hash, from_dict, to_dict

    p = ablation(UCF, "use_normality", "use_refinement")
    assert not p.use_normality and not p.use_refinement and p.use_text_adapter and not p.official
    assert p.name == "ucf-no-normality-refinement"
    assert from_dict(to_dict(p)) == p and config_hash(p) != config_hash(UCF)
    assert set(ABLATIONS) == {"use_normality", "use_event_background", "use_text_adapter", "use_refinement"}
    with pytest.raises(InputError, match="unknown DSANet ablation"):
        ablation(UCF, "use_everything")


# ----------------------------------------------------------------- official state-dict layout

# sha256 of the sorted "key:shape" lines of the official DSANet state dict (lessiYin/DSANet @1417406,
# its model built with the UCF / XD option files; CLIP ViT-B/16)
OFFICIAL_LAYOUT = {
    "ucf": (793, "fcb7fa798435b6294e92e9599f3991705d28abeef60d58bcdaaa956b91b5201e", 44130882),
    "xd": (779, "4dd0dccccb7b208c37b1232cae7d423fc2ada1bd149b9332a5e379b271b2ddd7", 40454210),
}


def layout_hash(state: dict) -> str:
    lines = sorted(f"{k}:{'x'.join(str(s) for s in v.shape)}" for k, v in state.items())
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


@pytest.mark.parametrize("name", ["ucf", "xd"])
def test_official_key_layout(name, vit_clip):
    preset, classes = (UCF, UCF_CLASSES) if name == "ucf" else (XD, XD_CLASSES)
    with torch.device("meta"):
        model = METHOD.build(preset, classes, feature_dim=512, clip=vit_clip, device="meta")
    extras = {
        prefix + k: v
        for prefix in ("clipmodel.", "clip_adapter.clipmodel.")
        for k, v in vit_clip.model.state_dict().items()
        if k.startswith("visual.") or k == "logit_scale"
    }
    official = to_official_state_dict(model, "dsanet", extras)
    count, digest, trainable = OFFICIAL_LAYOUT[name]
    assert len(official) == count
    assert layout_hash(official) == digest
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == trainable
    assert sum(p.numel() for p in model.video_anomaly_refiner.parameters()) == 30479424
    # both CLIP copies are the one frozen text tower
    assert official["clipmodel.ln_final.weight"] is official["clip_adapter.clipmodel.ln_final.weight"]
    assert not model.text_encoder.token_embedding.weight.requires_grad


def test_official_checkpoint_round_trip(tmp_path, tiny_clip):
    preset = SMALL
    model = build(preset, tiny_clip)
    model.train()
    opts = METHOD.optimizers(model, preset, 4, schedule_iters_per_epoch=8)
    b = batch(preset)
    for _ in range(2):  # move the weights away from their initialisation
        loss, _ = METHOD.loss(model, b, preset)
        for o in opts:
            o.optimizer.zero_grad()
        loss.backward()
        for o in opts:
            o.optimizer.step()
        opts[1].scheduler.step()
    extras = {f"{p}visual.proj": torch.randn(4, 4) for p in ("clipmodel.", "clip_adapter.clipmodel.")}
    path = save_official_checkpoint(model, "dsanet", tmp_path / "dsanet.pth", extras)
    raw = torch.load(path, weights_only=True)
    assert {
        k for k in raw if k.startswith("clip_adapter.clipmodel.")
    } and "video_anomaly_refiner.video_prototypes" in raw
    METHOD.presets["small-test"] = preset.replace(name="small-test")
    try:
        loaded = load_official_checkpoint(
            "dsanet", path, preset="small-test", classes=UCF_CLASSES, clip_model=TINY_MODEL
        )
    finally:
        del METHOD.presets["small-test"]
    assert set(loaded.extras) == set(extras)
    model.eval()
    feats = torch.randn(45, preset.feature_dim)
    a, b2 = predict_video(METHOD, model, feats), predict_video(METHOD, loaded.model, feats)
    torch.testing.assert_close(a.scores, b2.scores, rtol=0, atol=0)
    torch.testing.assert_close(a.class_probs, b2.class_probs, rtol=0, atol=0)


def test_official_checkpoint_of_other_method_refused(tmp_path):
    torch.save(
        {"temporal.resblocks.0.attn.in_proj_weight": torch.zeros(3), "text_prompt_embeddings.weight": torch.zeros(2)},
        tmp_path / "x.pth",
    )
    with pytest.raises(InputError, match="not in the key map"):
        load_official_checkpoint("dsanet", tmp_path / "x.pth", preset="ucf")


# ----------------------------------------------------------------- text branch


def test_text_context_truncation_is_exact(tiny_clip):
    model = build(SMALL, tiny_clip)
    assert model.text_context < 77
    tokens = model.prompt_tokens
    for adapter in (model.clip_adapter, None):
        full = encode_class_text(model.text_encoder, adapter, tokens, 77)
        cut = encode_class_text(model.text_encoder, adapter, tokens, model.text_context)
        torch.testing.assert_close(cut, full, rtol=1e-4, atol=1e-5)


def test_text_without_adapter_is_plain_clip(tiny_clip):
    p = SMALL.replace(use_text_adapter=False, visual_width=512, feature_dim=512)
    model = build(p, tiny_clip)
    ref = tiny_clip.model.encode_text(tiny_clip.tokenizer([c.prompt for c in UCF_CLASSES]))
    torch.testing.assert_close(model.compute_text_features(), F.normalize(ref, dim=-1), rtol=1e-5, atol=1e-6)


def test_text_adapter_mixes_after_each_adapted_layer(tiny_clip):
    model = build(SMALL.replace(text_adapter_weight=0.0), tiny_clip)
    # weight 0: the adapted layers change nothing, only the final bias-free projection + LeakyReLU remains
    tower = model.text_encoder
    tokens = model.prompt_tokens
    x = tower.token_embedding(tokens) + tower.positional_embedding
    mask = tower.attn_mask
    for blk in tower.transformer.resblocks:
        x = blk(x, attn_mask=mask)
    x = tower.ln_final(x)[torch.arange(len(tokens)), tokens.argmax(-1)]
    ref = F.leaky_relu(x @ model.clip_adapter.text_adapter[-1].fc[0].weight.T)
    torch.testing.assert_close(encode_class_text(tower, model.clip_adapter, tokens, 77), ref, rtol=1e-5, atol=1e-6)
    assert model.compute_text_features().shape == (14, SMALL.visual_width)


@pytest.mark.parametrize("mode", ["official", "refresh"])
def test_text_cache(mode, tiny_clip):
    model = build(SMALL.replace(text_cache=mode), tiny_clip)
    b = batch()
    model.eval()
    first = model(b.feats, b.lengths).logits2
    with torch.no_grad():
        model.clip_adapter.text_adapter[-1].fc[0].weight.mul_(-1.5)
    assert torch.equal(model(b.feats, b.lengths).logits2, first)  # cached in eval mode
    model.train()
    model.eval()
    again = model(b.feats, b.lengths).logits2
    if mode == "official":
        assert torch.equal(again, first)  # the official cache is never cleared (stale text features)
    else:
        assert not torch.allclose(again, first)


# ----------------------------------------------------------------- normality branch and pooling oracles


def oracle_aggregation_attention(attn, x, y):
    h = attn.num_heads
    q, kv = attn.q(x), attn.kv(y)
    c = x.shape[-1]
    k, v = kv[..., :c], kv[..., c:]
    d = c // h
    outs = []
    for i in range(h):
        s = q[..., i * d : (i + 1) * d] @ k[..., i * d : (i + 1) * d].transpose(-2, -1) * d**-0.5
        outs.append(s.softmax(-1) @ v[..., i * d : (i + 1) * d])
    return attn.proj(torch.cat(outs, -1))


def oracle_prototype_attention(attn, x, protos):
    h = attn.num_heads
    q, kv = attn.q(x), attn.kv(protos)
    c = x.shape[-1]
    k, v = kv[..., :c], kv[..., c:]
    d = c // h
    outs = []
    for i in range(h):
        qi = F.normalize(q[..., i * d : (i + 1) * d], dim=-1)
        ki = F.normalize(k[..., i * d : (i + 1) * d], dim=-1)
        outs.append(torch.relu(qi @ ki.transpose(-2, -1) * attn.learn_scale[i]) @ v[..., i * d : (i + 1) * d])
    return attn.proj(torch.cat(outs, -1))


def test_normality_branch_equals_oracle(tiny_clip):
    model = build(SMALL, tiny_clip)
    branch = model.video_anomaly_refiner
    with torch.no_grad():  # move away from the near-zero official init so that every path matters
        for p in branch.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    g = torch.Generator().manual_seed(1)
    visual = torch.randn(3, SMALL.visual_length, SMALL.visual_width, generator=g)
    logits1 = torch.randn(3, SMALL.visual_length, 1, generator=g)
    recon, g_loss = branch(visual, logits1)
    # oracle: per-video selection by full sort, per-head loops
    k = int(SMALL.visual_length * SMALL.normal_selection_ratio)
    order = torch.sigmoid(logits1[..., 0]).argsort(dim=1)[:, :k]
    sel = torch.stack([visual[i, order[i]] for i in range(3)])
    pats = branch.video_prototypes.unsqueeze(0).expand(3, -1, -1)
    for blk in branch.dnp_extractor:
        pats = pats + oracle_aggregation_attention(blk.attn, blk.norm1(pats), blk.norm1(sel))
        pats = pats + blk.mlp(blk.norm2(pats))
    dist = 1 - F.cosine_similarity(sel.unsqueeze(2), pats.unsqueeze(1), dim=-1)
    ref_g = dist.min(dim=2).values.mean()
    x = branch.bottleneck(visual)
    for blk in branch.decoder:
        y = oracle_prototype_attention(blk.attn, blk.norm1(x), blk.norm1(pats))
        x = y + blk.mlp(blk.norm2(y))  # no residual around the attention
    torch.testing.assert_close(g_loss, ref_g, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(recon, x, rtol=1e-4, atol=1e-5)


def test_reconstruction_on_valid_rows_equals_dense(tiny_clip):
    branch = build(SMALL, tiny_clip).video_anomaly_refiner
    with torch.no_grad():
        for p in branch.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    g = torch.Generator().manual_seed(2)
    visual = torch.randn(4, SMALL.visual_length, SMALL.visual_width, generator=g)
    patterns = torch.randn(4, SMALL.num_prototypes, SMALL.visual_width, generator=g)
    lengths = torch.tensor([SMALL.visual_length, 1, 7, 20])
    valid = torch.arange(SMALL.visual_length)[None, :] < lengths[:, None]
    a, b = visual.clone().requires_grad_(True), visual.clone().requires_grad_(True)
    dense = branch.reconstruct(a, patterns)
    packed = branch.reconstruct(b, patterns, lengths)
    torch.testing.assert_close(packed[valid], dense[valid], rtol=1e-5, atol=1e-6)
    assert torch.equal(packed[~valid], torch.zeros_like(packed[~valid]))
    w = torch.randn(dense.shape, generator=g) * valid.unsqueeze(-1)
    (dense * w).sum().backward()
    (packed * w).sum().backward()
    torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6)


def test_normal_selection_padding_official_and_masked(tiny_clip):
    model = build(SMALL, tiny_clip)
    n = SMALL.visual_length
    visual = torch.randn(1, n, SMALL.visual_width)
    logits1 = torch.full((1, n, 1), 5.0)
    logits1[0, 20:, 0] = -5.0  # padding positions (length 20) look the most normal
    lengths = torch.tensor([20])
    picked, valid = model.video_anomaly_refiner.select_normal(visual, logits1, lengths)
    k = int(n * 0.8)
    assert picked.shape == (1, k, SMALL.visual_width) and valid is None
    chosen = {int(i) for i in (picked[0] @ visual[0].T).argmax(-1)}
    assert set(range(20, n)) <= chosen  # official: all padding positions are picked first
    masked = build(SMALL.replace(mask_padding_selection=True), tiny_clip).video_anomaly_refiner
    picked, valid = masked.select_normal(visual, logits1, lengths)
    chosen = [int(i) for i in (picked[0] @ visual[0].T).argmax(-1)]
    assert set(chosen[:20]) == set(range(20)) and int(valid.sum()) == 20


def test_event_background_pooling_equals_loop(tiny_clip):
    for masked in (False, True):
        model = build(SMALL.replace(mask_padding_pooling=masked), tiny_clip)
        model.train()
        b = batch()
        out = model(b.feats, b.lengths)
        t = F.normalize(out.text_features, dim=-1)
        for i in range(b.batch_size):
            p = torch.sigmoid(out.logits1[i, :, 0])
            keep = torch.ones_like(p) if not masked else (torch.arange(p.shape[0]) < b.lengths[i]).float()
            wa = (torch.exp(10 * p) - 1) * keep
            wn = (torch.exp(10 * (1 - p)) - 1) * keep
            ea = F.normalize((wa / wa.sum()) @ out.visual[i], dim=-1)
            en = F.normalize((wn / wn.sum()) @ out.visual[i], dim=-1)
            torch.testing.assert_close(out.logits3[i, 0], ea @ t.T / 0.07, rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(out.logits4[i, 0], en @ t.T / 0.07, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------- predict, ablations, optimisers


def test_predict_matches_forward_and_skips_unused_branches(tiny_clip):
    model = build(SMALL, tiny_clip)
    model.eval()
    b = batch()
    pred = METHOD.predict(model, b.feats, b.lengths)
    with torch.no_grad():
        full = model(b.feats, b.lengths)
    assert full.reconstructed is not None
    torch.testing.assert_close(pred.scores, torch.sigmoid(full.logits1[..., 0]))
    torch.testing.assert_close(pred.align_scores, torch.sigmoid(full.logits1[..., 0] / SMALL.refine_temp))
    assert pred.class_probs.shape == (b.batch_size, SMALL.visual_length, 14)
    plain = build(SMALL.replace(use_refinement=False), tiny_clip)
    plain.load_state_dict(model.state_dict())
    plain.eval()
    pp = METHOD.predict(plain, b.feats, b.lengths)
    torch.testing.assert_close(pp.scores, pred.scores)
    torch.testing.assert_close(pp.class_probs, full.logits2.softmax(-1))
    video = predict_video(METHOD, model, torch.randn(2 * SMALL.visual_length, SMALL.feature_dim))
    assert video.scores.shape == (2 * SMALL.visual_length,) and video.class_probs.shape[1] == 14


def step_grads(model, preset, b):
    model.train()
    model.zero_grad()
    loss, logs = METHOD.loss(model, b, preset)
    loss.backward()
    return logs


def test_ablations_change_the_computation(tiny_clip):
    b = batch()
    logs = step_grads(model := build(SMALL, tiny_clip), SMALL, b)
    assert set(logs) == {"cls_mil", "align_mil", "text_sep", "event", "background", "consistency", "gather", "loss"}
    assert model.video_anomaly_refiner.video_prototypes.grad is not None
    p = ablation(SMALL, "use_normality", "use_event_background", "use_text_adapter")
    model = build(p.replace(visual_width=512, feature_dim=512), tiny_clip)
    logs = step_grads(model, p, batch(p.replace(visual_width=512, feature_dim=512)))
    assert set(logs) == {"cls_mil", "align_mil", "text_sep", "loss"}
    assert all(q.grad is None for q in model.video_anomaly_refiner.parameters())
    assert all(q.grad is None for q in model.clip_adapter.parameters())


def test_optimizers_partition_and_schedules(tiny_clip):
    model = build(SMALL, tiny_clip)
    specs = METHOD.optimizers(model, SMALL, 7, schedule_iters_per_epoch=14)
    assert [(s.name, s.step_on) for s in specs] == [("main", "epoch"), ("refiner", "iter")]
    main = {id(p) for g in specs[0].optimizer.param_groups for p in g["params"]}
    ref = {id(p) for g in specs[1].optimizer.param_groups for p in g["params"]}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert main | ref == trainable and not main & ref
    assert ref == {id(p) for p in model.video_anomaly_refiner.parameters()}
    assert specs[0].optimizer.param_groups[0]["weight_decay"] == 0.01
    assert specs[1].optimizer.param_groups[0]["lr"] == 0.0  # warm-up starts at 0
    assert specs[1].scheduler.total_iters == SMALL.epochs * 14


def test_training_learns(tiny_clip):
    """A short run on synthetic features: anomalous videos carry an event (a shifted segment)."""
    preset = SMALL.replace(lr=1e-3)
    model = build(preset, tiny_clip, seed=0)
    g = torch.Generator().manual_seed(0)
    n, d = preset.visual_length, preset.feature_dim
    direction = F.normalize(torch.randn(d, generator=g), dim=0) * 3.0

    def make(per_half):
        feats = torch.randn(2 * per_half, n, d, generator=g)
        gt = torch.zeros(2 * per_half, n)
        for i in range(per_half, 2 * per_half):
            s = int(torch.randint(0, n - 8, (1,), generator=g))
            feats[i, s : s + 8] += direction
            gt[i, s : s + 8] = 1
        labels = torch.zeros(2 * per_half, 14)
        labels[:per_half, 0] = 1
        labels[per_half:, 1] = 1
        return TrainBatch(feats, torch.full((2 * per_half,), n), labels, labels[:, 0] == 0), gt

    specs = METHOD.optimizers(model, preset, 15, schedule_iters_per_epoch=30)
    for _ in range(15):
        b, _ = make(4)
        model.train()
        loss, _ = METHOD.loss(model, b, preset)
        for s in specs:
            s.optimizer.zero_grad()
        loss.backward()
        for s in specs:
            s.optimizer.step()
        specs[1].scheduler.step()
    model.eval()
    test, gt = make(6)
    pred = METHOD.predict(model, test.feats, test.lengths)
    auc = roc_auc_score(gt.flatten().numpy(), pred.scores.flatten().numpy())
    assert auc > 0.85, auc
    assert np.isfinite(loss.item())


def test_tiny_input_norm_hook(tiny_clip):
    """input_norm (NOT official) works through models.input_norm's buffers + forward pre-hook."""
    p = SMALL.replace(input_norm="standardize")
    model = build(p, tiny_clip)
    assert TINY.input_norm == "standardize" and UCF.input_norm == "none" and XD.input_norm == "none"
    b = batch()
    model.eval()
    before = METHOD.predict(model, b.feats, b.lengths).scores
    with torch.no_grad():
        model.input_norm_mean.fill_(0.5)
        model.input_norm_std.fill_(2.0)
    after = METHOD.predict(model, b.feats, b.lengths).scores
    plain = build(SMALL, tiny_clip)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("input_norm_")})
    plain.eval()
    x = (b.feats - 0.5) / 2.0 * (torch.arange(p.visual_length)[None, :] < b.lengths[:, None]).unsqueeze(-1)
    torch.testing.assert_close(after, METHOD.predict(plain, x, b.lengths).scores)
    assert not torch.allclose(before, after)


# ----------------------------------------------------------------- bad inputs


def test_bad_inputs(tiny_clip):
    vad = get_method("vadclip")
    with pytest.raises(InputError, match="DSANetPreset"):
        METHOD.build(vad.get_preset("tiny"), UCF_CLASSES, feature_dim=512, clip=tiny_clip)
    with pytest.raises(InputError, match="visual width"):
        METHOD.build(SMALL, UCF_CLASSES, feature_dim=512, clip=tiny_clip)
    with pytest.raises(InputError, match="CLIP model"):
        METHOD.build(SMALL, UCF_CLASSES, feature_dim=64, clip=None)
    with pytest.raises(InputError, match="normal class"):
        METHOD.build(SMALL, UCF_CLASSES[1:], feature_dim=64, clip=tiny_clip)
    with pytest.raises(InputError, match="text tower has 2 layers"):
        METHOD.build(SMALL.replace(text_adapt_until=3), UCF_CLASSES, feature_dim=64, clip=tiny_clip)
    with pytest.raises(InputError, match="must divide"):
        SMALL.replace(attn_window=5)
    with pytest.raises(InputError, match="text_cache"):
        DSANetPreset(text_cache="sometimes")
    with pytest.raises(InputError, match="unknown preset fields"):
        SMALL.replace(window=3)
    with pytest.raises(InputError, match="no preset"):
        METHOD.get_preset("ucf-crime")
