"""Per-dataset values shared by the CLIP-based methods, written once.

DSANet builds on VadCLIP's temporal core and follows the same official protocol, so the
values below are the same in both methods' official option files and training scripts; each
method's presets take them from here and add only their own values (``dsanet/presets.py``,
``vadclip/presets.py``). The existing tests check every preset against the official files.

- :data:`PROTOCOLS`: the training and (test-set) selection protocol of a dataset: snippets per
  training sample, feature width, batch size and composition, epochs, seed, and the official
  in-training test evaluation (cadence, metric, reload of the best weights each epoch).
  ``tiny`` is NOT official: a CPU size for tests and ``dsan demo``.
- :data:`VADCLIP_CORE`: the temporal encoder of a dataset (layers, attention window) and the
  divisor of the text-separation loss (the number of anomaly classes of the official tables;
  ``None``: C - 1 of the manifest).
"""

from __future__ import annotations

from typing import Any

from .. import keys

PROTOCOLS: dict[str, dict[str, Any]] = {
    "ucf": dict(
        name="ucf",
        official=True,
        visual_length=256,
        feature_dim=512,
        batch_size=64,
        batch_composition="paired",
        drop_last=True,
        epochs=10,
        seed=234,
        eval_every_iters=10,
        select_metric=keys.AUC,
        reload_best_each_epoch=True,
    ),
    "xd": dict(
        name="xd",
        official=True,
        visual_length=256,
        feature_dim=512,
        batch_size=96,
        batch_composition="mixed",
        drop_last=False,
        epochs=10,
        seed=234,
        eval_every_iters=None,
        select_metric=keys.AP,
        reload_best_each_epoch=True,
    ),
    "tiny": dict(
        name="tiny",
        official=False,
        visual_length=32,
        feature_dim=512,
        batch_size=8,
        batch_composition="paired",
        drop_last=True,
        epochs=16,
        seed=234,
        eval_every_iters=None,
        select_metric=keys.AUC,
        reload_best_each_epoch=False,
    ),
}

VADCLIP_CORE: dict[str, dict[str, Any]] = {
    "ucf": dict(visual_layers=2, attn_window=8, text_sep_divisor=13.0),
    "xd": dict(visual_layers=1, attn_window=64, text_sep_divisor=6.0),
    "tiny": dict(visual_layers=1, attn_window=8, text_sep_divisor=None),
}


def preset_values(dataset: str, **method_values: Any) -> dict[str, Any]:
    """The protocol and core values of ``dataset`` with a method's own values on top."""
    return {**PROTOCOLS[dataset], **VADCLIP_CORE[dataset], **method_values}
