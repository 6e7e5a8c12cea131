"""Modules shared by VadCLIP and DSANet: temporal encoder, graph convolutions, heads, CLIP text."""

from .encoder import (
    EncoderOptions,
    TemporalGraphEncoder,
    alignment_logits,
    classifier_logits,
    init_core,
    visual_prompted_text,
)
from .layers import (
    DistanceAdj,
    GraphConvolution,
    LayerNorm,
    QuickGELU,
    ResidualAttentionBlock,
    WindowedTransformer,
    clip_mlp,
    cosine_matrix,
    length_mask,
    similarity_adjacency,
    window_attention_mask,
)
from .losses import masked_topk_mean, mil_bce_loss, mil_soft_ce_loss, text_separation_loss, topk_counts
from .text import ClipTextTower, LearnablePrompt

__all__ = [
    "EncoderOptions",
    "TemporalGraphEncoder",
    "init_core",
    "alignment_logits",
    "classifier_logits",
    "visual_prompted_text",
    "DistanceAdj",
    "GraphConvolution",
    "LayerNorm",
    "QuickGELU",
    "ResidualAttentionBlock",
    "WindowedTransformer",
    "clip_mlp",
    "cosine_matrix",
    "length_mask",
    "similarity_adjacency",
    "window_attention_mask",
    "masked_topk_mean",
    "mil_bce_loss",
    "mil_soft_ce_loss",
    "text_separation_loss",
    "topk_counts",
    "ClipTextTower",
    "LearnablePrompt",
]
