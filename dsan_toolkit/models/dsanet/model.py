"""The DSANet network (lessiYin/DSANet ``src/model.py``), re-implemented faithfully.

``forward(feats (B, L, D), lengths (B,))`` -> :class:`DSANetOutput`:

1. ``X = encoder(feats, lengths)``: the VadCLIP-style temporal encoder shared with VadCLIP
   (:class:`~dsan_toolkit.models.common.TemporalGraphEncoder`);
2. ``logits1 = classifier(X + mlp2(X))`` (B, L, 1);
3. class text features ``t`` (C, E): the frozen CLIP text tower with the **text adapter**
   (after each of the first ``text_adapt_until`` text blocks a bias-free linear + LeakyReLU
   output, rescaled to the token's norm, is mixed in with weight ``t_w``), ``ln_final``, the EOT
   row, then a bias-free linear + LeakyReLU (CLIP's ``text_projection`` is skipped), L2-normalised;
4. **visual-prompted text features** ``t + norm(logits1^T X)`` then ``+ mlp1`` and the alignment
   logits ``logits2 = cos(X, .) / 0.07`` (B, L, C);
5. **decoupled event/background alignment**: softmax-like pooling weights
   ``exp(10 p) - 1`` (events) and ``exp(10 (1 - p)) - 1`` (background), ``p = sigmoid(logits1)``,
   L1-normalised over all positions, pool ``X`` into one event and one background feature per
   video, whose cosine similarities with the plain ``t`` / 0.07 give ``logits3``, ``logits4`` (B, 1, C);
6. the **self-guided normality modelling branch** (:class:`NormalityBranch`, official ``SGNM``):
   the ``int(L * 0.8)`` snippets with the lowest classifier scores are the "normal" ones; learnable
   normal prototypes attend to them (aggregation blocks) giving per-video normal patterns
   (gather loss: mean distance of each selected snippet to its closest pattern); ``X`` goes
   through a bottleneck MLP and prototype blocks (cosine attention to the patterns, ReLU, no
   softmax) that reconstruct it from normal patterns only.

At test time, the **hierarchical score refinement** (:func:`refine_scores_hierarchical`) turns
``logits1`` and ``logits2`` into class probabilities: ``P(normal) = 1 - sigmoid(logits1 / temp)``
and the abnormal mass split by ``softmax(logits2 / temp)`` over the anomaly classes.

Parameter names are the official ones (under ``encoder.`` for the shared encoder, ``text_encoder.``
for the CLIP text tower); :func:`official_key_map` maps the authors' checkpoints (793 keys with
UCF settings: ``clipmodel.*`` and ``clip_adapter.clipmodel.*`` are the same CLIP) strictly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.init import trunc_normal_

from ...errors import InputError
from ..common import (
    ClipTextTower,
    alignment_logits,
    classifier_logits,
    clip_mlp,
    init_core,
    length_mask,
    visual_prompted_text,
)
from ..official import ENCODER_RULES, KeyMap, clip_text_rules, register_keymap
from .presets import DSANetPreset

# --------------------------------------------------------------------------- outputs


@dataclass
class DSANetOutput:
    text_features: Tensor  # (C, E) class text features (adapter, normalised), before the visual prompt
    logits1: Tensor  # (B, L, 1) classifier logits
    logits2: Tensor  # (B, L, C) alignment logits (visual-prompted text)
    visual: Tensor  # (B, L, W) encoded snippets
    logits3: Tensor | None = None  # (B, 1, C) event-pooled feature vs text
    logits4: Tensor | None = None  # (B, 1, C) background-pooled feature vs text
    reconstructed: Tensor | None = None  # (B, L, W) normality-branch reconstruction of ``visual``
    gather_loss: Tensor | None = None  # scalar


# --------------------------------------------------------------------------- text adapter


class _AdapterLayer(nn.Module):
    """Bias-free linear + LeakyReLU under the official names (``fc.0.weight``)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(c_in, c_out, bias=False), nn.LeakyReLU())

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x)


