"""The shared temporal encoder and heads of VadCLIP and DSANet.

:class:`TemporalGraphEncoder` is the official ``encode_video``: features + frame position
embeddings -> windowed transformer -> two graph branches (similarity graph ``gc1 -> gc2``,
distance graph ``gc3 -> gc4``, QuickGELU after each) -> concat -> ``linear``. Its parameter names
are the official ones under a prefix (the official modules sit at the top level of the model;
see the key-mapping table in :mod:`dsan_toolkit.models.official`).

Heads (pure functions on the official modules):

- :func:`classifier_logits`: ``logits1 = classifier(x + mlp2(x))``;
- :func:`visual_prompted_text`: text features + the normalised ``logits1^T X`` visual prompt,
  then ``+ mlp1(.)`` (the official "visual prompt");
- :func:`alignment_logits`: cosine similarity of snippets and per-video class features / 0.07.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .layers import (
    DistanceAdj,
    GraphConvolution,
    QuickGELU,
    WindowedTransformer,
    clip_mlp,
    length_mask,
    similarity_adjacency,
)


@dataclass(frozen=True)
class EncoderOptions:
    """Where the encoder may deviate from the official code (defaults = official behaviour)."""

    # official: padded positions take part in attention and feed the graph convolutions;
    # True masks them as attention keys and zeroes them before the graph convolutions
    mask_padding_attention: bool = False
    sim_threshold: float = 0.7  # official hard threshold of the similarity graph
    sim_cut: str = "zero"  # official: cut pairs become 0 (weigh e^0); "exclude" removes them
    mask_distance_graph: bool = False  # official: the distance graph spans all positions

    @classmethod
    def from_preset(cls, preset: Any) -> EncoderOptions:
        """The four encoder switches of a VadCLIP or DSANet preset."""
        return cls(
            mask_padding_attention=preset.mask_padding_attention,
            sim_threshold=preset.sim_threshold,
            sim_cut=preset.sim_cut,
            mask_distance_graph=preset.mask_distance_graph,
        )


class TemporalGraphEncoder(nn.Module):
    """``forward(feats (B, L, W), lengths (B,)) -> (B, L, W)`` (W = visual width = feature dim)."""

    def __init__(
        self,
        width: int,
        layers: int,
        heads: int,
        length: int,
        window: int,
        options: EncoderOptions = EncoderOptions(),
    ) -> None:
        super().__init__()
        self.visual_length, self.visual_width, self.options = length, width, options
        self.temporal = WindowedTransformer(width, layers, heads, length, window)
        half = width // 2
        self.gc1 = GraphConvolution(width, half, residual=True)
        self.gc2 = GraphConvolution(half, half, residual=True)
        self.gc3 = GraphConvolution(width, half, residual=True)
        self.gc4 = GraphConvolution(half, half, residual=True)
        self.disAdj = DistanceAdj()
        self.linear = nn.Linear(width, width)
        self.gelu = QuickGELU()
        self.frame_position_embeddings = nn.Embedding(length, width)
        nn.init.normal_(self.frame_position_embeddings.weight, std=0.01)

    def forward(self, feats: Tensor, lengths: Tensor | None) -> Tensor:
        b, n, _ = feats.shape
        x = feats.float() + self.frame_position_embeddings.weight[:n].unsqueeze(0)
        pad = None
        if self.options.mask_padding_attention and lengths is not None:
            pad = ~length_mask(lengths, n)
        x = self.temporal(x, pad)
        if pad is not None:
            x = x.masked_fill(pad.unsqueeze(-1), 0.0)
        adj = similarity_adjacency(x, lengths, self.options.sim_threshold, self.options.sim_cut)
        dis = self.disAdj(b, n, x.device)
        if self.options.mask_distance_graph and lengths is not None:
            valid = length_mask(lengths, n).to(dis.dtype)
            dis = dis * valid.unsqueeze(1) * valid.unsqueeze(2)
        x1 = self.gelu(self.gc2(self.gelu(self.gc1(x, adj)), adj))
        x2 = self.gelu(self.gc4(self.gelu(self.gc3(x, dis)), dis))
        return self.linear(torch.cat((x1, x2), dim=2))


def classifier_logits(x: Tensor, mlp: nn.Module, classifier: nn.Module) -> Tensor:
    """(B, L, 1) ``logits1 = classifier(x + mlp(x))``."""
    return classifier(x + mlp(x))


def visual_prompted_text(text: Tensor, logits1: Tensor, visual: Tensor, mlp: nn.Module) -> Tensor:
    """(B, C, E) class features: ``t + norm(logits1^T X)`` then ``+ mlp(.)``.

    ``text`` (C, E), ``logits1`` (B, L, 1) raw logits (as the official code: not masked, not
    activated), ``visual`` (B, L, E).
    """
    prompt = logits1.transpose(1, 2) @ visual  # (B, 1, E)
    prompt = prompt / prompt.norm(dim=-1, keepdim=True)
    feats = text.unsqueeze(0) + prompt  # (B, C, E)
    return feats + mlp(feats)


def alignment_logits(visual: Tensor, text: Tensor, temperature: float = 0.07) -> Tensor:
    """(B, L, C) cosine similarity of each snippet (B, L, E) with each class (B, C, E) / temperature."""
    v = visual / visual.norm(dim=-1, keepdim=True)
    t = text / text.norm(dim=-1, keepdim=True)
    return v @ t.transpose(1, 2).to(v.dtype) / temperature


def init_core(model: nn.Module, preset: Any, prompts: Sequence[str], text_encoder: nn.Module) -> None:
    """Give ``model`` the VadCLIP core that VadCLIP and DSANet share, under the official
    attribute names (``encoder``, ``mlp1``, ``mlp2``, ``classifier``, ``text_encoder``)."""
    model.preset = preset
    model.visual_length = preset.visual_length
    model.num_classes = len(prompts)
    model.prompts = list(prompts)
    w = preset.visual_width
    model.encoder = TemporalGraphEncoder(
        w,
        preset.visual_layers,
        preset.visual_heads,
        preset.visual_length,
        preset.attn_window,
        EncoderOptions.from_preset(preset),
    )
    model.mlp1 = clip_mlp(w)
    model.mlp2 = clip_mlp(w)
    model.classifier = nn.Linear(w, 1)
    model.text_encoder = text_encoder
