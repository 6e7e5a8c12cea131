"""A harness that runs the official DSANet / VadCLIP code from a checkout (never committed here).

Used by ``benchmarks/train_step.py`` (timing, ``--check``) and ``scripts/make_official_fixtures.py``
(the golden fixtures of ``tests/test_official_fixtures.py``). ``src`` is the ``src/`` folder of a
checkout of lessiYin/DSANet or nwpu-zxr/VadCLIP; its modules are imported as they are, with
four patches so that they run on a CPU without downloads:

- ``clip.load`` builds the official CLIP (the checkout's ``clip.model.build_model``, which reads
  the architecture from the tensor shapes) from an OpenAI-format state dict given by the caller;
  by default a random-init open_clip ``ViT-B-16-quickgelu`` (torch seed 0);
- ``DistanceAdj.forward`` puts its (unchanged) distance graph on the model's device instead of
  the hard-coded ``'cuda'``;
- ``pkg_resources.packaging`` is provided from ``packaging`` when setuptools is absent;
- DSANet's unused ``ipdb`` import gets an empty module.

Models, losses, datasets, test loops, ground-truth scripts and metrics are the official code. The
lines of the official training loops that are not inside a function (how a batch is assembled,
how the loss terms are summed, the text-separation term) are restated in
:func:`official_loss_parts` and the step functions, with the official constants.

Only one checkout is imported at a time (both define top-level ``model``, ``clip``, ``utils``):
:func:`import_official` unloads the previous one.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import sys
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

# The official loops' constants that live outside functions (src/{ucf,xd}_train.py):
# the text-separation sum is divided by 13 (UCF) or 6 (XD); VadCLIP weights it 0.1 (UCF) or 1e-4 (XD).
TEXT_SEP_DIVISOR = {"ucf": 13, "xd": 6}
VADCLIP_TEXT_SEP_WEIGHT = {"ucf": 1e-1, "xd": 1e-4}

_loaded_src: Path | None = None


def is_dsanet(src: Path) -> bool:
    return (Path(src) / "utils" / "StableAdamW.py").is_file()


def default_clip_state() -> dict[str, torch.Tensor]:
    """A random-init CLIP ViT-B/16 (QuickGELU) state dict in the OpenAI layout (open_clip, torch seed 0)."""
    import open_clip

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return open_clip.create_model("ViT-B-16-quickgelu", pretrained=None).state_dict()


def unload_official() -> None:
    """Forget the modules of the checkout imported last (and its ``sys.path`` entry)."""
    global _loaded_src
    if _loaded_src is None:
        return
    root = str(_loaded_src)
    for name, mod in list(sys.modules.items()):
        f = getattr(mod, "__file__", None) or ""
        if f.startswith(root + "/"):
            del sys.modules[name]
    while root in sys.path:
        sys.path.remove(root)
    _loaded_src = None


def _distance_forward(self: Any, batch_size: int, max_seqlen: int) -> torch.Tensor:
    """The official ``DistanceAdj.forward`` with the graph on ``self.sigma``'s device (not ``'cuda'``)."""
    from scipy.spatial.distance import pdist, squareform

    arith = np.arange(max_seqlen).reshape(-1, 1)
    dist = pdist(arith, metric="cityblock").astype(np.float32)
    dist = torch.from_numpy(squareform(dist)).to(self.sigma.device)
    dist = torch.exp(-dist / torch.exp(torch.tensor(1.0)))
    return torch.unsqueeze(dist, 0).repeat(batch_size, 1, 1)


