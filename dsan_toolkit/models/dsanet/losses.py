"""DSANet's training losses (lessiYin/DSANet ``src/ucf_train.py`` / ``src/xd_train.py``),
vectorised over the padded batch with length masks (no per-video loops).

``total = cls + w * align + sep + event + background + consistency + gather`` with the normality
branch on (w = 1.1 UCF / 5.0 XD); the official code adds ``align`` with weight 1 when the
branch is off (``DNP_use=False``), and so does :func:`dsanet_loss`.

- ``cls``: BCE on the top-k mean (k = len//16 + 1) of ``sigmoid(logits1)`` (``CLAS2``);
- ``align``: soft cross-entropy of the per-class top-k mean of ``logits2`` against
  ``labels / sum(labels)`` (``CLASM``);
- ``sep``: sum over anomaly classes of ``|t_normal . t_class|`` / 13 (UCF) or 6 (XD);
- ``event``: soft cross-entropy of ``logits3`` (one pooled row per video, so the official top-1
  is the row itself) against the label-smoothed ``(1 - eps) * labels / sum + eps / C`` (``CLASM_EVENT``);
- ``background``: the same on ``logits4`` against a fixed target, 1 for the normal class and 0.01
  for every other, normalised then smoothed, for every video (``CLASM_BKG``);
- ``consistency``: MSE over valid snippets between ``sigmoid(logits1)`` and the reconstruction
  error ``(1 - cos(X, X_rec)) / 2`` (not detached, as the official ``ConsistencyLoss``);
- ``gather``: from the normality branch (mean distance of the selected normal snippets to their
  nearest normal pattern).

``tests/test_losses_dsanet.py`` keeps the official loops as oracles.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..common import length_mask, mil_bce_loss, mil_soft_ce_loss, text_separation_loss
from .model import DSANetOutput
from .presets import DSANetPreset


def smoothed_targets(labels: Tensor, epsilon: float) -> Tensor:
    """``(1 - eps) * labels / sum(labels) + eps / C`` (sum clamped at 1e-6, as the official)."""
    c = labels.shape[1]
    return (1 - epsilon) * (labels / labels.sum(dim=1, keepdim=True).clamp(min=1e-6)) + epsilon / c


def background_targets(labels: Tensor, epsilon: float, floor: float = 0.01) -> Tensor:
    """The official background target: ``floor`` everywhere, 1 at the normal class (column 0),
    normalised, then smoothed; the same row for every video."""
    t = torch.full_like(labels, floor)
    t[:, 0] = 1.0
    return smoothed_targets(t, epsilon)


def soft_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """``-mean_b sum_c target * log_softmax(logits)`` for (B, C) logits."""
    return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def pooled_row(logits: Tensor) -> Tensor:
    """(B, 1, C) -> (B, C): the official top-1 over a single pooled row is the row itself."""
    if logits.ndim != 3 or logits.shape[1] != 1:
        raise ValueError(f"expected pooled logits of shape (B, 1, C), got {tuple(logits.shape)}")
    return logits[:, 0]


def event_loss(logits3: Tensor, labels: Tensor, epsilon: float = 0.1) -> Tensor:
    """``CLASM_EVENT``: event-pooled logits (B, 1, C) vs label-smoothed video labels."""
    return soft_cross_entropy(pooled_row(logits3), smoothed_targets(labels.to(logits3.dtype), epsilon))


def background_loss(logits4: Tensor, labels: Tensor, epsilon: float = 0.1, floor: float = 0.01) -> Tensor:
    """``CLASM_BKG``: background-pooled logits (B, 1, C) vs the fixed "mostly normal" target."""
    return soft_cross_entropy(pooled_row(logits4), background_targets(labels.to(logits4.dtype), epsilon, floor))


def consistency_loss(logits1: Tensor, original: Tensor, reconstructed: Tensor, lengths: Tensor) -> Tensor:
    """MSE over valid positions between ``sigmoid(logits1)`` and ``(1 - cos(original, reconstructed)) / 2``."""
    b, n = original.shape[:2]
    error = (1.0 - F.cosine_similarity(original, reconstructed, dim=-1)) / 2.0
    probs = torch.sigmoid(logits1.reshape(b, n))
    valid = length_mask(lengths, n).to(error.dtype)
    return ((probs - error).square() * valid).sum() / valid.sum()


def dsanet_loss(
    out: DSANetOutput, labels: Tensor, lengths: Tensor, preset: DSANetPreset
) -> tuple[Tensor, dict[str, Tensor]]:
    """Total loss and its named parts (each a scalar tensor)."""
    labels = labels.to(out.logits2.dtype)
    parts: dict[str, Tensor] = {
        "cls_mil": mil_bce_loss(out.logits1, labels, lengths),
        "align_mil": mil_soft_ce_loss(out.logits2, labels, lengths),
    }
    divisor = preset.text_sep_divisor if preset.text_sep_divisor is not None else float(out.text_features.shape[0] - 1)
    parts["text_sep"] = text_separation_loss(out.text_features) / divisor
    if preset.use_event_background:
        if out.logits3 is None or out.logits4 is None:
            raise ValueError("the model output has no event/background logits")
        parts["event"] = event_loss(out.logits3, labels, preset.label_smoothing)
        parts["background"] = background_loss(out.logits4, labels, preset.label_smoothing, preset.background_floor)
    if preset.use_normality:
        if out.reconstructed is None or out.gather_loss is None:
            raise ValueError("the model output has no normality-branch outputs")
        parts["consistency"] = consistency_loss(out.logits1, out.visual, out.reconstructed, lengths)
        parts["gather"] = out.gather_loss
    # summed in the official order: l1 + w * l2 + l3 + l4 + l5 (+ consistency + gather)
    w = preset.align_weight if preset.use_normality else 1.0
    total = parts["cls_mil"] + w * parts["align_mil"] + parts["text_sep"]
    for name in ("event", "background", "consistency", "gather"):
        if name in parts:
            total = total + parts[name]
    return total, parts


__all__ = [
    "smoothed_targets",
    "background_targets",
    "soft_cross_entropy",
    "event_loss",
    "background_loss",
    "consistency_loss",
    "dsanet_loss",
]
