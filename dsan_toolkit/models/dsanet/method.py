"""The ``dsanet`` method: presets, build, loss, predict, optimisers (see :mod:`.model`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

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
from .losses import dsanet_loss
from .model import DSANetModel, build_dsanet, refine_scores_hierarchical
from .optim import build_optimizers
from .presets import PRESETS, DSANetPreset


def check_dims(preset: DSANetPreset, feature_dim: int) -> None:
    if feature_dim != preset.visual_width:
        raise InputError(
            f"features are {feature_dim}-d but the preset's visual width is {preset.visual_width} "
            "(the official encoder adds position embeddings to the features directly)"
        )


@register_method("dsanet")
class DSANetMethod(Method):
    trainable = True
    needs_clip = True
    preset_cls = DSANetPreset
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
        prompts = text_method_prompts("dsanet", preset, DSANetPreset, classes, clip)
        check_dims(preset, feature_dim)
        if not preset.use_text_adapter and int(clip.info.embed_dim) != preset.visual_width:
            raise InputError(
                f"without the text adapter the CLIP text features ({clip.info.embed_dim}-d) must match the visual width {preset.visual_width}"
            )
        model = build_dsanet(preset, prompts, clip.model, clip.tokenizer, clip.info, device)
        return attach_input_norm(model, preset.input_norm, feature_dim)

    def loss(self, model: nn.Module, batch: TrainBatch, preset: MethodPreset) -> tuple[Tensor, dict[str, Tensor]]:
        assert isinstance(unwrap_model(model), DSANetModel) and isinstance(preset, DSANetPreset)
        out = model(batch.feats, batch.lengths)
        with full_precision(batch.feats.device):  # mixed precision: the forward only
            total, parts = dsanet_loss(float_outputs(out), batch.labels, batch.lengths, preset)
        return total, detached_parts(total, parts)

    def predict(self, model: nn.Module, feats: Tensor, lengths: Tensor) -> Prediction:
        """Scores as the official test code: ``sigmoid(logits1)``; with refinement the class
        probabilities are the refined ones and the second score is ``1 - P(normal)`` =
        ``sigmoid(logits1 / temp)``; without, ``softmax(logits2)`` and ``1 - softmax[..., 0]``.
        The normality branch and the event/background pooling do not change them and are skipped."""
        assert isinstance(model, DSANetModel)
        p = model.preset
        with torch.no_grad():
            out = model(feats, lengths, normality=False, event_background=False)
        if p.use_refinement:
            probs = refine_scores_hierarchical(out.logits1, out.logits2, p.refine_temp)
        else:
            probs = out.logits2.softmax(dim=-1)
        return Prediction(
            scores=torch.sigmoid(out.logits1.squeeze(-1)), align_scores=1 - probs[..., 0], class_probs=probs
        )

    def optimizers(
        self, model: nn.Module, preset: MethodPreset, steps_per_epoch: int, *, schedule_iters_per_epoch: int
    ) -> list[OptimSpec]:
        """Main AdamW (per-epoch cosine) and the normality branch's StableAdamW (per-iteration
        warm-up cosine); ``schedule_iters_per_epoch`` (the sum of the loaders' lengths, UCF:
        ``len(normal_loader) + len(anomaly_loader)``) sizes the latter exactly as the official code
        (see :func:`~dsan_toolkit.models.dsanet.optim.refiner_total_iters`)."""
        assert isinstance(preset, DSANetPreset)
        return build_optimizers(model, preset, steps_per_epoch, schedule_iters_per_epoch=schedule_iters_per_epoch)
