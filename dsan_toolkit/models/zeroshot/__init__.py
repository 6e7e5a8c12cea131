"""``zeroshot``: training-free CLIP baseline -- each snippet feature against class prompts.

``class_probs = softmax(logit_scale * cos(feature, text(template.format(class))))``, the anomaly
score ``1 - p(normal)``. Only meaningful when the store's image features and the text encoder
come from the same CLIP weights (a random-init CLIP gives chance-level scores, and the model
records ``clip.info`` so reports can say so).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ...config import register_config
from ...errors import InputError
from ...manifest.schema import ClassInfo
from ..api import Method, MethodPreset, Prediction, TrainBatch, class_prompts
from ..common.text import ClipTextTower
from ..registry import register_method


@register_config
@dataclass(frozen=True)
class ZeroShotPreset(MethodPreset):
    template: str = "a video frame of {}"
    text_field: str = "name"  # "name" (readable, e.g. "road accidents") | "prompt" (the official VadCLIP text)
    logit_scale: float = 100.0  # exp of CLIP's learned logit scale


_BASE = dict(
    visual_length=256,
    feature_dim=512,
    batch_size=1,
    batch_composition="mixed",
    drop_last=False,
    epochs=0,
    seed=234,
    lr=0.0,
    eval_every_iters=None,
    select_metric="auc",
    reload_best_each_epoch=False,
)
PRESETS: dict[str, MethodPreset] = {
    "ucf": ZeroShotPreset(name="ucf", official=False, **_BASE),
    "xd": ZeroShotPreset(name="xd", official=False, **_BASE),
    "tiny": ZeroShotPreset(name="tiny", official=False, **{**_BASE, "visual_length": 64}),
}


class ZeroShotModel(nn.Module):
    def __init__(self, text_features: Tensor, visual_length: int, logit_scale: float, info: Any = None) -> None:
        super().__init__()
        self.visual_length = visual_length
        self.logit_scale = logit_scale
        self.clip_info = info
        self.register_buffer("text_features", text_features / text_features.norm(dim=-1, keepdim=True))

    def forward(self, feats: Tensor) -> Tensor:
        v = feats.float()
        v = v / v.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        return self.logit_scale * v @ self.text_features.t()  # (B, L, C)


@register_method("zeroshot")
class ZeroShotMethod(Method):
    trainable = False
    needs_clip = True
    preset_cls = ZeroShotPreset
    presets = PRESETS

    def build(
        self,
        preset: MethodPreset,
        classes: Sequence[ClassInfo],
        *,
        feature_dim: int,
        clip: Any | None,
        device: str | torch.device = "cpu",
    ) -> nn.Module:
        if not isinstance(preset, ZeroShotPreset):
            raise InputError(f"zeroshot needs a ZeroShotPreset, got {type(preset).__name__}")
        if clip is None:
            raise InputError("zeroshot needs a CLIP model (clip=create_clip(...))")
        class_prompts(classes)
        if preset.text_field not in ("name", "prompt"):
            raise InputError(f"text_field must be 'name' or 'prompt', got {preset.text_field!r}")
        if feature_dim != int(clip.info.embed_dim):
            raise InputError(f"features are {feature_dim}-d but the CLIP text features are {clip.info.embed_dim}-d")
        texts = [preset.template.format(getattr(c, preset.text_field)) for c in classes]
        tower = ClipTextTower(clip.model, clip.tokenizer, clip.info)
        with torch.no_grad():
            text = tower.encode_texts(texts).float().cpu()
        return ZeroShotModel(text, preset.visual_length, preset.logit_scale, clip.info).to(device)

    def loss(self, model: nn.Module, batch: TrainBatch, preset: MethodPreset) -> tuple[Tensor, dict[str, Tensor]]:
        raise InputError("zeroshot is training-free: evaluate it directly")

    def predict(self, model: nn.Module, feats: Tensor, lengths: Tensor) -> Prediction:
        with torch.no_grad():
            probs = model(feats).softmax(dim=-1)
        s = 1 - probs[..., 0]
        return Prediction(scores=s, align_scores=s, class_probs=probs)
