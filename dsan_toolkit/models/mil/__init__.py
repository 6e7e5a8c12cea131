"""``mil``: the MIL ranking baseline of Sultani et al. (CVPR 2018) on the same CLIP features.

Network (paper, Sec. 3.3): FC 512 -> ReLU -> dropout 0.6 -> FC 32 -> dropout 0.6 -> FC 1 ->
sigmoid, per snippet. Loss per (anomalous, normal) pair of bags: hinge
``max(0, 1 - max_t s_a + max_t s_n)`` + ``lambda_smooth * sum_t (s_t - s_{t+1})^2`` +
``lambda_sparse * sum_t s_t`` on the anomalous bag, lambda = 8e-5; Adagrad lr 0.001, weight decay
0.001; bags of 32 segments (``visual_length = 32``: the training resampling averages snippets
into 32 segments as the paper does); 30 + 30 bags per batch.

Differences (documented in docs/models.md): features are CLIP ViT-B/16 (512-d) instead of C3D
(4096-d); every anomalous bag of a batch is ranked against every normal bag (the mean over all
pairs) instead of index-wise pairs; masks handle bags shorter than 32.
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
from ..api import Method, MethodPreset, OptimSpec, Prediction, TrainBatch, detached_parts, full_precision
from ..common.layers import length_mask
from ..input_norm import attach_input_norm, check_input_norm
from ..registry import register_method


@register_config
@dataclass(frozen=True)
class MILPreset(MethodPreset):
    hidden1: int = 512
    hidden2: int = 32
    dropout: float = 0.6
    lambda_smooth: float = 8e-5
    lambda_sparse: float = 8e-5
    margin: float = 1.0
    weight_decay: float = 1e-3
    # NOT official: "none" (paper) | "center" | "standardize" the input features with training-split
    # statistics kept in the model (dsan_toolkit.models.input_norm); only the tiny preset uses it
    input_norm: str = "none"

    def __post_init__(self) -> None:
        check_input_norm(self.input_norm)


_BASE = dict(
    visual_length=32,
    feature_dim=512,
    batch_size=30,
    batch_composition="paired",
    drop_last=True,
    epochs=50,
    seed=234,
    lr=1e-3,
    eval_every_iters=None,
    select_metric="auc",
    reload_best_each_epoch=False,
)
PRESETS: dict[str, MethodPreset] = {
    "ucf": MILPreset(name="ucf", official=True, **_BASE),
    "xd": MILPreset(name="xd", official=True, **_BASE),
    # tiny (NOT official): a CPU demo size; standardised inputs (the paper's lr 1e-3 then trains stably)
    "tiny": MILPreset(
        name="tiny", official=False, input_norm="standardize", **{**_BASE, "batch_size": 8, "epochs": 10}
    ),
}


class MILModel(nn.Module):
    def __init__(self, preset: MILPreset, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.visual_length = preset.visual_length
        self.num_classes = num_classes
        self.net = nn.Sequential(
            nn.Linear(feature_dim, preset.hidden1),
            nn.ReLU(),
            nn.Dropout(preset.dropout),
            nn.Linear(preset.hidden1, preset.hidden2),
            nn.Dropout(preset.dropout),
            nn.Linear(preset.hidden2, 1),
            nn.Sigmoid(),
        )

    def forward(self, feats: Tensor) -> Tensor:
        return self.net(feats.float()).squeeze(-1)  # (B, L)


def mil_ranking_loss(
    scores: Tensor, lengths: Tensor, anomalous: Tensor, preset: MILPreset
) -> tuple[Tensor, dict[str, Tensor]]:
    """Sultani's loss on a batch of bags (B, L) scores; every anomalous bag vs every normal bag."""
    if not bool(anomalous.any()) or bool(anomalous.all()):
        raise InputError("the MIL ranking loss needs both normal and anomalous videos in a batch")
    valid = length_mask(lengths, scores.shape[1])
    top = scores.masked_fill(~valid, float("-inf")).amax(dim=1)  # (B,)
    hinge = (preset.margin - top[anomalous].unsqueeze(1) + top[~anomalous].unsqueeze(0)).clamp(min=0).mean()
    pair_valid = valid[:, 1:] & valid[:, :-1]
    diffs = (scores[:, 1:] - scores[:, :-1]).pow(2) * pair_valid
    smooth = diffs.sum(dim=1)[anomalous].mean()
    sparse = (scores * valid).sum(dim=1)[anomalous].mean()
    total = hinge + preset.lambda_smooth * smooth + preset.lambda_sparse * sparse
    return total, {"ranking": hinge, "smooth": smooth, "sparse": sparse}


@register_method("mil")
class MILMethod(Method):
    trainable = True
    needs_clip = False
    has_class_branch = False  # one anomaly score per snippet: no class probabilities, no fine-grained mAP
    preset_cls = MILPreset
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
        if not isinstance(preset, MILPreset):
            raise InputError(f"mil needs a MILPreset, got {type(preset).__name__}")
        return attach_input_norm(MILModel(preset, feature_dim, len(classes)), preset.input_norm, feature_dim).to(device)

    ddp_unused_parameters = False  # every parameter takes part in every step

    def loss(self, model: nn.Module, batch: TrainBatch, preset: MethodPreset) -> tuple[Tensor, dict[str, Tensor]]:
        assert isinstance(preset, MILPreset)
        scores = model(batch.feats).float()
        with full_precision(batch.feats.device):  # mixed precision: the forward only
            total, parts = mil_ranking_loss(scores, batch.lengths, batch.anomalous, preset)
        return total, detached_parts(total, parts)

    def bag_topk(self, lengths: Tensor) -> Tensor:
        """The ranking loss scores a bag by its maximum: k = 1."""
        return torch.ones_like(lengths, dtype=torch.long)

    def predict(self, model: nn.Module, feats: Tensor, lengths: Tensor) -> Prediction:
        assert isinstance(model, MILModel)
        with torch.no_grad():
            s = model(feats)
        return Prediction(scores=s, align_scores=s, class_probs=None)  # no class branch: no class probabilities

    def optimizers(
        self, model: nn.Module, preset: MethodPreset, steps_per_epoch: int, *, schedule_iters_per_epoch: int
    ) -> list[OptimSpec]:
        """Adagrad, no schedule."""
        assert isinstance(preset, MILPreset)
        opt = torch.optim.Adagrad(
            [p for p in model.parameters() if p.requires_grad], lr=preset.lr, weight_decay=preset.weight_decay
        )
        return [OptimSpec(optimizer=opt, scheduler=None, step_on="epoch", name="main")]
