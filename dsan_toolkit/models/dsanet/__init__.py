"""DSANet (lessiYin/DSANet), re-implemented faithfully: model, losses, optimisers, presets."""

from .losses import dsanet_loss
from .method import DSANetMethod
from .model import DSANetModel, DSANetOutput, build_dsanet, refine_scores_hierarchical
from .optim import StableAdamW, WarmCosineSchedule, build_optimizers
from .presets import ABLATIONS, PRESETS, DSANetPreset, ablation

__all__ = [
    "dsanet_loss",
    "DSANetMethod",
    "DSANetModel",
    "DSANetOutput",
    "build_dsanet",
    "refine_scores_hierarchical",
    "StableAdamW",
    "WarmCosineSchedule",
    "build_optimizers",
    "ABLATIONS",
    "PRESETS",
    "DSANetPreset",
    "ablation",
]
