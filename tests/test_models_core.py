"""Method API, registry, official sampling and the shared encoder blocks against loop oracles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dsan_toolkit.config import config_hash, from_dict, to_dict
from dsan_toolkit.errors import InputError
from dsan_toolkit.manifest.schema import ClassInfo
from dsan_toolkit.models import (
    chunk_lengths,
    class_prompts,
    get_method,
    labels_from_codes,
    list_methods,
    resample_uniform,
    split_chunks,
)
from dsan_toolkit.models.common import (
    DistanceAdj,
    EncoderOptions,
    GraphConvolution,
    LearnablePrompt,
    TemporalGraphEncoder,
    similarity_adjacency,
    window_attention_mask,
)

# ---- oracles: the official numpy / loop code, written out plainly


def oracle_uniform_extract(feat: np.ndarray, t_max: int) -> np.ndarray:
    new = np.zeros((t_max, feat.shape[1]), dtype=np.float32)
    r = np.linspace(0, len(feat), t_max + 1, dtype=np.int32)
    for i in range(t_max):
        new[i] = np.mean(feat[r[i] : r[i + 1]], 0) if r[i] != r[i + 1] else feat[r[i]]
    return new


def oracle_process_split(feat: np.ndarray, length: int) -> tuple[np.ndarray, list[int]]:
    t = feat.shape[0]
    pad = lambda f: np.pad(f, ((0, length - f.shape[0]), (0, 0)))  # noqa: E731
    if t < length:
        chunks = pad(feat)[None]
    else:
        n = int(t / length) + 1
        chunks = np.stack(
            [
                feat[i * length : (i + 1) * length] if i < n - 1 else pad(feat[i * length : (i + 1) * length])
                for i in range(n)
            ]
        )
    lengths, rest = [], t  # the official test loop's length bookkeeping
    for j in range(int(t / length) + 1):
        if j == 0 and rest < length:
            lengths.append(rest)
        elif j == 0 and rest > length:
            lengths.append(length)
            rest -= length
        elif rest > length:
            lengths.append(length)
            rest -= length
        else:
            lengths.append(rest)
    return chunks, lengths


def oracle_adj4(x: torch.Tensor, seq_len: list[int]) -> torch.Tensor:
    x2 = x.matmul(x.permute(0, 2, 1))
    n = torch.norm(x, p=2, dim=2, keepdim=True)
    x2 = x2 / (n.matmul(n.permute(0, 2, 1)) + 1e-20)
    out = torch.zeros_like(x2)
    for i, s in enumerate(seq_len):
        out[i, :s, :s] = torch.softmax(F.threshold(x2[i, :s, :s], 0.7, 0), dim=1)
    return out


# ---- registry and API


def test_registry_lists_methods_and_refuses_unknown():
    names = list_methods()
    assert {"vadclip", "mil", "zeroshot"} <= set(names)
    assert get_method("vadclip").name == "vadclip"
    with pytest.raises(InputError, match="unknown method"):
        get_method("nope")
    with pytest.raises(InputError, match="no preset"):
        get_method("vadclip").get_preset("imagenet")
    with pytest.raises(InputError, match="unknown preset fields"):
        get_method("vadclip").get_preset("ucf", widht=3)


@pytest.mark.parametrize("name", ["vadclip", "mil", "zeroshot"])
def test_presets_round_trip_and_hash(name):
    m = get_method(name)
    assert {"ucf", "xd", "tiny"} <= set(m.presets)
    for p in m.presets.values():
        assert from_dict(to_dict(p)) == p
    assert config_hash(m.presets["ucf"]) != config_hash(m.presets["xd"])
    assert m.presets["ucf"].official == (name != "zeroshot") and not m.presets["tiny"].official
    assert m.presets["ucf"].visual_length == 256 or name == "mil"


def test_labels_and_prompts_from_class_table():
    classes = [
        ClassInfo("A", "normal", "normal", True),
        ClassInfo("B1", "fighting", "fighting"),
        ClassInfo("G", "explosion", "explosion"),
    ]
    lab = labels_from_codes([["A"], ["B1", "G"]], classes)
    assert lab.tolist() == [[1, 0, 0], [0, 1, 1]]
    assert class_prompts(classes) == ["normal", "fighting", "explosion"]
    with pytest.raises(InputError, match="not in the class table"):
        labels_from_codes([["B9"]], classes)
    with pytest.raises(InputError, match="normal class"):
        class_prompts(classes[1:])


# ---- sampling


@pytest.mark.parametrize("t", [1, 100, 256, 257, 300, 1000, 4097])
def test_resample_uniform_matches_official(t):
    feat = np.random.default_rng(t).standard_normal((t, 8)).astype(np.float32)
    got, valid = resample_uniform(feat, 256)
    assert isinstance(got, np.ndarray) and got.shape == (256, 8) and got.dtype == np.float32
    if t <= 256:
        want = np.pad(feat, ((0, 256 - t), (0, 0)))
        assert valid == t
    else:
        want = oracle_uniform_extract(feat, 256)
        assert valid == 256
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    tgot, tvalid = resample_uniform(torch.from_numpy(feat), 256)
    assert isinstance(tgot, torch.Tensor) and tvalid == valid


@pytest.mark.parametrize("t", [1, 255, 256, 257, 512, 700])
def test_split_chunks_matches_official_test_loop(t):
    feat = np.random.default_rng(t).standard_normal((t, 4)).astype(np.float32)
    chunks, lengths = split_chunks(feat, 256)
    want_chunks, want_lengths = oracle_process_split(feat, 256)
    np.testing.assert_array_equal(chunks, want_chunks)
    assert lengths.tolist() == want_lengths == chunk_lengths(t, 256)
    if t % 256 == 0:  # the official all-padding chunk
        assert len(lengths) == t // 256 + 1 and not chunks[-1].any()


def test_sampling_refuses_bad_shapes():
    with pytest.raises(InputError, match="0 snippets"):
        split_chunks(np.zeros((0, 4), np.float32))
    with pytest.raises(InputError, match=r"\(T, D\)"):
        resample_uniform(np.zeros((3, 4, 5), np.float32))


# ---- encoder blocks


def test_window_mask_is_block_diagonal():
    m = window_attention_mask(16, 4)
    blocks = torch.block_diag(*[torch.ones(4, 4)] * 4).bool()
    assert torch.equal(m == 0, blocks) and torch.isinf(m[~blocks]).all()


@pytest.mark.parametrize("seed", [0, 1])
def test_similarity_graph_matches_official_loop(seed):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(5, 1, 6, generator=g)
    x = base + 0.4 * torch.randn(5, 40, 6, generator=g)  # correlated rows: many pairs above 0.7
    lengths = [40, 1, 13, 27, 39]
    want = oracle_adj4(x, lengths)
    got = similarity_adjacency(x, torch.tensor(lengths))
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(similarity_adjacency(x, None), oracle_adj4(x, [40] * 5), rtol=1e-6, atol=1e-7)
    cut = similarity_adjacency(x, torch.tensor(lengths), cut="exclude")
    assert torch.allclose(cut.sum(-1)[0], torch.ones(40)) and (cut[0][oracle_adj4(x, [40] * 5)[0] == 0] == 0).all()


def test_distance_graph_and_graph_convolution():
    d = DistanceAdj()(2, 5)
    assert d.shape == (2, 5, 5)
    assert float(d[0, 0, 3]) == pytest.approx(np.exp(-3 / np.e), rel=1e-6)
    gc = GraphConvolution(6, 3)
    assert {n for n, _ in gc.named_parameters()} == {"weight", "residual.weight", "residual.bias"}
    same = GraphConvolution(3, 3)
    x, adj = torch.randn(2, 5, 3), torch.rand(2, 5, 5)
    torch.testing.assert_close(same(x, adj), adj @ (x @ same.weight) + x)


def test_encoder_official_names_and_padding_options():
    enc = TemporalGraphEncoder(16, 2, 2, 32, 8)
    names = set(enc.state_dict())
    assert "temporal.resblocks.1.attn.in_proj_weight" in names and "disAdj.sigma" in names
    assert "frame_position_embeddings.weight" in names and "gc1.residual.weight" in names
    x = torch.randn(2, 32, 16)
    lengths = torch.tensor([32, 10])
    out = enc(x, lengths)
    assert out.shape == (2, 32, 16) and torch.isfinite(out).all()
    # official: padding influences valid snippets (attention + distance graph are not masked)
    y = x.clone()
    y[1, 10:] = 5.0
    assert not torch.allclose(enc(y, lengths)[1, :10], out[1, :10])
    masked = TemporalGraphEncoder(
        16, 2, 2, 32, 8, EncoderOptions(mask_padding_attention=True, mask_distance_graph=True)
    )
    masked.load_state_dict(enc.state_dict())
    # masked: attention and both graphs ignore padding; only the k=5 residual Conv1d of gc1/gc3
    # still reaches 2 positions across the boundary
    torch.testing.assert_close(masked(y, lengths)[1, :8], masked(x, lengths)[1, :8], rtol=1e-5, atol=1e-5)


def test_learnable_prompt_layout_matches_official_loop():
    torch.manual_seed(0)
    prompt = LearnablePrompt(20, 4, prefix=3, postfix=2)
    tokens = torch.zeros(2, 20, dtype=torch.long)
    tokens[0, :4] = torch.tensor([100, 5, 6, 999])  # sot, two words, eot
    tokens[1, :3] = torch.tensor([100, 7, 999])
    words = torch.randn(2, 20, 4)
    got, eot = prompt(words, tokens)
    want = prompt.text_prompt_embeddings.weight.unsqueeze(0).repeat(2, 1, 1).detach().clone()
    for i in range(2):  # the official encode_textprompt loop
        ind = int(torch.argmax(tokens[i]))
        want[i, 0] = words[i, 0]
        want[i, 3 + 1 : 3 + ind] = words[i, 1:ind]
        want[i, 3 + ind + 2] = words[i, ind]
    torch.testing.assert_close(got, want)
    assert eot.tolist() == [3 + 3 + 2, 3 + 2 + 2]
    too_long = torch.zeros(1, 20, dtype=torch.long)
    too_long[0, 16] = 999
    with pytest.raises(InputError, match="too long"):
        prompt(torch.randn(1, 20, 4), too_long)


# ---- baselines


def test_mil_ranking_loss_matches_loop_oracle():
    from dsan_toolkit.models.mil import PRESETS as MIL_PRESETS
    from dsan_toolkit.models.mil import mil_ranking_loss

    preset = MIL_PRESETS["ucf"]
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(6, 32, generator=g)
    lengths = torch.tensor([32, 5, 20, 32, 1, 17])
    anomalous = torch.tensor([False, False, False, True, True, True])
    total, parts = mil_ranking_loss(scores, lengths, anomalous, preset)
    hinges, smooth, sparse = [], [], []
    for a in range(6):
        if not anomalous[a]:
            continue
        sa = scores[a, : lengths[a]]
        smooth.append(((sa[1:] - sa[:-1]) ** 2).sum())
        sparse.append(sa.sum())
        for n in range(6):
            if not anomalous[n]:
                hinges.append(torch.clamp(1 - sa.max() + scores[n, : lengths[n]].max(), min=0))
    want = torch.stack(hinges).mean() + 8e-5 * torch.stack(smooth).mean() + 8e-5 * torch.stack(sparse).mean()
    torch.testing.assert_close(total, want)
    with pytest.raises(InputError, match="both normal and anomalous"):
        mil_ranking_loss(scores, lengths, torch.ones(6, dtype=torch.bool), preset)


def test_mil_method_trains_and_predicts():
    m = get_method("mil")
    preset = m.get_preset("tiny")
    classes = [ClassInfo("A", "normal", "normal", True), ClassInfo("B", "b", "b"), ClassInfo("C", "c", "c")]
    torch.manual_seed(0)
    model = m.build(preset, classes, feature_dim=16, clip=None)
    from dsan_toolkit.models import TrainBatch

    feats = torch.randn(8, 32, 16)
    feats[4:, :4] += 3.0  # anomalous bags carry an event
    labels = labels_from_codes([["A"]] * 4 + [["B"]] * 4, classes)
    batch = TrainBatch(feats, torch.full((8,), 32), labels, labels[:, 0] == 0)
    opt = m.optimizers(model, preset, 1, schedule_iters_per_epoch=1)[0].optimizer
    first = None
    for _ in range(30):
        loss, logs = m.loss(model, batch, preset)
        first = first if first is not None else logs["ranking"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert logs["ranking"] < first
    model.eval()
    pred = m.predict(model, feats, torch.full((8,), 32))
    assert pred.class_probs is None and not m.has_class_branch  # no class branch: no class probabilities
    assert float(pred.scores[4:, :4].mean()) > float(pred.scores[:4].mean())


def test_zeroshot_scores_features_against_class_prompts():
    from dsan_toolkit.clip import TINY_MODEL, create_clip
    from dsan_toolkit.models.common import ClipTextTower

    clip = create_clip(TINY_MODEL)
    m = get_method("zeroshot")
    classes = [
        ClassInfo("A", "normal", "normal", True),
        ClassInfo("B", "fighting", "fighting"),
        ClassInfo("C", "explosion", "explosion"),
    ]
    model = m.build(m.get_preset("tiny"), classes, feature_dim=512, clip=clip)
    tower = ClipTextTower(clip.model, clip.tokenizer)
    text = tower.encode_texts([f"a video frame of {c.name}" for c in classes])
    feats = text[[0, 1, 2, 2]].unsqueeze(0) * 3.0  # snippets equal (up to scale) to each class text
    pred = m.predict(model, feats, torch.tensor([4]))
    assert pred.class_probs[0].argmax(-1).tolist() == [0, 1, 2, 2]
    torch.testing.assert_close(pred.scores, 1 - pred.class_probs[..., 0])
    with pytest.raises(InputError, match="training-free"):
        m.loss(model, None, m.get_preset("tiny"))  # type: ignore[arg-type]
    with pytest.raises(InputError, match="CLIP"):
        m.build(m.get_preset("tiny"), classes, feature_dim=512, clip=None)


def test_dataset_protocol_is_written_once_for_dsanet_and_vadclip():
    """Both methods take the per-dataset protocol and core from models.protocols; only the
    methods' own values differ (VadCLIP XD selects on the alignment AP, its official rule)."""
    from dsan_toolkit.models.protocols import PROTOCOLS, VADCLIP_CORE

    dsanet, vadclip = get_method("dsanet"), get_method("vadclip")
    for name in ("ucf", "xd", "tiny"):
        for field_name, value in {**PROTOCOLS[name], **VADCLIP_CORE[name]}.items():
            assert getattr(dsanet.presets[name], field_name) == value, (name, field_name)
            want = "ap_align" if (name, field_name) == ("xd", "select_metric") else value
            assert getattr(vadclip.presets[name], field_name) == want, (name, field_name)
