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
for the CLIP text tower); ``models.official.DSANET_KEYMAP`` maps the authors' checkpoints (793 keys
with UCF settings: ``clipmodel.*`` and ``clip_adapter.clipmodel.*`` are the same CLIP) strictly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import InputError
from ..common import (
    ClipTextTower,
    alignment_logits,
    classifier_logits,
    init_core,
    length_mask,
    visual_prompted_text,
)
from .normality import NormalityBranch
from .presets import DSANetPreset
from .text import TextAdapter, encode_class_text

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
        self.clip_adapter = TextAdapter(
            text_encoder.width, preset.visual_width, preset.text_adapt_until, preset.text_adapter_weight
        )
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

    def train(self, mode: bool = True) -> DSANetModel:
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
            # float32 weights: in bfloat16 sigmoid(logits1) rounds to 1 from logits near 6 on, the
            # background weights exp(10 (1 - p)) - 1 to 0 at every position, and the pooled feature to 0
            w_abn, w_nor = _pool_weights(torch.sigmoid(logits1.float()), p.pool_scale, valid)
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
    preset: DSANetPreset,
    prompts: Sequence[str],
    clip_model: nn.Module,
    tokenizer: Any,
    info: Any,
    device: str | torch.device,
) -> DSANetModel:
    tower = ClipTextTower(clip_model, tokenizer, info)
    return DSANetModel(preset, prompts, tower).to(device)


__all__ = [
    "DSANetOutput",
    "DSANetModel",
    "build_dsanet",
    "refine_scores_hierarchical",
]