def import_official(src: Path, clip_state: Callable[[], Mapping[str, torch.Tensor]] | None = None) -> dict[str, Any]:
    """Import a checkout's modules with the harness patches. Returns them by role: ``model``,
    ``tools``, ``dataset``, ``layers``, ``clip``, ``{ucf,xd}_{train,test,option}`` (and
    ``stable`` for DSANet), plus ``method`` (``"dsanet"`` / ``"vadclip"``) and ``src``."""
    global _loaded_src
    src = Path(src).resolve()
    unload_official()
    import packaging.version

    if "pkg_resources" not in sys.modules:  # the official clip.py imports packaging through setuptools
        sys.modules["pkg_resources"] = types.SimpleNamespace(packaging=packaging)  # type: ignore[assignment]
    sys.modules.setdefault("ipdb", types.ModuleType("ipdb"))  # DSANet imports it, never uses it
    sys.path.insert(0, str(src))
    _loaded_src = src
    clip_pkg = importlib.import_module("clip.clip")
    clip_model_mod = importlib.import_module("clip.model")
    layers = importlib.import_module("utils.layers")
    make_state = clip_state or default_clip_state

    def fake_load(name: str, device: Any = "cpu", jit: bool = False, download_root: Any = None) -> tuple[Any, None]:
        state = {k: v.clone() for k, v in make_state().items()}  # build_model deletes some keys
        return clip_model_mod.build_model(state).float().to(device), None

    clip_pkg.load = fake_load
    layers.DistanceAdj.forward = _distance_forward
    mods: dict[str, Any] = {
        "src": src,
        "method": "dsanet" if is_dsanet(src) else "vadclip",
        "clip": clip_pkg,
        "layers": layers,
        "model": importlib.import_module("model"),
        "tools": importlib.import_module("utils.tools"),
        "dataset": importlib.import_module("utils.dataset"),
    }
    for ds in ("ucf", "xd"):
        for part in ("train", "test", "option"):
            mods[f"{ds}_{part}"] = importlib.import_module(f"{ds}_{part}")
    if mods["method"] == "dsanet":
        mods["stable"] = importlib.import_module("utils.StableAdamW")
    return mods


def official_args(mods: dict[str, Any], dataset: str, **overrides: Any) -> Any:
    """The official option file's defaults for ``dataset`` (``ucf`` / ``xd``), some fields changed."""
    args = mods[f"{dataset}_option"].parser.parse_args([])
    for k, v in overrides.items():
        if not hasattr(args, k):
            raise KeyError(f"the official {dataset} options have no {k!r}")
        setattr(args, k, v)
    return args


def build_official(mods: dict[str, Any], args: Any, num_classes: int, device: str = "cpu") -> torch.nn.Module:
    """The official model (``DSANet`` or ``CLIPVAD``) as the official ``__main__`` builds it."""
    common = (
        num_classes,
        args.embed_dim,
        args.visual_length,
        args.visual_width,
        args.visual_head,
        args.visual_layers,
        args.attn_window,
        args.prompt_prefix,
        args.prompt_postfix,
    )
    if mods["method"] == "dsanet":
        return mods["model"].DSANet(*common, args, device).to(device)
    return mods["model"].CLIPVAD(*common, device).to(device)


def text_separation_sum(text: torch.Tensor) -> torch.Tensor:
    """The official loop's ``loss3`` before its division: sum over anomaly classes of |t_0 . t_j| (normalised)."""
    total = torch.zeros(1, device=text.device)
    n0 = text[0] / text[0].norm(dim=-1, keepdim=True)
    for j in range(1, text.shape[0]):
        total += torch.abs(n0 @ (text[j] / text[j].norm(dim=-1, keepdim=True)))
    return total


