"""DSANet's self-guided normality modelling branch (official ``SGNM``), re-implemented.

The ``int(L * ratio)`` snippets with the lowest classifier scores are the "normal" ones;
learnable normal prototypes attend to them (aggregation blocks), giving per-video normal
patterns (:func:`gather_loss`: mean distance of each selected snippet to its closest pattern);
the encoded snippets go through a bottleneck MLP and prototype blocks (cosine attention to the
patterns, ReLU, no softmax) that reconstruct them from normal patterns only. Parameter names
are the official ones (``video_anomaly_refiner.*``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.init import trunc_normal_

from ..common import clip_mlp, length_mask
from .presets import DSANetPreset


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