class TextAdapter(nn.Module):
    """The official ``CLIP_Adapter`` minus its CLIP reference: ``text_adapter`` holds
    ``text_adapt_until`` per-layer adapters (text width -> text width) and the final projection
    (text width -> visual width), all Xavier-initialised."""

    def __init__(self, text_width: int, out_width: int, adapt_until: int, weight: float) -> None:
        super().__init__()
        self.adapt_until, self.weight = adapt_until, weight
        layers = [_AdapterLayer(text_width, text_width) for _ in range(adapt_until)]
        self.text_adapter = nn.ModuleList(layers + [_AdapterLayer(text_width, out_width)])
        for p in self.text_adapter.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def mix(self, i: int, x: Tensor) -> Tensor:
        """After text block ``i`` (< adapt_until): rescale the adapter output to the token norm and mix."""
        a = self.text_adapter[i](x)
        a = a * x.norm(dim=-1, keepdim=True) / (a.norm(dim=-1, keepdim=True) + 1e-6)
        return self.weight * a + (1 - self.weight) * x

    def project(self, x: Tensor) -> Tensor:
        return self.text_adapter[-1](x)


def encode_class_text(
    tower: ClipTextTower,
    adapter: TextAdapter | None,
    tokens: Tensor,
    context: int,
) -> Tensor:
    """(N, E) text features of ``tokens`` (N, 77) through the tower, with the adapter when given.

    Only the first ``context`` positions are run: the causal mask makes the EOT row depend on
    earlier tokens only, so cutting the padding after the longest EOT is exact (and ~15x less
    work for one-word prompts). ``adapter=None`` is the plain CLIP ``encode_text`` (with
    ``text_projection``), the official ``adapt_text=False`` path.
    """
    tokens = tokens[:, :context]
    eot = tokens.argmax(dim=-1)
    x = tower.token_embedding(tokens) + tower.positional_embedding[:context].to(tower.token_embedding.weight.dtype)
    mask = tower.attn_mask[:context, :context].to(device=x.device, dtype=x.dtype)
    batch_first = getattr(tower.transformer, "batch_first", True)
    h = x if batch_first else x.transpose(0, 1)
    for i, blk in enumerate(tower.transformer.resblocks):
        h = blk(h, attn_mask=mask)
        if adapter is not None and i < adapter.adapt_until:
            h = adapter.mix(i, h)
    h = h if batch_first else h.transpose(0, 1)
    if adapter is None:
        return tower.finish(h, eot, project=True)
    return adapter.project(tower.finish(h, eot, project=False))


# --------------------------------------------------------------------------- normality branch


class _Mlp(nn.Module):
    """``fc1`` -> exact GELU -> ``fc2`` (the timm-style MLP of the official prototype blocks)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


def _heads(x: Tensor, heads: int) -> Tensor:
    """(B, N, C) -> (B, H, N, C/H)."""
    b, n, c = x.shape
    return x.view(b, n, heads, c // heads).transpose(1, 2)


def _merge(x: Tensor) -> Tensor:
    """(B, H, N, d) -> (B, N, H*d)."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


class _TakeRows(torch.autograd.Function):
    """``x.index_select(0, index)`` for unique ``index``, whose gradient is a plain
    ``index_copy`` into zeros (autograd's generic scatter-add is several times slower on CPU)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, index: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(index)
        ctx.rows = x.shape[0]
        return x.index_select(0, index)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (index,) = ctx.saved_tensors
        return grad.new_zeros((ctx.rows, *grad.shape[1:])).index_copy_(0, index, grad), None


def take_rows(x: Tensor, index: Tensor) -> Tensor:
    """Rows ``index`` (unique) of ``x``."""
    return _TakeRows.apply(x, index)


def put_rows(rows: Tensor, index: Tensor, total: int) -> Tensor:
    """A (total, ...) zero tensor with ``rows`` at ``index`` (unique)."""
    return rows.new_zeros((total, *rows.shape[1:])).index_copy(0, index, rows)


class AggregationAttention(nn.Module):
    """Cross-attention of queries ``x`` to ``y`` (scaled dot product, softmax); official names
    ``q``, ``kv``, ``proj``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.num_heads = heads
        self.q = nn.Linear(dim, dim, bias=True)
        self.kv = nn.Linear(dim, dim * 2, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, y: Tensor, key_padding: Tensor | None = None) -> Tensor:
        q = _heads(self.q(x), self.num_heads)
        k, v = (_heads(t, self.num_heads) for t in self.kv(y).chunk(2, dim=-1))
        mask = None if key_padding is None else (~key_padding)[:, None, None, :]
        return self.proj(_merge(F.scaled_dot_product_attention(q, k, v, attn_mask=mask)))


