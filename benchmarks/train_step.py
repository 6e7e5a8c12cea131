"""Training-step time: our vectorised step vs the official code's step, same batch, same device.

    python benchmarks/train_step.py --method vadclip --preset ucf --official-src /tmp/official/vadclip/src
    python benchmarks/train_step.py --method vadclip --preset ucf            # vs the loop reference

With ``--official-src DIR`` (the ``src/`` folder of a checkout of nwpu-zxr/VadCLIP, never
committed here) the official ``CLIPVAD`` is imported from there and run side by side with ours;
three harness patches make it run without downloads or a GPU: ``clip.load`` builds the CLIP
ViT-B/16 architecture from a random-init open_clip state dict (the official ``build_model``),
and ``DistanceAdj`` puts its (unchanged) graph on the model's device instead of ``'cuda'``;
``pkg_resources.packaging`` is provided from ``packaging`` when setuptools is absent.
Ours is then loaded from the official model's state dict (``load_official_checkpoint``), and the
script first checks that both give the same losses and test scores on the batch (``--check``).

Without it, the reference is our model with the straightforward per-video loops of the
official losses and similarity graph (kept below), i.e. what the official step computes.
Each step: forward, all losses, backward, optimiser step. Prints a markdown row.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from dsan_toolkit.clip import TINY_MODEL, create_clip
from dsan_toolkit.datasets.registry import load_builtin_manifest
from dsan_toolkit.models import TrainBatch, get_method
from dsan_toolkit.models.common import encoder as enc_mod

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


# ---------------------------------------------------------------- the official code, imported from a checkout


def import_official_vadclip(src: Path) -> dict[str, Any]:
    """Import the official modules from ``src`` with the two harness patches (see the module docstring)."""
    import open_clip

    import types

    import packaging.version

    if "pkg_resources" not in sys.modules:  # the official clip.py imports packaging through setuptools
        sys.modules["pkg_resources"] = types.SimpleNamespace(packaging=packaging)  # type: ignore[assignment]
    sys.path.insert(0, str(src))
    clip_pkg = importlib.import_module("clip.clip")
    clip_model_mod = importlib.import_module("clip.model")
    layers = importlib.import_module("utils.layers")

    def fake_load(name: str, device: Any = "cpu", jit: bool = False, download_root: Any = None) -> tuple[Any, None]:
        torch.manual_seed(0)
        sd = open_clip.create_model("ViT-B-16-quickgelu", pretrained=None).state_dict()
        model = clip_model_mod.build_model(sd).float().to(device)
        return model, None

    clip_pkg.load = fake_load

    def distance_forward(self: Any, batch_size: int, max_seqlen: int) -> torch.Tensor:
        from scipy.spatial.distance import pdist, squareform

        arith = np.arange(max_seqlen).reshape(-1, 1)
        dist = pdist(arith, metric="cityblock").astype(np.float32)
        dist = torch.from_numpy(squareform(dist)).to(self.sigma.device)
        dist = torch.exp(-dist / torch.exp(torch.tensor(1.0)))
        return torch.unsqueeze(dist, 0).repeat(batch_size, 1, 1)

    layers.DistanceAdj.forward = distance_forward
    model_mod = importlib.import_module("model")
    train_mod = importlib.import_module("ucf_train")
    tools = importlib.import_module("utils.tools")
    return {"model": model_mod, "train": train_mod, "tools": tools}


def official_vadclip(src: Path, preset: Any, num_classes: int, device: str) -> tuple[Any, dict[str, Any]]:
    mods = import_official_vadclip(src)
    torch.manual_seed(preset.seed)
    model = mods["model"].CLIPVAD(
        num_classes, preset.embed_dim, preset.visual_length, preset.visual_width, preset.visual_heads,
        preset.visual_layers, preset.attn_window, preset.prompt_prefix, preset.prompt_postfix, device,
    ).to(device)
    return model, mods


def official_vadclip_step(model: Any, mods: dict[str, Any], prompts: list[str], batch: TrainBatch, preset: Any) -> torch.Tensor:
    dev = batch.feats.device
    text, logits1, logits2 = model(batch.feats, None, prompts, batch.lengths)
    l1 = mods["train"].CLAS2(logits1, batch.labels, batch.lengths, dev)
    l2 = mods["train"].CLASM(logits2, batch.labels, batch.lengths, dev)
    l3 = torch.zeros(1, device=dev)
    n0 = text[0] / text[0].norm(dim=-1, keepdim=True)
    for j in range(1, text.shape[0]):
        l3 = l3 + torch.abs(n0 @ (text[j] / text[j].norm(dim=-1, keepdim=True)))
    return l1 + l2 + l3 / preset.text_sep_divisor * preset.text_sep_weight


def official_test_scores(model: Any, mods: dict[str, Any], prompts: list[str], feats: np.ndarray, length: int, device: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The official ``test()`` body for one video: (prob1, prob2, softmax(logits2))."""
    visual, t = mods["tools"].process_split(feats, length)
    visual = torch.tensor(visual)
    if t < length:
        visual = visual.unsqueeze(0)
    lengths = torch.zeros(int(t / length) + 1)
    rest = t
    for j in range(int(t / length) + 1):
        if j == 0 and rest < length:
            lengths[j] = rest
        elif j == 0 and rest > length:
            lengths[j] = length
            rest -= length
        elif rest > length:
            lengths[j] = length
            rest -= length
        else:
            lengths[j] = rest
    lengths = lengths.to(int)
    with torch.no_grad():
        _, logits1, logits2 = model(visual.to(device), None, prompts, lengths)
    logits1 = logits1.reshape(-1, logits1.shape[2])[:t]
    logits2 = logits2.reshape(-1, logits2.shape[2])[:t]
    probs = logits2.softmax(dim=-1)
    return torch.sigmoid(logits1.squeeze(-1)).cpu().numpy(), (1 - probs[:, 0]).cpu().numpy(), probs.cpu().numpy()


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


