"""VadCLIP presets: ``ucf`` and ``xd`` equal the official option files (nwpu-zxr/VadCLIP
``src/ucf_option.py``, ``src/xd_option.py``) and training scripts; ``tiny`` is NOT official.

Official values (and where they come from):

- UCF: width 512, 1 head, 2 layers, window 8, prompt prefix/postfix 10, 14 classes, 10 epochs,
  batch 64 normal + 64 anomalous (two loaders, ``drop_last=True``), AdamW lr 2e-5 (weight decay
  0.01 = the AdamW default), MultiStepLR milestones [4, 8] gamma 0.1 stepped per epoch, seed
  234, loss ``l1 + l2 + 0.1 * l3 / 13``; test-set selection every 10 iterations on the
  classifier AUC (``ucf_train.py``: ``AP = AUC``).
- XD: 1 layer, window 64, 7 classes, batch 96 (one shuffled loader, last batch kept), lr 1e-5,
  milestones [3, 6, 10], loss ``l1 + l2 + 1e-4 * l3 / 6``; selection after each epoch on the
  alignment AP (``xd_test.py`` returns the AP of ``1 - softmax(logits2)[:, 0]``).
- ``tiny``: 1 layer, visual length 32, batch 8 + 8, 16 epochs, lr 3e-4 (milestone 12), and the
  NON-official ``input_norm="standardize"`` (features standardised with training-split statistics
  kept in the model, see :mod:`dsan_toolkit.models.input_norm`; ``ucf``/``xd`` keep ``"none"``) --
  a CPU demo (``dsan demo``), not a reproduction.
"""

from __future__ import annotations

from dataclasses import dataclass

from ... import keys
from ...config import register_config
from ..api import MethodPreset
from ..input_norm import check_input_norm
from ..protocols import preset_values


@register_config
@dataclass(frozen=True)
class VadCLIPPreset(MethodPreset):
    embed_dim: int = 512
    visual_width: int = 512
    visual_heads: int = 1
    visual_layers: int = 2
    attn_window: int = 8
    prompt_prefix: int = 10
    prompt_postfix: int = 10
    temperature: float = 0.07
    # optimisation
    weight_decay: float = 0.01
    scheduler_milestones: tuple[int, ...] = (4, 8)
    scheduler_gamma: float = 0.1
    # loss = cls_mil + align_mil + text_sep_weight * text_sep / text_sep_divisor (None: C - 1)
    text_sep_weight: float = 0.1
    text_sep_divisor: float | None = 13.0
    # deviations from the official code (defaults = official behaviour)
    mask_padding_attention: bool = False
    sim_threshold: float = 0.7
    sim_cut: str = "zero"
    mask_distance_graph: bool = False
    # exact speed-up: the causal CLIP text tower runs only up to the last EOT position (the
    # official code runs all 77); False runs the full context
    truncate_text_context: bool = True
    # NOT official: "none" (official) | "center" | "standardize" the input features with training-split
    # statistics kept in the model (dsan_toolkit.models.input_norm); only the tiny preset uses it
    input_norm: str = "none"

    def __post_init__(self) -> None:
        check_input_norm(self.input_norm)


UCF = VadCLIPPreset(**preset_values("ucf", lr=2e-5, scheduler_milestones=(4, 8), text_sep_weight=0.1))

XD = VadCLIPPreset(
    **preset_values(
        "xd",
        lr=1e-5,
        select_metric=keys.AP_ALIGN,
        scheduler_milestones=(3, 6, 10),
        text_sep_weight=1e-4,
    )
)

TINY = VadCLIPPreset(
    **preset_values(
        "tiny",
        lr=3e-4,
        prompt_prefix=4,
        prompt_postfix=4,
        scheduler_milestones=(12,),
        text_sep_weight=0.1,
        input_norm="standardize",
    )
)

PRESETS: dict[str, VadCLIPPreset] = {p.name: p for p in (UCF, XD, TINY)}
