"""VadCLIP / shared MIL losses against straightforward per-video loops (the official code's form)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dsan_toolkit.models.common import (
    masked_topk_mean,
    mil_bce_loss,
    mil_soft_ce_loss,
    text_separation_loss,
    topk_counts,
)
from dsan_toolkit.models.vadclip import VadCLIPOutput, vadclip_loss
from dsan_toolkit.models.vadclip.presets import PRESETS

# ---- oracles: the official loops (ucf_train.py CLAS2 / CLASM / loss3), written out plainly


def oracle_clas2(logits1, labels, lengths):
    target = 1 - labels[:, 0]
    probs = torch.sigmoid(logits1).reshape(logits1.shape[0], logits1.shape[1])
    vals = torch.zeros(0)
    for i in range(probs.shape[0]):
        top, _ = torch.topk(probs[i, : lengths[i]], k=int(lengths[i] / 16 + 1))
        vals = torch.cat([vals, top.mean().view(1)])
    return F.binary_cross_entropy(vals, target)


def oracle_clasm(logits2, labels, lengths):
    target = labels / labels.sum(dim=1, keepdim=True)
    vals = torch.zeros(0)
    for i in range(logits2.shape[0]):
        top, _ = torch.topk(logits2[i, : lengths[i]], k=int(lengths[i] / 16 + 1), dim=0)
        vals = torch.cat([vals, top.mean(0, keepdim=True)])
    return -torch.mean(torch.sum(target * F.log_softmax(vals, dim=1), dim=1), dim=0)


def oracle_loss3(text):
    total = torch.zeros(1)
    n0 = text[0] / text[0].norm(dim=-1, keepdim=True)
    for j in range(1, text.shape[0]):
        total = total + torch.abs(n0 @ (text[j] / text[j].norm(dim=-1, keepdim=True)))
    return total[0]


def random_batch(seed: int, b: int = 9, n: int = 96, c: int = 7):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, n + 1, (b,), generator=g)
    lengths[0], lengths[1] = 1, n  # extremes: k = 1 with a single snippet, full length
    logits1 = torch.randn(b, n, 1, generator=g) * 3
    logits2 = torch.randn(b, n, c, generator=g) * 5
    labels = torch.zeros(b, c)
    labels[: b // 2, 0] = 1
    for i in range(b // 2, b):  # multi-label rows (XD style)
        labels[i, 1 + torch.randperm(c - 1, generator=g)[: 1 + i % 2]] = 1
    return logits1, logits2, labels, lengths


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_topk_mean_matches_loop_with_ragged_lengths(seed):
    _, logits2, _, lengths = random_batch(seed)
    got = masked_topk_mean(logits2, lengths)
    want = torch.stack(
        [torch.topk(logits2[i, : lengths[i]], int(lengths[i] / 16 + 1), dim=0)[0].mean(0) for i in range(len(lengths))]
    )
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    # values beyond the valid length must never count, however large
    poisoned = logits2.clone()
    for i, n in enumerate(lengths.tolist()):
        poisoned[i, n:] = 1e6
    torch.testing.assert_close(masked_topk_mean(poisoned, lengths), got)


def test_topk_counts_are_official():
    lengths = torch.tensor([1, 15, 16, 17, 31, 32, 255, 256])
    assert topk_counts(lengths).tolist() == [int(n / 16 + 1) for n in lengths.tolist()]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_mil_losses_equal_official_loops_values_and_gradients(seed):
    logits1, logits2, labels, lengths = random_batch(seed)
    a1 = logits1.clone().requires_grad_(True)
    b1 = logits1.clone().requires_grad_(True)
    ours, ref = mil_bce_loss(a1, labels, lengths), oracle_clas2(b1, labels, lengths)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    ours.backward(), ref.backward()
    torch.testing.assert_close(a1.grad, b1.grad, rtol=1e-5, atol=1e-7)

    a2 = logits2.clone().requires_grad_(True)
    b2 = logits2.clone().requires_grad_(True)
    ours, ref = mil_soft_ce_loss(a2, labels, lengths), oracle_clasm(b2, labels, lengths)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    ours.backward(), ref.backward()
    torch.testing.assert_close(a2.grad, b2.grad, rtol=1e-5, atol=1e-7)


def test_text_separation_matches_loop():
    text = torch.randn(14, 32, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(text_separation_loss(text), oracle_loss3(text))
    # orthogonal anomaly classes give 0; a copy of the normal class gives 1 per copy
    eye = torch.eye(4)
    assert float(text_separation_loss(eye)) == 0.0
    assert float(text_separation_loss(torch.stack([eye[0], eye[0] * 3, eye[1]]))) == pytest.approx(1.0)


@pytest.mark.parametrize("preset_name,c", [("ucf", 14), ("xd", 7)])
def test_vadclip_total_loss_weights_are_official(preset_name, c):
    preset = PRESETS[preset_name]
    logits1, logits2, labels, lengths = random_batch(7, c=c)
    text = torch.randn(c, 16)
    out = VadCLIPOutput(text_features=text, logits1=logits1, logits2=logits2, visual=torch.zeros(1))
    total, parts = vadclip_loss(out, labels, lengths, preset)
    l1, l2, l3 = oracle_clas2(logits1, labels, lengths), oracle_clasm(logits2, labels, lengths), oracle_loss3(text)
    want = l1 + l2 + (l3 / 13 * 1e-1 if preset_name == "ucf" else l3 / 6 * 1e-4)
    torch.testing.assert_close(total, want, rtol=1e-5, atol=1e-6)
    assert set(parts) == {"cls_mil", "align_mil", "text_sep"}


def test_loss_follows_input_device_and_dtype():
    logits1, logits2, labels, lengths = random_batch(3)
    out = mil_soft_ce_loss(logits2.double(), labels.double(), lengths)
    assert out.dtype == torch.float64 and out.device == logits2.device
