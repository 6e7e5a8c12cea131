"""The MIL and text losses shared by VadCLIP and DSANet, vectorised with length masks.

The official code loops over videos (``topk(logits[i, :len_i], k=int(len_i/16+1))`` then
``cat``); here one masked top-k over the padded batch gives the same values (up to float
summation order). ``tests/test_losses_vadclip.py`` keeps the loops as oracles.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .layers import length_mask


def topk_counts(lengths: Tensor, divisor: int = 16) -> Tensor:
    """The official ``k = int(len / 16 + 1)`` per video (B,) long."""
    return torch.div(lengths, divisor, rounding_mode="floor").long() + 1


def masked_topk_mean(values: Tensor, lengths: Tensor, k: Tensor | None = None) -> Tensor:
    """Mean of the ``k[b]`` largest valid values along dim 1: (B, L) -> (B,), (B, L, C) -> (B, C).

    ``k`` defaults to :func:`topk_counts`; positions ``t >= lengths[b]`` never count.
    """
    if k is None:
        k = topk_counts(lengths)
    b, n = values.shape[:2]
    valid = length_mask(lengths, n)
    if values.ndim == 3:
        valid = valid.unsqueeze(-1)
    kmax = int(k.max().clamp(max=n))
    top = values.masked_fill(~valid, float("-inf")).topk(kmax, dim=1).values
    take = torch.arange(kmax, device=values.device).unsqueeze(0) < k.unsqueeze(1)  # (B, kmax)
    if values.ndim == 3:
        take = take.unsqueeze(-1)
    total = torch.where(take, top, torch.zeros_like(top)).sum(dim=1)
    kk = k.to(values.dtype)
    return total / (kk.unsqueeze(-1) if values.ndim == 3 else kk)


def mil_bce_loss(logits1: Tensor, labels: Tensor, lengths: Tensor) -> Tensor:
    """Classifier MIL loss (official ``CLAS2``): BCE on the top-k mean of ``sigmoid(logits1)``.

    ``logits1`` (B, L, 1) or (B, L); ``labels`` (B, C) with the normal class first (target =
    ``1 - labels[:, 0]``).
    """
    probs = torch.sigmoid(logits1.reshape(logits1.shape[0], logits1.shape[1]))
    video = masked_topk_mean(probs, lengths)
    target = (1 - labels[:, 0]).to(video.dtype)
    return F.binary_cross_entropy(video, target)


def mil_soft_ce_loss(logits2: Tensor, labels: Tensor, lengths: Tensor) -> Tensor:
    """Alignment MIL loss (official ``CLASM``): soft cross-entropy of the per-class top-k mean of
    ``logits2`` (B, L, C) with ``labels / sum(labels)``."""
    target = labels / labels.sum(dim=1, keepdim=True)
    video = masked_topk_mean(logits2, lengths)
    return -(target * F.log_softmax(video, dim=1)).sum(dim=1).mean()


def text_separation_loss(text_features: Tensor) -> Tensor:
    """Sum over anomaly classes of ``|t_normal . t_class|`` with L2-normalised features (C, E).

    The official code then divides by a constant (13 UCF, 6 XD) and weighs it; callers do that.
    """
    t = text_features / text_features.norm(dim=-1, keepdim=True)
    return (t[1:] @ t[0]).abs().sum()
