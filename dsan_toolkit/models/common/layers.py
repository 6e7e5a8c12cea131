"""Building blocks of the VadCLIP / DSANet temporal encoder, with the official parameter names.

- :class:`WindowedTransformer` (``resblocks.N.{attn,ln_1,mlp.c_fc,mlp.c_proj,ln_2}``): CLIP-style
  pre-LN blocks, sequence-first inside, attention restricted to fixed windows by an additive
  mask (:func:`window_attention_mask`, built exactly like the official one).
- :class:`GraphConvolution` (``weight`` (in, out), no bias, ``residual`` Conv1d k=5 when the
  widths differ, identity otherwise).
- :class:`DistanceAdj` (``sigma``: in the state dict, never used) -> ``exp(-|i-j| / e)``.
- :func:`similarity_adjacency`: cosine similarity, values ``<= threshold`` set to 0 (or cut),
  row softmax inside the valid ``len x len`` block, zero elsewhere; vectorised with masks.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 (as CLIP's), returning the input dtype."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.float()).to(x.dtype)


class QuickGELU(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


def clip_mlp(width: int, hidden: int | None = None) -> nn.Sequential:
    """``c_fc`` -> QuickGELU -> ``c_proj`` (the CLIP MLP, also the official ``mlp1``/``mlp2``)."""
    hidden = hidden or width * 4
    return nn.Sequential(
        OrderedDict([("c_fc", nn.Linear(width, hidden)), ("gelu", QuickGELU()), ("c_proj", nn.Linear(hidden, width))])
    )


def window_attention_mask(length: int, window: int) -> Tensor:
    """Additive (length, length) mask: 0 inside each ``window`` block on the diagonal, -inf elsewhere.

    Built like the official code: ``int(length / window)`` blocks, the last one stretched to the
    end when it reaches it; when ``window`` does not divide ``length`` the remainder rows stay
    fully masked (the official code then yields NaN there), so presets use dividing windows.
    """
    mask = torch.full((length, length), float("-inf"))
    for i in range(length // window):  # at most length/window iterations, at build time only
        start = i * window
        stop = (i + 1) * window if (i + 1) * window < length else length
        mask[start:stop, start:stop] = 0.0
    return mask


class ResidualAttentionBlock(nn.Module):
    """Pre-LN attention + MLP block on sequence-first input (L, B, W)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = LayerNorm(width)
        self.mlp = clip_mlp(width)
        self.ln_2 = LayerNorm(width)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=attn_mask)[0]
        return x + self.mlp(self.ln_2(x))


class WindowedTransformer(nn.Module):
    """``layers`` blocks of windowed self-attention over ``length`` positions.

    ``forward(x (B, L, W), key_padding=None)``; ``key_padding`` (B, L) bool, True at padding,
    is only used with ``mask_padding=True`` (not official: the official encoder lets padded
    positions take part in attention).
    """

    def __init__(self, width: int, layers: int, heads: int, length: int, window: int) -> None:
        super().__init__()
        self.width, self.layers, self.heads = width, layers, heads
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads) for _ in range(layers)])
        self.register_buffer("attn_mask", window_attention_mask(length, window), persistent=False)

    def _mask(self, x: Tensor, key_padding: Tensor | None) -> Tensor:
        base = self.attn_mask.to(dtype=x.dtype, device=x.device)
        if key_padding is None:
            return base
        b = key_padding.shape[0]
        mask = base.unsqueeze(0).expand(b, -1, -1).masked_fill(key_padding.unsqueeze(1), float("-inf"))
        # a query whose whole window is padding keeps the plain window (its output is unused)
        empty = torch.isinf(mask).all(dim=-1, keepdim=True)
        mask = torch.where(empty, base.unsqueeze(0), mask)
        return mask.repeat_interleave(self.heads, dim=0)

    def forward(self, x: Tensor, key_padding: Tensor | None = None) -> Tensor:
        mask = self._mask(x, key_padding)
        h = x.transpose(0, 1)  # (L, B, W)
        for blk in self.resblocks:
            h = blk(h, mask)
        return h.transpose(0, 1)