def official_loss_parts(
    mods: dict[str, Any],
    args: Any,
    dataset: str,
    model: torch.nn.Module,
    prompts: list[str],
    feats: torch.Tensor,
    labels: torch.Tensor,
    lengths: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """One official training forward and every loss term, named as ours, plus ``total`` summed in
    the official order (``src/{ucf,xd}_train.py``, the body of ``train``)."""
    tr, dev = mods[f"{dataset}_train"], feats.device
    sep_div = TEXT_SEP_DIVISOR[dataset]
    if mods["method"] == "dsanet":
        if not args.DNP_use:
            raise ValueError("the fixtures follow the official default DNP_use=True")
        text, logits1, logits2, logits3, logits4, dnp = model(feats, None, prompts, lengths, True)
        p = {
            "cls_mil": tr.CLAS2(logits1, labels, lengths, dev),
            "align_mil": tr.CLASM(logits2, labels, lengths, dev),
            "consistency": tr.consistency_loss_fn(
                logits1=logits1,
                original_features=dnp["original_features"],
                reconstructed_features=dnp["reconstructed_features"],
                lengths=lengths,
            ),
            "gather": dnp["g_loss"],
            "event": tr.CLASM_EVENT(logits3, labels, lengths, dev),
            "background": tr.CLASM_BKG(logits4, labels, lengths, dev),
        }
        p["text_sep"] = text_separation_sum(text) / sep_div
        p["total"] = (
            p["cls_mil"]
            + p["align_mil"] * args.loss2_weight
            + p["text_sep"]
            + p["event"]
            + p["background"]
            + p["consistency"]
            + p["gather"]
        )
        return p
    text, logits1, logits2 = model(feats, None, prompts, lengths)
    p = {"cls_mil": tr.CLAS2(logits1, labels, lengths, dev), "align_mil": tr.CLASM(logits2, labels, lengths, dev)}
    p["text_sep"] = text_separation_sum(text) / sep_div
    p["total"] = p["cls_mil"] + p["align_mil"] + p["text_sep"] * VADCLIP_TEXT_SEP_WEIGHT[dataset]
    return p


class _Recorder:
    """Wraps a function, keeps the arguments of every call, returns what the function returns."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn, self.calls = fn, []

    def __call__(self, *a: Any, **k: Any) -> Any:
        out = self.fn(*a, **k)
        self.calls.append((a, k, out))
        return out


def run_official_test(
    mods: dict[str, Any],
    args: Any,
    dataset: str,
    model: torch.nn.Module,
    loader: Any,
    prompts: list[str],
    gt: np.ndarray,
    gtsegments: Any,
    gtlabels: Any,
    device: str = "cpu",
) -> dict[str, Any]:
    """Run the official ``test()`` (``src/{ucf,xd}_test.py``) and capture what it computes.

    Its AUC/AP calls and its ``getDetectionMAP`` call are wrapped (not changed) to keep their
    inputs: the per-snippet classifier score ``prob1`` and second score ``prob2`` of all videos
    concatenated (float32 values, which the test passes on as float64 repeated 16 times) and the
    per-video class probabilities (repeated 16 times). Returns those (one row per snippet), the
    four AUC/AP values, the mAP at each IoU, and what ``test()`` returned.
    """
    tm = mods[f"{dataset}_test"]
    saved = {name: getattr(tm, name) for name in ("roc_auc_score", "average_precision_score", "dmAP")}
    rec = {name: _Recorder(fn) for name, fn in saved.items()}
    values = {
        "model": model,
        "testdataloader": loader,
        "maxlen": args.visual_length,
        "prompt_text": prompts,
        "gt": gt,
        "gtsegments": gtsegments,
        "gtlabels": gtlabels,
        "DNP_use": getattr(args, "DNP_use", None),
        "device": device,
        "args": args,
    }
    kwargs = {name: values[name] for name in inspect.signature(tm.test).parameters}
    try:
        for name, r in rec.items():
            setattr(tm, name, r)
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            returned = tm.test(**kwargs)
    finally:
        for name, fn in saved.items():
            setattr(tm, name, fn)
    (roc1_args, _, roc1), (roc2_args, _, roc2) = rec["roc_auc_score"].calls
    (_, _, ap1), (_, _, ap2) = rec["average_precision_score"].calls
    ((preds, *_), _, (dmap, iou)) = rec["dmAP"].calls[0]
    scores1 = np.asarray(roc1_args[1])[::16]
    scores2 = np.asarray(roc2_args[1])[::16]
    return {
        "prob1": scores1.astype(np.float32),
        "prob2": scores2.astype(np.float32),
        "class_probs": [np.asarray(p)[::16].astype(np.float32) for p in preds],
        "auc1": float(roc1),
        "ap1": float(ap1),
        "auc2": float(roc2),
        "ap2": float(ap2),
        "map": [float(m) for m in dmap],
        "iou": [float(t) for t in iou],
        "returned": returned,
        "printed": printed.getvalue(),
        "exact_float32": bool(np.array_equal(scores1.astype(np.float32).astype(np.float64), scores1)),
    }


# ---------------------------------------------------------------- helpers of benchmarks/train_step.py


def import_official_vadclip(src: Path) -> dict[str, Any]:
    return import_official(src)


def import_official_dsanet(src: Path, dataset: str = "ucf") -> dict[str, Any]:
    mods = import_official(src)
    mods["dataset"] = dataset
    mods["train"] = mods[f"{dataset}_train"]
    mods["option"] = mods[f"{dataset}_option"]
    return mods


def official_vadclip(src: Path, preset: Any, num_classes: int, device: str) -> tuple[Any, dict[str, Any]]:
    mods = import_official_vadclip(src)
    mods["train"] = mods["ucf_train"]
    torch.manual_seed(preset.seed)
    model = (
        mods["model"]
        .CLIPVAD(
            num_classes,
            preset.embed_dim,
            preset.visual_length,
            preset.visual_width,
            preset.visual_heads,
            preset.visual_layers,
            preset.attn_window,
            preset.prompt_prefix,
            preset.prompt_postfix,
            device,
        )
        .to(device)
    )
    return model, mods


def official_vadclip_step(
    model: Any, mods: dict[str, Any], prompts: list[str], batch: Any, preset: Any
) -> torch.Tensor:
    dev = batch.feats.device
    text, logits1, logits2 = model(batch.feats, None, prompts, batch.lengths)
    l1 = mods["train"].CLAS2(logits1, batch.labels, batch.lengths, dev)
    l2 = mods["train"].CLASM(logits2, batch.labels, batch.lengths, dev)
    return l1 + l2 + text_separation_sum(text) / preset.text_sep_divisor * preset.text_sep_weight


def official_test_scores(
    model: Any, mods: dict[str, Any], prompts: list[str], feats: np.ndarray, length: int, device: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The official VadCLIP ``test()`` body for one video: (prob1, prob2, softmax(logits2))."""
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


def official_dsanet(src: Path, preset: Any, num_classes: int, device: str) -> tuple[Any, dict[str, Any]]:
    """The official DSANet with the option file of ``preset``'s dataset (UCF for ``tiny``), the
    architecture fields taken from ``preset``."""
    mods = import_official_dsanet(src, preset.name if preset.name in TEXT_SEP_DIVISOR else "ucf")
    args = mods["option"].parser.parse_args([])
    for ours, theirs in (
        ("visual_layers", "visual_layers"),
        ("attn_window", "attn_window"),
        ("decoder_depth", "decoder_depth"),
        ("normal_selection_ratio", "normal_selection_ratio"),
        ("num_prototypes", "num_prototypes"),
        ("text_adapt_until", "text_adapt_until"),
    ):
        if hasattr(preset, ours):
            setattr(args, theirs, getattr(preset, ours))
    torch.manual_seed(preset.seed)
    model = (
        mods["model"]
        .DSANet(
            num_classes,
            args.embed_dim,
            args.visual_length,
            args.visual_width,
            args.visual_head,
            args.visual_layers,
            args.attn_window,
            args.prompt_prefix,
            args.prompt_postfix,
            args,
            device,
        )
        .to(device)
    )
    mods["args"] = args
    return model, mods


def official_dsanet_step(model: Any, mods: dict[str, Any], prompts: list[str], batch: Any, preset: Any) -> torch.Tensor:
    """The body of the official ``train`` loop for one batch (forward and all losses)."""
    parts = official_loss_parts(
        mods, mods["args"], mods["dataset"], model, prompts, batch.feats, batch.labels, batch.lengths
    )
    return parts["total"]


def official_dsanet_optimizers(model: Any, mods: dict[str, Any], iters_per_epoch: int) -> tuple[list[Any], list[Any]]:
    """The official optimisers: AdamW (main) + StableAdamW with the warm-up cosine schedule (refiner)."""
    args, tr = mods["args"], mods["train"]
    refiner = [p for n, p in model.named_parameters() if p.requires_grad and "video_anomaly_refiner" in n]
    main = [p for n, p in model.named_parameters() if p.requires_grad and "video_anomaly_refiner" not in n]
    opt_r = mods["stable"].StableAdamW(
        [{"params": refiner}], lr=args.lr, betas=(0.9, 0.999), weight_decay=1e-4, amsgrad=True, eps=1e-10
    )
    sched = tr.WarmCosineScheduler(
        opt_r,
        base_value=args.lr,
        final_value=args.lr * 0.1,
        total_iters=args.max_epoch * 2 * iters_per_epoch,
        warmup_iters=100,
    )
    opt_m = torch.optim.AdamW([{"params": main}], lr=args.lr)
    return [opt_m, opt_r], [sched]
