"""DSANet losses, refinement and optimisers against straightforward loop oracles.

The oracles follow the official code's arithmetic (per-video top-k loops, per-class text
loop, pairwise cosine broadcast, per-parameter optimiser loop, numpy schedule table); the
library versions are vectorised. Random ragged batches, lengths from 1 to L.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dsan_toolkit.models.common import mil_bce_loss, mil_soft_ce_loss
from dsan_toolkit.models.dsanet.losses import (
    background_loss,
    background_targets,
    consistency_loss,
    dsanet_loss,
    event_loss,
    smoothed_targets,
)
from dsan_toolkit.models.dsanet.model import DSANetOutput, refine_scores_hierarchical
from dsan_toolkit.models.dsanet.normality import gather_loss
from dsan_toolkit.models.dsanet.optim import StableAdamW, WarmCosineSchedule, refiner_total_iters
from dsan_toolkit.models.dsanet.presets import TINY, UCF, XD

# ----------------------------------------------------------------- loop oracles (official semantics)


def loop_cls(logits1, labels, lengths):
    target = 1 - labels[:, 0]
    probs = torch.sigmoid(logits1).reshape(logits1.shape[0], logits1.shape[1])
    vals = torch.zeros(0)
    for i in range(probs.shape[0]):
        top, _ = torch.topk(probs[i, : lengths[i]], k=int(lengths[i] / 16 + 1))
        vals = torch.cat([vals, top.mean().view(1)])
    return F.binary_cross_entropy(vals, target)


def loop_align(logits2, labels, lengths):
    target = labels / labels.sum(dim=1, keepdim=True)
    vals = torch.zeros(0)
    for i in range(logits2.shape[0]):
        top, _ = torch.topk(logits2[i, : lengths[i]], k=int(lengths[i] / 16 + 1), dim=0)
        vals = torch.cat([vals, top.mean(0, keepdim=True)])
    return -torch.mean(torch.sum(target * F.log_softmax(vals, dim=1), dim=1))


def loop_pooled(logits, target, lengths):
    vals = torch.zeros(0)
    for i in range(logits.shape[0]):
        top, _ = torch.topk(logits[i, 0 : lengths[i]], k=1, dim=0)
        vals = torch.cat([vals, top.mean(0, keepdim=True)])
    return -torch.mean(torch.sum(target * F.log_softmax(vals, dim=1), dim=1))


def loop_event(logits3, labels, lengths, eps=0.1):
    c = logits3.shape[2]
    sm = (1 - eps) * (labels / labels.sum(dim=1, keepdim=True).clamp(min=1e-6)) + eps / c
    return loop_pooled(logits3, sm, lengths)


def loop_background(logits4, labels, lengths, eps=0.1):
    c = logits4.shape[2]
    t = torch.full(labels.shape, 0.01)
    t[:, 0] = 1
    t = (1 - eps) * (t / t.sum(dim=1, keepdim=True).clamp(min=1e-6)) + eps / c
    return loop_pooled(logits4, t, lengths)


def loop_consistency(logits1, original, recon, lengths):
    sq, count = torch.zeros(()), 0
    for i in range(original.shape[0]):
        n = int(lengths[i])
        err = (1.0 - F.cosine_similarity(original[i, :n], recon[i, :n], dim=-1)) / 2.0
        sq = sq + ((torch.sigmoid(logits1[i, :n, 0]) - err) ** 2).sum()
        count += n
    return sq / count


def loop_gather(query, keys):
    dist = 1.0 - F.cosine_similarity(query.unsqueeze(2), keys.unsqueeze(1), dim=-1)
    return dist.min(dim=2).values.mean()


def loop_text_sep(text, divisor):
    total = torch.zeros(1)
    n0 = text[0] / text[0].norm(dim=-1, keepdim=True)
    for j in range(1, text.shape[0]):
        total = total + torch.abs(n0 @ (text[j] / text[j].norm(dim=-1, keepdim=True)))
    return total / divisor


def loop_refine(logits1, logits2, temp):
    rows = []
    for t in range(logits1.shape[0]):
        a = torch.sigmoid(logits1[t, 0] / temp)
        p = torch.softmax(logits2[t] / temp, dim=0)[1:]
        rows.append(torch.cat([(1 - a).view(1), a * p / (p.sum() + 1e-12)]))
    return torch.stack(rows)


# ----------------------------------------------------------------- data


def ragged_batch(seed: int, b: int = 7, n: int = 48, c: int = 5, d: int = 16):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, n + 1, (b,), generator=g)
    lengths[0], lengths[1] = 1, n
    labels = torch.zeros(b, c)
    labels[: b // 2, 0] = 1
    for i in range(b // 2, b):
        picks = torch.randperm(c - 1, generator=g)[: int(torch.randint(1, 3, (1,), generator=g))] + 1
        labels[i, picks] = 1  # multi-label rows, as XD
    return dict(
        lengths=lengths,
        labels=labels,
        logits1=torch.randn(b, n, 1, generator=g) * 3,
        logits2=torch.randn(b, n, c, generator=g) * 5,
        logits3=torch.randn(b, 1, c, generator=g) * 5,
        logits4=torch.randn(b, 1, c, generator=g) * 5,
        visual=torch.randn(b, n, d, generator=g),
        recon=torch.randn(b, n, d, generator=g),
        text=torch.randn(c, d, generator=g),
    )


SEEDS = [0, 1, 2]


@pytest.mark.parametrize("seed", SEEDS)
def test_mil_losses_equal_loops(seed):
    x = ragged_batch(seed)
    torch.testing.assert_close(
        mil_bce_loss(x["logits1"], x["labels"], x["lengths"]), loop_cls(x["logits1"], x["labels"], x["lengths"])
    )
    torch.testing.assert_close(
        mil_soft_ce_loss(x["logits2"], x["labels"], x["lengths"]), loop_align(x["logits2"], x["labels"], x["lengths"])
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_event_background_losses_equal_loops(seed):
    x = ragged_batch(seed)
    torch.testing.assert_close(
        event_loss(x["logits3"], x["labels"], 0.1), loop_event(x["logits3"], x["labels"], x["lengths"])
    )
    torch.testing.assert_close(
        background_loss(x["logits4"], x["labels"], 0.1), loop_background(x["logits4"], x["labels"], x["lengths"])
    )


def test_smoothed_and_background_targets():
    labels = torch.tensor([[1.0, 0, 0, 0], [0, 1, 1, 0]])
    sm = smoothed_targets(labels, 0.1)
    torch.testing.assert_close(sm.sum(dim=1), torch.ones(2))
    torch.testing.assert_close(sm[1], torch.tensor([0.025, 0.475, 0.475, 0.025]))
    bg = background_targets(labels, 0.1)
    assert torch.equal(bg[0], bg[1])  # independent of the video's labels
    expected = 0.9 * torch.tensor([1.0, 0.01, 0.01, 0.01]) / 1.03 + 0.025
    torch.testing.assert_close(bg[0], expected)


@pytest.mark.parametrize("seed", SEEDS)
def test_consistency_loss_equals_loop_and_ignores_padding(seed):
    x = ragged_batch(seed)
    got = consistency_loss(x["logits1"], x["visual"], x["recon"], x["lengths"])
    torch.testing.assert_close(got, loop_consistency(x["logits1"], x["visual"], x["recon"], x["lengths"]))
    junk = x["recon"].clone()
    mask = torch.arange(junk.shape[1])[None, :] >= x["lengths"][:, None]
    junk[mask] = 1e3
    torch.testing.assert_close(consistency_loss(x["logits1"], x["visual"], junk, x["lengths"]), got)


@pytest.mark.parametrize("seed", SEEDS)
def test_gather_loss_equals_pairwise_cosine(seed):
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(3, 20, 16, generator=g), torch.randn(3, 4, 16, generator=g)
    torch.testing.assert_close(gather_loss(q, k), loop_gather(q, k))
    q.requires_grad_(False)
    k1 = k.clone().requires_grad_(True)
    k2 = k.clone().requires_grad_(True)
    gather_loss(q, k1).backward()
    loop_gather(q, k2).backward()
    torch.testing.assert_close(k1.grad, k2.grad)


@pytest.mark.parametrize("seed", SEEDS)
def test_total_loss_and_gradients_equal_loops(seed):
    x = ragged_batch(seed)
    leaves = {
        k: x[k].clone().requires_grad_(True) for k in ("logits1", "logits2", "logits3", "logits4", "recon", "text")
    }
    preset = UCF
    g_loss = torch.tensor(0.37)
    out = DSANetOutput(
        text_features=leaves["text"],
        logits1=leaves["logits1"],
        logits2=leaves["logits2"],
        visual=x["visual"],
        logits3=leaves["logits3"],
        logits4=leaves["logits4"],
        reconstructed=leaves["recon"],
        gather_loss=g_loss,
    )
    total, parts = dsanet_loss(out, x["labels"], x["lengths"], preset)
    grads = torch.autograd.grad(total, list(leaves.values()))
    ref_leaves = {k: x[k].clone().requires_grad_(True) for k in leaves}
    lab, lens = x["labels"], x["lengths"]
    ref = (
        loop_cls(ref_leaves["logits1"], lab, lens)
        + loop_align(ref_leaves["logits2"], lab, lens) * preset.align_weight
        + loop_text_sep(ref_leaves["text"], 13.0)
        + loop_event(ref_leaves["logits3"], lab, lens)
        + loop_background(ref_leaves["logits4"], lab, lens)
        + loop_consistency(ref_leaves["logits1"], x["visual"], ref_leaves["recon"], lens)
        + g_loss
    ).sum()
    ref_grads = torch.autograd.grad(ref, list(ref_leaves.values()))
    torch.testing.assert_close(total, ref)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b)
    assert set(parts) == {"cls_mil", "align_mil", "text_sep", "event", "background", "consistency", "gather"}


def test_total_loss_ablations():
    x = ragged_batch(5)
    out = DSANetOutput(text_features=x["text"], logits1=x["logits1"], logits2=x["logits2"], visual=x["visual"])
    p = UCF.replace(use_normality=False, use_event_background=False)
    total, parts = dsanet_loss(out, x["labels"], x["lengths"], p)
    assert set(parts) == {"cls_mil", "align_mil", "text_sep"}
    # the official code adds the alignment loss with weight 1 when the normality branch is off
    torch.testing.assert_close(total, parts["cls_mil"] + parts["align_mil"] + parts["text_sep"])
    with pytest.raises(ValueError, match="event/background"):
        dsanet_loss(out, x["labels"], x["lengths"], UCF.replace(use_normality=False))
    with pytest.raises(ValueError, match="normality"):
        dsanet_loss(out, x["labels"], x["lengths"], UCF.replace(use_event_background=False))


def test_text_separation_divisor():
    x = ragged_batch(3)
    out = DSANetOutput(text_features=x["text"], logits1=x["logits1"], logits2=x["logits2"], visual=x["visual"])
    for preset, div in ((UCF, 13.0), (XD, 6.0), (TINY, 4.0)):  # tiny: None -> C - 1 = 4
        p = preset.replace(use_normality=False, use_event_background=False)
        _, parts = dsanet_loss(out, x["labels"], x["lengths"], p)
        torch.testing.assert_close(parts["text_sep"], loop_text_sep(x["text"], div)[0])


@pytest.mark.parametrize("temp", [1.0, 5.0])
def test_refinement_equals_loop(temp):
    x = ragged_batch(4)
    l1, l2 = x["logits1"][2], x["logits2"][2]
    got = refine_scores_hierarchical(l1, l2, temp)
    torch.testing.assert_close(got, loop_refine(l1, l2, temp))
    torch.testing.assert_close(got.sum(dim=-1), torch.ones(l1.shape[0]))
    torch.testing.assert_close(1 - got[:, 0], torch.sigmoid(l1[:, 0] / temp))
    # batched (B, L, .) gives the same rows
    torch.testing.assert_close(refine_scores_hierarchical(x["logits1"], x["logits2"], temp)[2], got)


# ----------------------------------------------------------------- optimisers


def reference_stable_adamw(params, grads_per_step, lr_per_step, betas, eps, wd, amsgrad, clip_threshold):
    """Per-parameter loop with the official update order."""
    params = [p.clone() for p in params]
    state = [dict(step=0, m=torch.zeros_like(p), v=torch.zeros_like(p), vmax=torch.zeros_like(p)) for p in params]
    b1, b2 = betas
    for grads, lr in zip(grads_per_step, lr_per_step):
        for p, g, s in zip(params, grads, state):
            p.mul_(1 - lr * wd)
            s["step"] += 1
            bc1, bc2 = 1 - b1 ** s["step"], 1 - b2 ** s["step"]
            s["m"].mul_(b1).add_(g, alpha=1 - b1)
            s["v"].mul_(b2).addcmul_(g, g, value=1 - b2)
            if amsgrad:
                torch.max(s["vmax"], s["v"], out=s["vmax"])
                denom = (s["vmax"].sqrt() / math.sqrt(bc2)).add_(eps)
            else:
                denom = (s["v"].sqrt() / math.sqrt(bc2)).add_(eps)
            ratio = g / denom
            scale = max(1.0, float(ratio.norm(2) / (ratio.numel() ** 0.5)) / clip_threshold)
            p.addcdiv_(s["m"], denom, value=-(lr / bc1 / scale))
    return params


@pytest.mark.parametrize("amsgrad,clip_threshold", [(True, 1.0), (False, 1.0), (True, 0.05)])
def test_stable_adamw_equals_reference_loop(amsgrad, clip_threshold):
    g = torch.Generator().manual_seed(0)
    shapes = [(5, 7), (7,), (3, 2, 4), (1,)]
    init = [torch.randn(s, generator=g) for s in shapes]
    steps = [[torch.randn(s, generator=g) * (1 + 3 * k) for s in shapes] for k in range(6)]
    lrs = [0.0, 1e-2, 3e-2, 2e-2, 1e-2, 5e-3]
    params = [torch.nn.Parameter(p.clone()) for p in init]
    opt = StableAdamW(
        params,
        lr=lrs[0],
        betas=(0.9, 0.999),
        eps=1e-10,
        weight_decay=1e-2,
        amsgrad=amsgrad,
        clip_threshold=clip_threshold,
    )
    for grads, lr in zip(steps, lrs):
        for group in opt.param_groups:
            group["lr"] = lr
        for p, gr in zip(params, grads):
            p.grad = gr.clone()
        opt.step()
    ref = reference_stable_adamw(init, steps, lrs, (0.9, 0.999), 1e-10, 1e-2, amsgrad, clip_threshold)
    for a, b in zip(params, ref):
        torch.testing.assert_close(a.detach(), b, rtol=1e-6, atol=1e-7)


def test_stable_adamw_skips_params_without_grad_and_lr0_moves_nothing():
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))
    opt = StableAdamW([a, b], lr=0.0, weight_decay=1e-4, amsgrad=True)
    a.grad = torch.ones(3)
    opt.step()
    assert torch.equal(a.detach(), torch.ones(3)) and torch.equal(b.detach(), torch.ones(2))
    assert b not in opt.state and int(opt.state[a]["step"]) == 1  # lr 0: moments updated, weights not


def reference_schedule(base, final, total, warmup, start=0.0):
    warm = np.linspace(start, base, warmup)
    iters = np.arange(total - warmup)
    cos = final + 0.5 * (base - final) * (1 + np.cos(np.pi * iters / len(iters)))
    table = np.concatenate((warm, cos))
    return [float(table[i]) if i < total else final for i in range(total + 5)]


def test_warm_cosine_schedule_equals_table_and_resumes():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = StableAdamW([p], lr=1.0)
    sched = WarmCosineSchedule(opt, base_value=7e-5, final_value=7e-6, total_iters=50, warmup_iters=10)
    ref = reference_schedule(7e-5, 7e-6, 50, 10)
    seen = []
    for _ in range(55):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()  # no gradients: a no-op, keeps the step order torch expects
        sched.step()
    assert seen[0] == 0.0  # the first step runs at lr 0
    assert seen == pytest.approx(ref, rel=0, abs=0)
    state = sched.state_dict()
    assert all(not isinstance(v, np.ndarray) for v in state.values())
    opt2 = StableAdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched2 = WarmCosineSchedule(opt2, base_value=1.0, final_value=0.5, total_iters=3, warmup_iters=1)
    sched2.load_state_dict(state)
    assert sched2.lr_at(20) == ref[20]


def test_refiner_schedule_sizing():
    assert refiner_total_iters(UCF, 125) == 10 * 250  # two loaders, about half of whose batches run
    assert refiner_total_iters(UCF, 125, schedule_iters_per_epoch=251) == 2510  # the loaders' exact lengths
    assert refiner_total_iters(XD, 412) == 10 * 412  # one loader
    assert refiner_total_iters(UCF.replace(refiner_schedule="steps"), 125, schedule_iters_per_epoch=251) == 1250