class GraphConvolution(nn.Module):
    """``adj @ (x @ weight)`` + residual (identity, or a width-changing Conv1d with kernel 5)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False, residual: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        self.bias = nn.Parameter(torch.full((out_features,), 0.1)) if bias else None
        nn.init.xavier_uniform_(self.weight)  # before the Conv1d, as the official init order
        self.has_residual = residual
        if residual and in_features != out_features:
            self.residual: nn.Module | None = nn.Conv1d(in_features, out_features, kernel_size=5, padding=2)
        else:
            self.residual = None

    def forward(self, x: Tensor, adj: Tensor) -> Tensor:
        out = adj.matmul(x.matmul(self.weight))
        if self.bias is not None:
            out = out + self.bias
        if self.residual is not None:
            out = out + self.residual(x.transpose(1, 2)).transpose(1, 2)
        elif self.has_residual:
            out = out + x
        return out


class DistanceAdj(nn.Module):
    """The official distance graph ``exp(-|i - j| / e)`` over all positions (not masked).

    ``sigma`` is kept for state-dict compatibility; the official code never uses it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.sigma = nn.Parameter(torch.full((1,), 0.1))

    def forward(self, batch_size: int, length: int, device: torch.device | str | None = None) -> Tensor:
        device = device if device is not None else self.sigma.device
        pos = torch.arange(length, device=device, dtype=torch.float32)
        dist = (pos.unsqueeze(0) - pos.unsqueeze(1)).abs()
        adj = torch.exp(-dist / torch.exp(torch.ones((), device=device)))  # float32 e, as the official
        return adj.unsqueeze(0).expand(batch_size, -1, -1)


def length_mask(lengths: Tensor, length: int) -> Tensor:
    """(B, L) bool, True at valid positions ``t < lengths[b]``."""
    return torch.arange(length, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def cosine_matrix(x: Tensor, eps: float = 1e-20) -> Tensor:
    """(B, L, L) cosine similarities, computed as the official ``adj4`` does."""
    dots = x.matmul(x.transpose(1, 2))
    norms = x.norm(p=2, dim=2, keepdim=True)
    return dots / (norms.matmul(norms.transpose(1, 2)) + eps)


def similarity_adjacency(
    x: Tensor,
    lengths: Tensor | None,
    threshold: float = 0.7,
    cut: str = "zero",
) -> Tensor:
    """The similarity graph: (B, L, L), row-softmax inside each valid block, 0 elsewhere.

    ``cut="zero"`` (official): similarities ``<= threshold`` become 0 and still weigh ``e^0``
    in the softmax; ``cut="exclude"`` removes them from the softmax (the diagonal always stays).
    ``lengths=None`` uses all positions.
    """
    b, n, _ = x.shape
    sim = cosine_matrix(x)
    keep = sim > threshold
    if cut == "zero":
        logits = torch.where(keep, sim, torch.zeros_like(sim))
        allowed = None
    elif cut == "exclude":
        eye = torch.eye(n, dtype=torch.bool, device=x.device).unsqueeze(0)
        logits, allowed = sim, keep | eye
    else:
        raise ValueError(f"unknown similarity cut {cut!r} (zero | exclude)")
    if lengths is None:
        valid = torch.ones(b, n, dtype=torch.bool, device=x.device)
    else:
        valid = length_mask(lengths, n)
    cols = valid.unsqueeze(1)
    if allowed is not None:
        cols = cols & allowed
    adj = torch.softmax(logits.masked_fill(~cols, float("-inf")), dim=-1)
    return adj.masked_fill(~valid.unsqueeze(2), 0.0)


__all__ = [
    "LayerNorm",
    "QuickGELU",
    "clip_mlp",
    "window_attention_mask",
    "ResidualAttentionBlock",
    "WindowedTransformer",
    "GraphConvolution",
    "DistanceAdj",
    "length_mask",
    "cosine_matrix",
    "similarity_adjacency",
]