class PrototypeAttention(nn.Module):
    """Cosine attention of snippets to prototypes: ``relu(s_h * cos(q, k)) @ v`` (no softmax),
    ``s_h`` the learnable per-head ``learn_scale``; official names ``q``, ``kv``, ``proj``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.num_heads = heads
        self.learn_scale = nn.Parameter(torch.ones(heads, 1, 1))
        self.q = nn.Linear(dim, dim, bias=True)
        self.kv = nn.Linear(dim, dim * 2, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, prototypes: Tensor) -> Tensor:
        q = F.normalize(_heads(self.q(x), self.num_heads), dim=-1)
        return self.proj(_merge(self._mix(q, prototypes)))

    def _mix(self, q: Tensor, prototypes: Tensor) -> Tensor:
        """(B, H, N, d) normalised queries -> (B, H, N, d) ``relu(s * q.k) @ v``."""
        k, v = (_heads(t, self.num_heads) for t in self.kv(prototypes).chunk(2, dim=-1))
        attn = torch.relu((q @ F.normalize(k, dim=-1).transpose(-2, -1)) * self.learn_scale)
        return attn @ v

    def forward_packed(self, x: Tensor, prototypes: Tensor, index: Tensor, shape: tuple[int, int]) -> Tensor:
        """The same on the valid tokens only: ``x`` (V, C) are the rows ``index`` of the (B*N, C)
        grid ``shape = (B, N)``. The linear maps run on the V rows; the cheap per-video attention
        to the prototypes runs on the grid, with zero queries (hence zero outputs) at padding."""
        b, n = shape
        c = x.shape[-1]
        h = self.num_heads
        q = F.normalize(self.q(x).view(-1, h, c // h), dim=-1).reshape(-1, c)
        grid = put_rows(q, index, b * n).view(b, n, c)
        mixed = take_rows(_merge(self._mix(_heads(grid, h), prototypes)).reshape(b * n, c), index)
        return self.proj(mixed)


class AggregationBlock(nn.Module):
    """Pre-LN cross-attention block: ``x + attn(ln(x), ln(y))``, ``+ mlp(ln2(.))`` (one LayerNorm
    ``norm1`` for both inputs, as the official ``Aggregation_Block``)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = AggregationAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, y: Tensor, key_padding: Tensor | None = None) -> Tensor:
        x = x + self.attn(self.norm1(x), self.norm1(y), key_padding)
        return x + self.mlp(self.norm2(x))


