"""Training-step time: our vectorised step vs the official code's step, same batch, same device.

    python benchmarks/train_step.py --method vadclip --preset ucf --official-src /tmp/official/vadclip/src
    python benchmarks/train_step.py --method dsanet --preset ucf --official-src /tmp/official/dsanet/src
    python benchmarks/train_step.py --method vadclip --preset ucf            # vs the loop reference

With ``--official-src DIR`` (the ``src/`` folder of a checkout of nwpu-zxr/VadCLIP or
lessiYin/DSANet, never committed here) the official model is imported from there and run side by
side with ours, through ``benchmarks/official_harness.py`` (its patches make it run without
downloads or a GPU: ``clip.load`` builds the CLIP ViT-B/16 architecture from a random-init
open_clip state dict with the official ``build_model``, ``DistanceAdj`` puts its unchanged graph
on the model's device instead of ``'cuda'``, ``pkg_resources.packaging`` comes from
``packaging`` when setuptools is absent). Ours is then loaded from the official model's state
dict (``load_official_checkpoint``), and the script first checks that both give the same losses
and test scores on the batch (``--check``).

Without it, the reference is our model with the straightforward per-video loops of the
official losses and similarity graph (kept below), i.e. what the official step computes.
Each step: forward, all losses, backward, every optimiser step (and per-iteration schedulers).
Reference and ours alternate step by step; wall and process CPU time are both reported (CPU
time is the steadier figure on a shared machine). Prints a markdown row.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dsan_toolkit.clip import TINY_MODEL, create_clip
from dsan_toolkit.manifest.builtin import load_builtin_manifest
from dsan_toolkit.models import TrainBatch, get_method
from dsan_toolkit.models.common import encoder as enc_mod

sys.path.insert(0, str(Path(__file__).resolve().parent))
from official_harness import (  # noqa: E402 - the harness lives next to this script
    official_dsanet,
    official_dsanet_optimizers,
    official_dsanet_step,
    official_test_scores,
    official_vadclip,
    official_vadclip_step,
)

# ---------------------------------------------------------------- loop reference (official semantics)


def loop_cls_mil(logits1: torch.Tensor, labels: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    target = 1 - labels[:, 0]
    probs = torch.sigmoid(logits1).reshape(logits1.shape[0], logits1.shape[1])
    vals = torch.zeros(0, device=logits1.device)
    for i in range(probs.shape[0]):
        top, _ = torch.topk(probs[i, : lengths[i]], k=int(lengths[i] / 16 + 1))
        vals = torch.cat([vals, top.mean().view(1)])
    return F.binary_cross_entropy(vals, target)


def loop_align_mil(logits2: torch.Tensor, labels: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    target = labels / labels.sum(dim=1, keepdim=True)
    vals = torch.zeros(0, device=logits2.device)
    for i in range(logits2.shape[0]):
        top, _ = torch.topk(logits2[i, : lengths[i]], k=int(lengths[i] / 16 + 1), dim=0)
        vals = torch.cat([vals, top.mean(0, keepdim=True)])
    return -torch.mean(torch.sum(target * F.log_softmax(vals, dim=1), dim=1))


def loop_text_sep(text: torch.Tensor) -> torch.Tensor:
    total = torch.zeros(1, device=text.device)
    n0 = text[0] / text[0].norm()
    for j in range(1, text.shape[0]):
        total = total + torch.abs(n0 @ (text[j] / text[j].norm()))
    return total


def loop_similarity_adjacency(x: torch.Tensor, lengths: Any, threshold: float = 0.7, cut: str = "zero") -> torch.Tensor:
    sim = x.matmul(x.transpose(1, 2))
    norms = x.norm(p=2, dim=2, keepdim=True)
    sim = sim / (norms.matmul(norms.transpose(1, 2)) + 1e-20)
    out = torch.zeros_like(sim)
    for i in range(len(lengths)):
        n = int(lengths[i])
        out[i, :n, :n] = torch.softmax(F.threshold(sim[i, :n, :n], threshold, 0), dim=1)
    return out


def reference_vadclip_step(model: Any, batch: TrainBatch, preset: Any) -> torch.Tensor:
    """Our network with the official per-video loops (graph and losses)."""
    saved = enc_mod.similarity_adjacency
    enc_mod.similarity_adjacency = loop_similarity_adjacency
    try:
        out = model(batch.feats, batch.lengths)
    finally:
        enc_mod.similarity_adjacency = saved
    l1 = loop_cls_mil(out.logits1, batch.labels, batch.lengths)
    l2 = loop_align_mil(out.logits2, batch.labels, batch.lengths)
    div = preset.text_sep_divisor or (out.text_features.shape[0] - 1)
    l3 = loop_text_sep(out.text_features) / div * preset.text_sep_weight
    return l1 + l2 + l3


# ---------------------------------------------------------------- timing


def make_batch(per_half: int, length: int, dim: int, num_classes: int, seed: int = 0) -> TrainBatch:
    g = torch.Generator().manual_seed(seed)
    b = 2 * per_half
    lengths = torch.randint(length // 4, length + 1, (b,), generator=g)
    lengths[0] = length
    feats = torch.randn(b, length, dim, generator=g)
    feats = feats * (torch.arange(length).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(-1)
    labels = torch.zeros(b, num_classes)
    labels[:per_half, 0] = 1
    labels[torch.arange(per_half, b), 1 + torch.arange(per_half) % (num_classes - 1)] = 1
    return TrainBatch(feats=feats, lengths=lengths, labels=labels, anomalous=labels[:, 0] == 0)


class Stepper:
    """One training step: forward + losses, backward, every optimiser, per-iteration schedulers."""

    def __init__(self, loss_fn: Callable[[], torch.Tensor], optimizers: list[Any], iter_schedulers: list[Any]) -> None:
        self.loss_fn, self.optimizers, self.iter_schedulers = loss_fn, optimizers, iter_schedulers

    cpu_times: list[float]

    def __call__(self) -> float:
        if not hasattr(self, "cpu_times"):
            self.cpu_times = []
        c0 = time.process_time()
        t0 = time.perf_counter()
        loss = self.loss_fn()
        for o in self.optimizers:
            o.zero_grad()
        loss.sum().backward()
        for o in self.optimizers:
            o.step()
        for s in self.iter_schedulers:
            s.step()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.cpu_times.append(time.process_time() - c0)
        return time.perf_counter() - t0


def our_stepper(method: Any, model: Any, batch: TrainBatch, preset: Any) -> Stepper:
    specs = method.optimizers(model, preset, 100, schedule_iters_per_epoch=200)  # the official two loaders
    return Stepper(
        lambda: method.loss(model, batch, preset)[0],
        [s.optimizer for s in specs],
        [s.scheduler for s in specs if s.step_on == "iter" and s.scheduler is not None],
    )


def interleaved(ref: Stepper, ours: Stepper, repeats: int, warmup: int) -> tuple[list[float], list[float]]:
    """Alternate reference and our steps so that machine load affects both alike."""
    t_ref, t_our = [], []
    for i in range(warmup + repeats):
        a, b = ref(), ours()
        if i >= warmup:
            t_ref.append(a)
            t_our.append(b)
    return t_ref, t_our


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="vadclip", choices=["vadclip", "dsanet"])
    ap.add_argument("--preset", default="ucf")
    ap.add_argument("--per-half", type=int, default=8, help="normal + anomalous videos per step (each)")
    ap.add_argument("--repeats", type=int, default=5, help="timed steps (0: only --check)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--official-src", type=Path, default=None, help="src/ of a VadCLIP (or DSANet) checkout")
    ap.add_argument("--check", action="store_true", help="also compare losses and test scores with the official code")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    method = get_method(args.method)
    preset = method.get_preset(args.preset)
    dataset = args.preset if args.preset in ("ucf", "xd") else "ucf"
    classes = load_builtin_manifest(dataset).info.classes
    prompts = [c.prompt for c in classes]
    batch = make_batch(args.per_half, preset.visual_length, preset.feature_dim, len(classes)).to(args.device)

    if args.official_src is not None:
        from dsan_toolkit.models.official import load_official_checkpoint

        build, step = (
            (official_vadclip, official_vadclip_step)
            if args.method == "vadclip"
            else (official_dsanet, official_dsanet_step)
        )
        off_model, mods = build(args.official_src, preset, len(classes), args.device)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "official.pth"
            torch.save(off_model.state_dict(), path)
            ours = load_official_checkpoint(
                args.method, path, preset=args.preset, classes=classes, device=args.device
            ).model
        if args.check:
            run_check(ours, off_model, mods, method, preset, prompts, batch, args.device, step, args.method)
        ref_name = "official code"
        off_model.train()
        if args.method == "vadclip":
            opts, scheds = [torch.optim.AdamW(off_model.parameters(), lr=preset.lr)], []
        else:
            opts, scheds = official_dsanet_optimizers(off_model, mods, iters_per_epoch=100)
        ref = Stepper(lambda: step(off_model, mods, prompts, batch, preset), opts, scheds)
    else:
        if args.method != "vadclip":
            raise SystemExit("the loop reference covers vadclip; pass --official-src for dsanet")
        arch = TINY_MODEL if args.preset == "tiny" else "ViT-B-16-quickgelu"
        ours = method.build(
            preset, classes, feature_dim=preset.feature_dim, clip=create_clip(arch, pretrained=None), device=args.device
        )
        ref_name = "loop reference"
        ref_model = method.build(
            preset, classes, feature_dim=preset.feature_dim, clip=create_clip(arch, pretrained=None), device=args.device
        )
        ref_model.load_state_dict(ours.state_dict())
        ref_model.train()
        ref = Stepper(
            lambda: reference_vadclip_step(ref_model, batch, preset),
            [torch.optim.AdamW([p for p in ref_model.parameters() if p.requires_grad], lr=preset.lr)],
            [],
        )
    if args.repeats <= 0:  # --check only
        return
    ours.train()
    our = our_stepper(method, ours, batch, preset)
    t_ref, t_our = interleaved(ref, our, args.repeats, args.warmup)
    m_ref, m_our = statistics.median(t_ref), statistics.median(t_our)
    c_ref = statistics.median(ref.cpu_times[args.warmup :])
    c_our = statistics.median(our.cpu_times[args.warmup :])
    b = batch.batch_size
    print(
        f"threads={args.threads} repeats={args.repeats} (median), wall per step ref={[f'{t:.2f}' for t in t_ref]} ours={[f'{t:.2f}' for t in t_our]}"
    )
    print(
        "| method | preset | device | batch | reference | ref step wall (s) | ours step wall (s) | speed-up wall | ref CPU s | ours CPU s | speed-up CPU | ours samples/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.method} | {args.preset} | {args.device} | {b} | {ref_name} | {m_ref:.2f} | {m_our:.2f} | {m_ref / m_our:.2f}x "
        f"| {c_ref:.2f} | {c_our:.2f} | {c_ref / c_our:.2f}x | {b / m_our:.2f} |"
    )


def run_check(
    ours: Any,
    off_model: Any,
    mods: dict[str, Any],
    method: Any,
    preset: Any,
    prompts: list[str],
    batch: TrainBatch,
    device: str,
    official_step: Callable[..., torch.Tensor],
    name: str,
) -> None:
    from dsan_toolkit.models import predict_video

    ours.train()
    off_model.train()
    l_ours = float(method.loss(ours, batch, preset)[0].detach())
    l_off = float(official_step(off_model, mods, prompts, batch, preset).detach().sum())
    print(f"check: loss ours {l_ours:.7f} official {l_off:.7f} |diff| {abs(l_ours - l_off):.2e}")
    ours.eval()
    off_model.eval()
    rng = np.random.default_rng(0)
    worst = [0.0, 0.0, 0.0]
    for t in (17, 255, 256, 300, 512, 700):
        feats = rng.standard_normal((t, preset.feature_dim)).astype(np.float32)
        pred = predict_video(method, ours, feats)
        if name == "vadclip":
            p1, p2, pc = official_test_scores(off_model, mods, prompts, feats, preset.visual_length, device)
            pairs = ((pred.scores, p1), (pred.align_scores, p2), (pred.class_probs, pc))
        else:  # classifier scores of the official forward (DSANet's refined outputs: see its own checks)
            chunks, lengths = split_chunks_np(feats, preset.visual_length)
            with torch.no_grad():
                out = off_model(torch.from_numpy(chunks).to(device), None, prompts, torch.from_numpy(lengths), False)
            p1 = torch.sigmoid(out[1].reshape(-1))[:t].cpu().numpy()
            pairs = ((pred.scores, p1),)
        for i, (a, b_) in enumerate(pairs):
            worst[i] = max(worst[i], float(np.abs(a.cpu().numpy() - b_).max()))
    print(f"check: max |diff| scores {worst[0]:.2e} align {worst[1]:.2e} class_probs {worst[2]:.2e} (T in 17..700)")


def split_chunks_np(feats: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    from dsan_toolkit.models import split_chunks

    return split_chunks(feats, length)  # type: ignore[return-value]


if __name__ == "__main__":
    main()
