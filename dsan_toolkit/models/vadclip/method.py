"""The ``vadclip`` method: presets, build, loss, predict, optimisers (see :mod:`.model`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import MultiStepLR

from ...errors import InputError
from ...manifest.schema import ClassInfo
from ..api import (
    Method,
    MethodPreset,
    OptimSpec,
    Prediction,
    TrainBatch,
    detached_parts,
    float_outputs,
    full_precision,
    text_method_prompts,
    unwrap_model,
)
from ..input_norm import attach_input_norm
from ..registry import register_method
from .losses import vadclip_loss
from .model import VadCLIPModel, build_vadclip
from .presets import PRESETS, VadCLIPPreset


def check_dims(preset: VadCLIPPreset, feature_dim: int, text_dim: int) -> None:
    if feature_dim != preset.visual_width:
        raise InputError(
            f"features are {feature_dim}-d but the preset's visual width is {preset.visual_width} "
            "(the official encoder adds position embeddings to the features directly)"
        )
    if text_dim != preset.visual_width:
        raise InputError(
            f"the CLIP text features are {text_dim}-d, the visual width {preset.visual_width}: they must match"
        )
    if preset.visual_length % preset.attn_window:
        raise InputError(f"attn_window {preset.attn_window} must divide visual_length {preset.visual_length}")


@register_method("vadclip")
class VadCLIPMethod(Method):
    trainable = True
    needs_clip = True
    preset_cls = VadCLIPPreset
    presets: dict[str, MethodPreset] = dict(PRESETS)

    def build(
        self,
        preset: MethodPreset,
        classes: Sequence[ClassInfo],
        *,
        feature_dim: int,
        clip: Any | None,
        device: str | torch.device = "cpu",
    ) -> nn.Module:
        prompts = text_method_prompts("vadclip", preset, VadCLIPPreset, classes, clip)
        check_dims(preset, feature_dim, int(clip.info.embed_dim))
        model = build_vadclip(preset, prompts, clip.model, clip.tokenizer, clip.info, device)
        return attach_input_norm(model, preset.input_norm, feature_dim)

    def loss(self, model: nn.Module, batch: TrainBatch, preset: MethodPreset) -> tuple[Tensor, dict[str, Tensor]]:
        assert isinstance(unwrap_model(model), VadCLIPModel) and isinstance(preset, VadCLIPPreset)
        out = model(batch.feats, batch.lengths)
        with full_precision(batch.feats.device):  # mixed precision: the forward only
            out = float_outputs(out)
            total, parts = vadclip_loss(out, batch.labels.to(out.logits2.dtype), batch.lengths, preset)
        return total, detached_parts(total, parts)

    def predict(self, model: nn.Module, feats: Tensor, lengths: Tensor) -> Prediction:
        assert isinstance(model, VadCLIPModel)
        with torch.no_grad():
            out = model(feats, lengths)
        probs = out.logits2.softmax(dim=-1)
        return Prediction(
            scores=torch.sigmoid(out.logits1.squeeze(-1)),
            align_scores=1 - probs[..., 0],
            class_probs=probs,
        )

    def optimizers(
        self, model: nn.Module, preset: MethodPreset, steps_per_epoch: int, *, schedule_iters_per_epoch: int
    ) -> list[OptimSpec]:
        """AdamW with the per-epoch MultiStepLR of the official code (no per-iteration schedule)."""
        assert isinstance(preset, VadCLIPPreset)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=preset.lr, weight_decay=preset.weight_decay)
        sched = MultiStepLR(opt, list(preset.scheduler_milestones), preset.scheduler_gamma)
        return [OptimSpec(optimizer=opt, scheduler=sched, step_on="epoch", name="main")]