class PrototypeBlock(nn.Module):
    """``y = attn(ln(x), ln(prototypes))`` then ``y + mlp(ln2(y))``: the attention output
    *replaces* ``x`` (no residual there, as the official ``Prototype_Block``), so the output is
    built from the prototypes only."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = PrototypeAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, prototypes: Tensor) -> Tensor:
        y = self.attn(self.norm1(x), self.norm1(prototypes))
        return y + self.mlp(self.norm2(y))

    def forward_packed(self, x: Tensor, prototypes: Tensor, index: Tensor, shape: tuple[int, int]) -> Tensor:
        """:meth:`forward` on the valid rows ``x`` (V, C) only (see :meth:`PrototypeAttention.forward_packed`)."""
        y = self.attn.forward_packed(self.norm1(x), self.norm1(prototypes), index, shape)
        return y + self.mlp(self.norm2(y))


def gather_loss(selected: Tensor, patterns: Tensor, valid: Tensor | None = None) -> Tensor:
    """Mean over selected snippets (B, K, W) of ``1 - max cos`` to the patterns (B, P, W).

    Same value as the official pairwise ``F.cosine_similarity`` broadcast, computed as one
    batched matmul of L2-normalised rows. ``valid`` (B, K) restricts the mean (not official).
    """
    eps = 1e-8
    a = selected / selected.norm(dim=-1, keepdim=True).clamp_min(eps)
    b = patterns / patterns.norm(dim=-1, keepdim=True).clamp_min(eps)
    dist = 1.0 - (a @ b.transpose(1, 2)).amax(dim=2)  # (B, K)
    if valid is None:
        return dist.mean()
    w = valid.to(dist.dtype)
    return (dist * w).sum() / w.sum().clamp_min(1.0)


class NormalityBranch(nn.Module):
    """The self-guided normality modelling branch (official ``SGNM``, names kept)."""

    def __init__(self, preset: DSANetPreset) -> None:
        super().__init__()
        w, h, r, eps = preset.visual_width, preset.normality_heads, preset.normality_mlp_ratio, preset.normality_ln_eps
        self.normal_selection_ratio = preset.normal_selection_ratio
        self.mask_padding_selection = preset.mask_padding_selection
        self.video_prototypes = nn.Parameter(torch.randn(preset.num_prototypes, w))
        self.dnp_extractor = nn.ModuleList([AggregationBlock(w, h, r, eps) for _ in range(preset.extractor_depth)])
        self.bottleneck = clip_mlp(w)
        self.decoder = nn.ModuleList([PrototypeBlock(w, h, r, eps) for _ in range(preset.decoder_depth)])
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The official ``initialize_parameters`` for this branch: every Linear weight from a
        normal(0, 0.01) truncated to [-0.03, 0.03], biases 0, LayerNorms 1 / 0."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.01, a=-0.03, b=0.03)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def select_normal(self, visual: Tensor, logits1: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """The ``int(L * ratio)`` snippets with the lowest classifier scores (no gradient).

        Official: chosen among all ``L`` positions, padding included. With
        ``mask_padding_selection`` padding is only taken once the valid snippets are used up,
        and marked invalid for the aggregation and the gather loss.
        """
        b, n, d = visual.shape
        k = int(n * self.normal_selection_ratio)
        with torch.no_grad():
            scores = torch.sigmoid(logits1.reshape(b, n))
            valid = None
            if self.mask_padding_selection and lengths is not None:
                valid = length_mask(lengths, n)
                scores = scores.masked_fill(~valid, float("inf"))
            idx = scores.topk(k, dim=1, largest=False).indices
            picked = visual.detach().gather(1, idx.unsqueeze(-1).expand(-1, -1, d))
            picked_valid = None if valid is None else valid.gather(1, idx)
        return picked, picked_valid

    def forward(self, visual: Tensor, logits1: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        selected, sel_valid = self.select_normal(visual, logits1, lengths)
        patterns = self.video_prototypes.unsqueeze(0).expand(visual.shape[0], -1, -1)
        pad = None
        if sel_valid is not None:
            pad = ~sel_valid
            pad = pad & ~(pad.all(dim=1, keepdim=True))  # a video with no valid pick attends to all
        for blk in self.dnp_extractor:
            patterns = blk(patterns, selected, pad)
        g_loss = gather_loss(selected, patterns, sel_valid)
        return self.reconstruct(visual, patterns, lengths), g_loss

    def reconstruct(self, visual: Tensor, patterns: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Bottleneck MLP then the prototype blocks, token by token.

        With ``lengths`` only the valid snippets are computed and padding rows are 0 (the
        official code also reconstructs padding, whose rows no loss reads: the consistency loss
        is masked). Every block is per token, so valid rows are the same either way; this skips
        most of the branch's work on padded batches.
        """
        b, n, c = visual.shape
        if lengths is None or bool((lengths >= n).all()):
            recon = self.bottleneck(visual)
            for blk in self.decoder:
                recon = blk(recon, patterns)
            return recon
        index = length_mask(lengths, n).reshape(-1).nonzero().squeeze(1)
        rows = self.bottleneck(take_rows(visual.reshape(b * n, c), index))
        for blk in self.decoder:
            rows = blk.forward_packed(rows, patterns, index, (b, n))
        return put_rows(rows, index, b * n).view(b, n, c)


