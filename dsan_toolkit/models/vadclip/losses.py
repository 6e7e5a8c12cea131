"""VadCLIP's training loss (``ucf_train.py`` / ``xd_train.py``), vectorised and masked.

``total = cls_mil + align_mil + text_sep_weight * text_sep / divisor`` with

- ``cls_mil``: BCE on the top-k mean (k = len//16 + 1) of ``sigmoid(logits1)`` (``CLAS2``);
- ``align_mil``: soft cross-entropy of the per-class top-k mean of ``logits2`` against
  ``labels / sum(labels)`` (``CLASM``);
- ``text_sep``: sum over anomaly classes of ``|t_normal . t_class|`` (normalised features),
  divided by 13 (UCF) / 6 (XD) -- the official constants -- or by C - 1 when the preset says None.
"""

from __future__ import annotations

from torch import Tensor

from ..common import mil_bce_loss, mil_soft_ce_loss, text_separation_loss
from .model import VadCLIPOutput
from .presets import VadCLIPPreset


def vadclip_loss(
    out: VadCLIPOutput, labels: Tensor, lengths: Tensor, preset: VadCLIPPreset
) -> tuple[Tensor, dict[str, Tensor]]:
    l1 = mil_bce_loss(out.logits1, labels, lengths)
    l2 = mil_soft_ce_loss(out.logits2, labels, lengths)
    divisor = preset.text_sep_divisor if preset.text_sep_divisor is not None else float(out.text_features.shape[0] - 1)
    l3 = text_separation_loss(out.text_features) / divisor
    total = l1 + l2 + preset.text_sep_weight * l3
    return total, {"cls_mil": l1, "align_mil": l2, "text_sep": l3}
