"""VadCLIP (Wu et al., AAAI 2024; github nwpu-zxr/VadCLIP), re-implemented faithfully."""

from .losses import vadclip_loss
from .method import VadCLIPMethod
from .model import VadCLIPModel, VadCLIPOutput, build_vadclip
from .presets import PRESETS, VadCLIPPreset

__all__ = [
    "vadclip_loss",
    "VadCLIPMethod",
    "VadCLIPModel",
    "VadCLIPOutput",
    "build_vadclip",
    "PRESETS",
    "VadCLIPPreset",
]