# --------------------------------------------------------------------------- refinement


def refine_scores_hierarchical(logits1: Tensor, logits2: Tensor, temp: float) -> Tensor:
    """Class probabilities (..., C) from ``logits1`` (..., 1) and ``logits2`` (..., C).

    ``P(normal) = 1 - sigmoid(logits1 / temp)``; ``P(class c) = sigmoid(logits1 / temp) *
    softmax(logits2 / temp)[c] / sum over anomaly classes`` (official ``refine_scores_hierarchical``).
    """
    abnormal = torch.sigmoid(logits1 / temp)
    p = torch.softmax(logits2 / temp, dim=-1)[..., 1:]
    dist = p / (p.sum(dim=-1, keepdim=True) + 1e-12)
    return torch.cat([1.0 - abnormal, abnormal * dist], dim=-1)


# --------------------------------------------------------------------------- the model


def _pool_weights(probs: Tensor, scale: float, valid: Tensor | None) -> tuple[Tensor, Tensor]:
    """(B, L, 1) L1-normalised event and background pooling weights."""
    abn = (scale * probs).exp() - 1  # not expm1: the official arithmetic
    nor = (scale * (1.0 - probs)).exp() - 1
    if valid is not None:
        keep = valid.unsqueeze(-1).to(probs.dtype)
        abn, nor = abn * keep, nor * keep
    return F.normalize(abn, p=1, dim=1), F.normalize(nor, p=1, dim=1)


