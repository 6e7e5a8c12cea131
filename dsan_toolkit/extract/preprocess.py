"""Batched frame preprocessing on the device: uint8 frames -> normalised square crops.

The geometry is :mod:`dsan_toolkit.decode.crops`. Resizing is bicubic (or bilinear) with
antialiasing, then rounded and clamped to 0..255 as PIL does when CLIP's own transform runs on
an 8-bit image, so crop 0 with ``resize == image_size`` reproduces CLIP's preprocessing up to
interpolation rounding.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..decode.crops import crop_boxes


def preprocess_frames(
    frames: torch.Tensor,
    crops: Sequence[int],
    *,
    resize: int,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    interpolation: str = "bicubic",
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """(N, H, W, 3) uint8 on any device -> (N, C, 3, size, size) float32 normalised crops.

    Work is per resized frame (normalise once, mirror once), then one gather of the crops
    into ``out`` (a preallocated (N, C, 3, size, size) tensor, e.g. a slice of a model batch).
    """
    n, h, w, _ = frames.shape
    (rh, rw), boxes = crop_boxes(tuple(crops), h, w, resize, size)
    x = frames.permute(0, 3, 1, 2).float()
    if (rh, rw) != (h, w):
        x = F.interpolate(x, size=(rh, rw), mode=interpolation, align_corners=False, antialias=True)
        x = x.round_().clamp_(0.0, 255.0)
    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1) * 255.0
    s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1) * 255.0
    x = x.sub_(m).div_(s) if x.data_ptr() != frames.data_ptr() else (x - m) / s
    xf = x.flip(-1) if any(b.flip for b in boxes) else None
    views = []
    for b in boxes:  # at most 10 views, no per-frame work; a mirror crop is a box of the mirrored frame
        src, left = (xf, rw - b.left - b.size) if b.flip else (x, b.left)
        views.append(src[:, :, b.top : b.top + b.size, left : left + b.size])
    if out is None:
        out = torch.empty((n, len(boxes), 3, size, size), device=x.device, dtype=x.dtype)
    torch.stack(views, dim=1, out=out)
    return out
