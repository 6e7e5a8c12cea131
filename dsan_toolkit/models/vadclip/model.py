"""The VadCLIP network (nwpu-zxr/VadCLIP ``src/model.py``, class ``CLIPVAD``), re-implemented.

forward(feats (B, L, D), lengths (B,)) -> :class:`VadCLIPOutput`:

1. ``X = encoder(feats, lengths)`` (:class:`~dsan_toolkit.models.common.TemporalGraphEncoder`);
2. ``logits1 = classifier(X + mlp2(X))`` (B, L, 1);
3. class text features from the frozen CLIP text encoder with the learnable prompt (recomputed
   every call: the prompt is trained);
4. visual prompt: ``t + norm(logits1^T X)``, then ``+ mlp1``; ``logits2 = cos(X, t) / 0.07`` (B, L, C).

Parameter names follow the official ones under ``encoder.`` / ``prompt.`` / ``text_encoder.``;
:mod:`dsan_toolkit.models.official` maps them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..common import (
    ClipTextTower,
    LearnablePrompt,
    alignment_logits,
    classifier_logits,
    init_core,
    visual_prompted_text,
)
from .presets import VadCLIPPreset


@dataclass
class VadCLIPOutput:
    text_features: Tensor  # (C, E) prompt-conditioned CLIP text features (before the visual prompt)
    logits1: Tensor  # (B, L, 1) classifier logits
    logits2: Tensor  # (B, L, C) alignment logits
    visual: Tensor  # (B, L, W) encoded snippets


class VadCLIPModel(nn.Module):
    def __init__(self, preset: VadCLIPPreset, prompts: Sequence[str], text_encoder: ClipTextTower) -> None:
        super().__init__()
        init_core(self, preset, prompts, text_encoder)
        self.prompt = LearnablePrompt(
            text_encoder.context_length, text_encoder.width, preset.prompt_prefix, preset.prompt_postfix
        )
        self.register_buffer("prompt_tokens", text_encoder.tokenize(self.prompts).cpu(), persistent=False)
        src, eot = self.prompt.layout(self.prompt_tokens)  # refuses prompts that do not fit, now
        self.register_buffer("prompt_src", src, persistent=False)
        self.register_buffer("prompt_eot", eot, persistent=False)
        # the causal text tower only needs the positions up to the last EOT (exact speed-up)
        self.text_context = int(eot.max()) + 1 if preset.truncate_text_context else None

    def encode_text(self) -> Tensor:
        """(C, E) class features through the learnable prompt and the frozen CLIP text encoder."""
        tokens = self.prompt_tokens
        emb, eot = self.prompt(self.text_encoder.embed_tokens(tokens), tokens, (self.prompt_src, self.prompt_eot))
        return self.text_encoder.encode_embeddings(emb, eot, context=self.text_context)

    def forward(self, feats: Tensor, lengths: Tensor | None) -> VadCLIPOutput:
        visual = self.encoder(feats, lengths)
        logits1 = classifier_logits(visual, self.mlp2, self.classifier)
        text = self.encode_text()
        class_feats = visual_prompted_text(text.to(visual.dtype), logits1, visual, self.mlp1)
        logits2 = alignment_logits(visual, class_feats, self.preset.temperature)
        return VadCLIPOutput(text_features=text, logits1=logits1, logits2=logits2, visual=visual)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]


def build_vadclip(
    preset: VadCLIPPreset,
    prompts: Sequence[str],
    clip_model: nn.Module,
    tokenizer: object,
    info: object,
    device: str | torch.device,
) -> VadCLIPModel:
    tower = ClipTextTower(clip_model, tokenizer, info)
    return VadCLIPModel(preset, prompts, tower).to(device)