class DSANetModel(nn.Module):
    def __init__(self, preset: DSANetPreset, prompts: Sequence[str], text_encoder: ClipTextTower) -> None:
        super().__init__()
        init_core(self, preset, prompts, text_encoder)
        if preset.text_adapt_until > text_encoder.num_layers:
            raise InputError(
                f"text_adapt_until={preset.text_adapt_until} but the CLIP text tower has {text_encoder.num_layers} layers"
            )
        self.clip_adapter = TextAdapter(text_encoder.width, preset.visual_width, preset.text_adapt_until, preset.text_adapter_weight)
        self.video_anomaly_refiner = NormalityBranch(preset)
        with torch.device("cpu"):  # token ids are data: made on the CPU whatever the default device
            tokens = text_encoder.tokenizer(self.prompts)
        self.register_buffer("prompt_tokens", tokens, persistent=False)
        full = int(tokens.shape[1])
        self.text_context = int(tokens.argmax(dim=-1).max()) + 1 if preset.truncate_text_context else full
        self._text_cache: Tensor | None = None

    # ---- text
    def compute_text_features(self) -> Tensor:
        """(C, E) L2-normalised class features (one prompt per class, as the official tables)."""
        adapter = self.clip_adapter if self.preset.use_text_adapter else None
        feats = encode_class_text(self.text_encoder, adapter, self.prompt_tokens, self.text_context)
        return feats / feats.norm(dim=-1, keepdim=True)

    def text_features(self) -> Tensor:
        """Recomputed in training mode; cached in eval mode (official: the cache is never cleared)."""
        if self.training:
            return self.compute_text_features()
        if self._text_cache is None:
            self._text_cache = self.compute_text_features().detach()
        return self._text_cache.to(self.prompt_tokens.device)

    def clear_text_cache(self) -> None:
        self._text_cache = None

    def train(self, mode: bool = True) -> "DSANetModel":
        if mode and self.preset.text_cache == "refresh":
            self._text_cache = None
        return super().train(mode)

    # ---- forward
    def forward(
        self,
        feats: Tensor,
        lengths: Tensor | None,
        *,
        normality: bool | None = None,
        event_background: bool | None = None,
    ) -> DSANetOutput:
        """All outputs; ``normality`` / ``event_background`` default to the preset's switches
        (predict turns both off: they do not change the test scores)."""
        p = self.preset
        normality = p.use_normality if normality is None else normality
        event_background = p.use_event_background if event_background is None else event_background
        visual = self.encoder(feats, lengths)
        logits1 = classifier_logits(visual, self.mlp2, self.classifier)
        text = self.text_features().to(visual.dtype)
        class_feats = visual_prompted_text(text, logits1, visual, self.mlp1)
        logits2 = alignment_logits(visual, class_feats, p.align_temperature)
        out = DSANetOutput(text_features=text, logits1=logits1, logits2=logits2, visual=visual)
        if event_background:
            valid = length_mask(lengths, visual.shape[1]) if (p.mask_padding_pooling and lengths is not None) else None
            w_abn, w_nor = _pool_weights(torch.sigmoid(logits1), p.pool_scale, valid)
            pooled = torch.cat([w_abn, w_nor], dim=2).transpose(1, 2) @ visual  # (B, 2, W)
            both = alignment_logits(pooled, text.unsqueeze(0).expand(visual.shape[0], -1, -1), p.align_temperature)
            out.logits3, out.logits4 = both[:, :1], both[:, 1:]
        if normality:
            out.reconstructed, out.gather_loss = self.video_anomaly_refiner(visual, logits1, lengths)
        return out

    def refiner_parameters(self) -> list[nn.Parameter]:
        return [q for q in self.video_anomaly_refiner.parameters() if q.requires_grad]

    def main_parameters(self) -> list[nn.Parameter]:
        ids = {id(q) for q in self.video_anomaly_refiner.parameters()}
        return [q for q in self.parameters() if q.requires_grad and id(q) not in ids]


def build_dsanet(
    preset: DSANetPreset, prompts: Sequence[str], clip_model: nn.Module, tokenizer: Any, info: Any, device: str | torch.device
) -> DSANetModel:
    tower = ClipTextTower(clip_model, tokenizer, info)
    return DSANetModel(preset, prompts, tower).to(device)


# --------------------------------------------------------------------------- official key map


def official_key_map() -> KeyMap:
    """The authors' checkpoint keys -> ours: the shared encoder under ``encoder.``, both CLIP
    copies (``clipmodel.*``, ``clip_adapter.clipmodel.*``) onto the one text tower (their image
    towers and ``logit_scale`` are dropped and kept as extras), the adapter and the normality
    branch under their own names. The released CLIP is OpenAI's ViT-B/16 (QuickGELU)."""
    rules = (
        ENCODER_RULES
        + (
            ("clip_adapter.text_adapter.", "clip_adapter.text_adapter."),
            ("video_anomaly_refiner.", "video_anomaly_refiner."),
        )
        + clip_text_rules("clipmodel.")
        + clip_text_rules("clip_adapter.clipmodel.")
    )
    dropped = tuple(
        prefix + rest for prefix in ("clipmodel.", "clip_adapter.clipmodel.") for rest in ("visual.", "logit_scale")
    )
    return KeyMap(rules=rules, dropped=dropped, clip_model="ViT-B-16-quickgelu")


DSANET_KEYMAP = official_key_map()
register_keymap("dsanet", DSANET_KEYMAP)

__all__ = [
    "DSANetOutput",
    "DSANetModel",
    "NormalityBranch",
    "TextAdapter",
    "AggregationBlock",
    "PrototypeBlock",
    "build_dsanet",
    "encode_class_text",
    "gather_loss",
    "refine_scores_hierarchical",
    "official_key_map",
    "DSANET_KEYMAP",
]
