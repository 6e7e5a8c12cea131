"""Crop geometry (pure): resize the shorter side, then square crops.

Geometry of crop ``c`` for a frame of ``H x W`` (all integer pixel arithmetic is
torchvision's, which is what CLIP's own preprocessing uses):

1. resize so that the shorter side is ``resize`` and the longer one
   ``int(resize * long / short)`` (bicubic, antialiased; torchvision ``Resize(int)``);
2. cut an ``S x S`` square (``S`` = the model's image size):
   0 = centre (top = ``round((H' - S) / 2)``, left likewise; torchvision ``CenterCrop``),
   1 = top-left, 2 = top-right, 3 = bottom-left, 4 = bottom-right,
   5-9 = the horizontal mirrors of crops 0-4 (crop ``5 + i`` is crop ``i`` flipped left-right).

With ``resize == S`` crop 0 is exactly CLIP's ``Resize(S) + CenterCrop(S)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError

NUM_TEN_CROPS = 10
CROP_NAMES = ("center", "top-left", "top-right", "bottom-left", "bottom-right")
CROP_SETS: dict[str, tuple[int, ...]] = {"center": (0,), "10": tuple(range(NUM_TEN_CROPS))}


@dataclass(frozen=True)
class CropBox:
    crop: int
    top: int
    left: int
    size: int
    flip: bool


def parse_crops(value: str) -> tuple[int, ...]:
    """``center`` -> (0,), ``10`` -> (0, ..., 9)."""
    try:
        return CROP_SETS[str(value)]
    except KeyError:
        raise InputError(f"--crops must be one of {', '.join(CROP_SETS)}, not {value!r}") from None


def resized_size(height: int, width: int, resize: int) -> tuple[int, int]:
    """(H', W') after resizing the shorter side to ``resize`` (torchvision's rounding)."""
    if height <= 0 or width <= 0:
        raise InputError(f"invalid frame size {width}x{height}")
    if height <= width:
        return resize, int(resize * width / height)
    return int(resize * height / width), resize


def crop_box(crop: int, height: int, width: int, size: int) -> CropBox:
    """Where crop ``crop`` lies in a resized ``height x width`` frame."""
    if size > height or size > width:
        raise InputError(f"crop size {size} does not fit a resized frame of {width}x{height}; raise --resize")
    if not 0 <= crop < NUM_TEN_CROPS:
        raise InputError(f"crop ids are 0..9, got {crop}")
    base = crop % 5
    tops = (int(round((height - size) / 2.0)), 0, 0, height - size, height - size)
    lefts = (int(round((width - size) / 2.0)), 0, width - size, 0, width - size)
    return CropBox(crop=crop, top=tops[base], left=lefts[base], size=size, flip=crop >= 5)


def crop_boxes(
    crops: tuple[int, ...], height: int, width: int, resize: int, size: int
) -> tuple[tuple[int, int], list[CropBox]]:
    """The resized frame size and the boxes of ``crops`` for a source frame ``height x width``."""
    h, w = resized_size(height, width, resize)
    return (h, w), [crop_box(c, h, w, size) for c in crops]
