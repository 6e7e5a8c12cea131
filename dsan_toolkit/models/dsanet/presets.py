"""DSANet presets: ``ucf`` and ``xd`` equal the official option files and training scripts
(lessiYin/DSANet ``src/ucf_option.py``, ``src/xd_option.py``, ``src/ucf_train.py``,
``src/xd_train.py``, ``src/*_test.py``); ``tiny`` is NOT official (a CPU demo / test size).

Official values (and where they come from):

- both: visual length 256, width 512, 1 head, embed dim 512, seed 234, 10 epochs; normality
  branch on (``DNP_use``) with 16 prototypes, 1 aggregation block, 8 decoder blocks, 8 heads,
  MLP ratio 4, LayerNorm eps 1e-8, normal-selection ratio 0.8; alignment temperature 0.07,
  pooling scale 10 (the ``scale`` argument of ``forward``), label smoothing 0.1 and background
  floor 0.01 (``CLASM_EVENT`` / ``CLASM_BKG``); main optimiser AdamW (torch defaults: weight
  decay 0.01) with ``CosineAnnealingLR(T_max=epochs)`` stepped per epoch; the normality branch's
  StableAdamW (betas 0.9/0.999, weight decay 1e-4, amsgrad, eps 1e-10, clip threshold 1) with
  the warm-up cosine schedule (100 warm-up iterations from 0, final lr = 0.1 * lr) stepped per
  iteration and sized for ``epochs * (len(normal_loader) + len(anomaly_loader))`` iterations.
- UCF: 2 temporal layers, window 8, 14 classes, batch 64 normal + 64 anomalous (two loaders,
  ``drop_last=True``), lr 7e-5, text adapter on the first 3 text layers with weight 0.1,
  alignment-loss weight 1.1, text-separation divisor 13, refinement temperature 5; test-set
  selection every 10 iterations on the classifier AUC (``AP = AUC`` in ``ucf_train.py``).
- XD: 1 temporal layer, window 64, 7 classes, batch 96 (one shuffled loader, last batch kept),
  lr 1e-5, text adapter on the first text layer with weight 0.6, alignment-loss weight 5.0,
  divisor 6, refinement temperature 1; selection after each epoch on the classifier AP. The
  refiner schedule is sized for ``epochs * len(train_loader)`` (what runs).

Ablation switches (the paper's ablation table): ``use_normality`` (the official ``DNP_use``),
``use_event_background``, ``use_text_adapter``, ``use_refinement``. Deviations from the official
code are fields too, all defaulting to the official behaviour (see docs/models.md, ``## DSANet``).
The NON-official input standardisation ``input_norm`` (:mod:`dsan_toolkit.models.input_norm`) is
``none`` in ``ucf``/``xd``; ``tiny`` standardises (the demo's random-CLIP features).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...config import register_config
from ...errors import InputError
from ..api import MethodPreset
from ..input_norm import check_input_norm
from ..protocols import preset_values


@register_config
@dataclass(frozen=True)
class DSANetPreset(MethodPreset):
    # ---- temporal encoder (shared with VadCLIP) and heads
    embed_dim: int = 512
    visual_width: int = 512
    visual_heads: int = 1
    visual_layers: int = 2
    attn_window: int = 8
    prompt_prefix: int = 10  # in the official option files, unused by DSANet
    prompt_postfix: int = 10  # in the official option files, unused by DSANet
    align_temperature: float = 0.07
    pool_scale: float = 10.0
    # ---- text branch: CLIP text tower + text adapter
    use_text_adapter: bool = True
    text_adapt_until: int = 3
    text_adapter_weight: float = 0.1  # official t_w
    # ---- self-guided normality modelling branch (official SGNM / "DNP")
    use_normality: bool = True
    num_prototypes: int = 16
    extractor_depth: int = 1
    decoder_depth: int = 8
    normality_heads: int = 8
    normality_mlp_ratio: float = 4.0
    normality_ln_eps: float = 1e-8
    normal_selection_ratio: float = 0.8
    # ---- decoupled event / background alignment
    use_event_background: bool = True
    label_smoothing: float = 0.1
    background_floor: float = 0.01
    # ---- hierarchical score refinement at test time
    use_refinement: bool = True
    refine_temp: float = 5.0
    # ---- losses: total = cls + w * align + sep / divisor + event + background + consistency + gather
    align_weight: float = 1.1  # official loss2_weight (only applied with the normality branch on, as the official code)
    text_sep_divisor: float | None = 13.0  # None: C - 1
    # ---- optimisation
    weight_decay: float = 0.01  # main AdamW (torch default, as the official code)
    refiner_weight_decay: float = 1e-4
    refiner_betas: tuple[float, float] = (0.9, 0.999)
    refiner_eps: float = 1e-10
    refiner_amsgrad: bool = True
    refiner_clip_threshold: float = 1.0
    refiner_warmup_iters: int = 100
    refiner_final_lr_ratio: float = 0.1
    # "loaders": sized as the official code, for the sum of the loaders' lengths per epoch (paired
    # batches: about twice the steps that run); "steps": for the steps that run
    refiner_schedule: str = "loaders"
    # ---- deviations from the official code (defaults = official behaviour)
    mask_padding_attention: bool = False  # official: padding takes part in the windowed attention
    mask_padding_pooling: bool = False  # official: event/background pooling over all positions
    mask_padding_selection: bool = False  # official: normal snippets picked among all positions
    sim_threshold: float = 0.7
    sim_cut: str = "zero"
    mask_distance_graph: bool = False
    text_cache: str = "official"  # "official": eval-mode cache never cleared; "refresh": cleared by train()
    truncate_text_context: bool = True  # exact speed-up: the causal text tower only needs tokens up to EOT
    # NON-official input standardisation (models.input_norm): "none" (official) | "center" | "standardize"
    input_norm: str = "none"

    def __post_init__(self) -> None:
        if self.visual_length % self.attn_window:
            raise InputError(f"attn_window {self.attn_window} must divide visual_length {self.visual_length}")
        if not 0.0 < self.normal_selection_ratio <= 1.0:
            raise InputError(f"normal_selection_ratio must be in (0, 1], got {self.normal_selection_ratio}")
        if int(self.visual_length * self.normal_selection_ratio) < 1:
            raise InputError("normal_selection_ratio * visual_length selects no snippet")
        if self.visual_width % self.normality_heads:
            raise InputError(f"normality_heads {self.normality_heads} must divide visual_width {self.visual_width}")
        if self.text_cache not in ("official", "refresh"):
            raise InputError(f"text_cache must be 'official' or 'refresh', got {self.text_cache!r}")
        if self.sim_cut not in ("zero", "exclude"):
            raise InputError(f"sim_cut must be 'zero' or 'exclude', got {self.sim_cut!r}")
        if self.refiner_schedule not in ("loaders", "steps"):
            raise InputError(f"refiner_schedule must be 'loaders' or 'steps', got {self.refiner_schedule!r}")
        check_input_norm(self.input_norm)
        if self.text_adapt_until < 0:
            raise InputError("text_adapt_until must be >= 0")


UCF = DSANetPreset(
    **preset_values(
        "ucf",
        lr=7e-5,
        text_adapt_until=3,
        text_adapter_weight=0.1,
        refine_temp=5.0,
        align_weight=1.1,
    )
)

XD = DSANetPreset(
    **preset_values(
        "xd",
        lr=1e-5,
        text_adapt_until=1,
        text_adapter_weight=0.6,
        refine_temp=1.0,
        align_weight=5.0,
    )
)

TINY = DSANetPreset(
    **preset_values(
        "tiny",
        lr=2e-4,
        text_adapt_until=1,
        text_adapter_weight=0.1,
        num_prototypes=4,
        decoder_depth=1,
        normality_mlp_ratio=1.0,
        refine_temp=5.0,
        align_weight=1.1,
        refiner_warmup_iters=5,
        input_norm="standardize",
    )
)

PRESETS: dict[str, DSANetPreset] = {p.name: p for p in (UCF, XD, TINY)}

#: The ablation switches and what turning each off means (recorded in the run config).
ABLATIONS: dict[str, str] = {
    "use_normality": "self-guided normality modelling branch (prototypes, reconstruction, consistency and gather losses)",
    "use_event_background": "decoupled event/background contrastive alignment (losses l4, l5)",
    "use_text_adapter": "text adapter; off = plain frozen CLIP text features (official encode_text(adapt_text=False))",
    "use_refinement": "hierarchical score refinement at test time; off = softmax(logits2) class probabilities",
}


def ablation(preset: DSANetPreset, *off: str) -> DSANetPreset:
    """``preset`` with the named ablation switches turned off (e.g. ``ablation(UCF, "use_normality")``)."""
    unknown = [name for name in off if name not in ABLATIONS]
    if unknown:
        raise InputError(f"unknown DSANet ablation switches {unknown}; known: {sorted(ABLATIONS)}")
    suffix = "-".join(name.removeprefix("use_") for name in off)
    return preset.replace(
        **{name: False for name in off},
        name=f"{preset.name}-no-{suffix}" if off else preset.name,
        official=preset.official and not off,
    )  # type: ignore[return-value]