def time_steps(step: Callable[[], torch.Tensor], params: list[torch.nn.Parameter], lr: float, repeats: int, warmup: int) -> list[float]:
    opt = torch.optim.AdamW([p for p in params if p.requires_grad], lr=lr)
    times = []
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        loss = step()
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="vadclip", choices=["vadclip"])
    ap.add_argument("--preset", default="ucf")
    ap.add_argument("--per-half", type=int, default=8, help="normal + anomalous videos per step (each)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--official-src", type=Path, default=None, help="src/ of a VadCLIP checkout")
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

        off_model, mods = official_vadclip(args.official_src, preset, len(classes), args.device)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "official.pth"
            torch.save(off_model.state_dict(), path)
            ours = load_official_checkpoint(args.method, path, preset=args.preset, classes=classes, device=args.device).model
        if args.check:
            run_check(ours, off_model, mods, method, preset, prompts, batch, args.device)
        ref_name = "official code"
        ref_step = lambda: official_vadclip_step(off_model, mods, prompts, batch, preset)  # noqa: E731
        ref_params = list(off_model.parameters())
    else:
        ours = method.build(preset, classes, feature_dim=preset.feature_dim, clip=create_clip(TINY_MODEL if args.preset == "tiny" else "ViT-B-16", pretrained=None), device=args.device)
        ref_name = "loop reference"
        ref_step = lambda: reference_vadclip_step(ours, batch, preset)  # noqa: E731
        ref_params = list(ours.parameters())
    ours.train()
    our_step = lambda: method.loss(ours, batch, preset)[0]  # noqa: E731
    t_ref = time_steps(ref_step, ref_params, preset.lr, args.repeats, args.warmup)
    t_our = time_steps(our_step, list(ours.parameters()), preset.lr, args.repeats, args.warmup)
    m_ref, m_our = statistics.median(t_ref), statistics.median(t_our)
    b = batch.batch_size
    print("| method | preset | device | batch | reference | ref step (s) | ours step (s) | speed-up | ours samples/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.method} | {args.preset} | {args.device} | {b} | {ref_name} | {m_ref:.3f} | {m_our:.3f} | {m_ref / m_our:.2f}x | {b / m_our:.1f} |")


def run_check(ours: Any, off_model: Any, mods: dict[str, Any], method: Any, preset: Any, prompts: list[str], batch: TrainBatch, device: str) -> None:
    from dsan_toolkit.models import predict_video

    ours.train()
    off_model.train()
    l_ours = method.loss(ours, batch, preset)[0].detach()
    l_off = official_vadclip_step(off_model, mods, prompts, batch, preset).detach()
    print(f"check: loss ours {float(l_ours):.7f} official {float(l_off):.7f} |diff| {abs(float(l_ours) - float(l_off)):.2e}")
    ours.eval()
    off_model.eval()
    rng = np.random.default_rng(0)
    worst = [0.0, 0.0, 0.0]
    for t in (17, 255, 256, 300, 512, 700):
        feats = rng.standard_normal((t, preset.feature_dim)).astype(np.float32)
        p1, p2, pc = official_test_scores(off_model, mods, prompts, feats, preset.visual_length, device)
        pred = predict_video(method, ours, feats)
        for i, (a, b_) in enumerate(((pred.scores, p1), (pred.align_scores, p2), (pred.class_probs, pc))):
            worst[i] = max(worst[i], float(np.abs(a.cpu().numpy() - b_).max()))
    print(f"check: max |diff| scores {worst[0]:.2e} align {worst[1]:.2e} class_probs {worst[2]:.2e} (T in 17..700)")


if __name__ == "__main__":
    main()
