"""The method API: the contract between the models and the training / evaluation code.

A *method* (``dsanet``, ``vadclip``, ``mil``, ``zeroshot``) is a :class:`Method` subclass
registered under an explicit name with :func:`dsan_toolkit.models.registry.register_method`.
It owns

- a frozen, ``@register_config`` preset dataclass (a subclass of :class:`MethodPreset`)
  holding every hyperparameter of the official option files, with named presets ``ucf`` and
  ``xd`` (equal to the official defaults) and a clearly non-official ``tiny`` preset for CPU
  demos and tests;
- ``build`` (an ``nn.Module``), ``loss`` (vectorised, masked by ``lengths``), ``predict``
  (one forward on a batch of 256-snippet chunks) and ``optimizers``.

``loss`` may be given the model wrapped for data-parallel training (a
``DistributedDataParallel``): it calls the forward through the object it is given (so the
wrapper's gradient hooks run) and reaches the network's attributes through
:func:`unwrap_model`. Its named parts are detached tensors, not Python floats: the trainer
reads them at its logging cadence in one transfer, not once per step.

Training code never looks inside a model; it only calls these four functions.

Batch composition (what the official code does, recorded in ``MethodPreset.batch_composition``):

- ``"paired"`` (UCF-Crime): two shuffled loaders with ``drop_last=True``, one over normal
  training samples and one over anomalous ones, each of ``batch_size``; a step takes one batch
  of each and concatenates them **normal half first, anomalous half second** (so a
  :class:`TrainBatch` has ``2 * batch_size`` rows); an epoch is
  ``min(len(normal_loader), len(anomaly_loader))`` steps.
- ``"mixed"`` (XD-Violence): one shuffled loader over all training samples, ``batch_size``
  rows, last partial batch kept (``drop_last=False``).

Every crop of every training video is a separate sample (10 crops in the official features).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from .. import keys
from ..errors import InputError
from ..manifest.schema import ClassInfo

StepOn = Literal["epoch", "iter"]


@dataclass(frozen=True)
class MethodPreset:
    """Fields every method preset has (training protocol); methods add their own fields.

    ``eval_every_iters`` and ``select_metric`` describe the official *test-set* model selection
    (only used with ``--select best-on-test``): UCF evaluates every 10 iterations and keeps the
    best classifier AUC; XD evaluates after each epoch (``eval_every_iters=None``) and keeps
    the best AP (``"ap"`` classifier score, ``"ap_align"`` alignment score; keys of :mod:`dsan_toolkit.keys`).
    ``reload_best_each_epoch``: the official loops load the best-so-far weights back into the
    model at the end of each epoch (optimiser and scheduler state kept).
    """

    name: str = "custom"
    official: bool = False
    visual_length: int = 256
    feature_dim: int = 512
    batch_size: int = 64
    batch_composition: str = "paired"  # "paired" (normal half + anomalous half) | "mixed"
    drop_last: bool = True
    epochs: int = 10
    seed: int = 234
    lr: float = 2e-5
    eval_every_iters: int | None = 10
    select_metric: str = keys.AUC  # one of keys.SELECTION_METRICS: "auc" | "ap" | "auc_align" | "ap_align"
    reload_best_each_epoch: bool = True

    def replace(self, **changes: Any) -> MethodPreset:
        """A copy with some fields changed (unknown fields -> InputError)."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = set(changes) - names
        if unknown:
            raise InputError(f"{type(self).__name__}: unknown preset fields {sorted(unknown)}")
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class TrainBatch:
    """One training batch, already resampled to ``visual_length``.

    feats (B, L, D) float; lengths (B,) long (valid snippets, >= 1); labels (B, C) float
    multi-hot over the class table (the normal class set for normal videos); anomalous (B,)
    bool. Paired batches put the normal half first (see the module docstring).
    """

    feats: Tensor
    lengths: Tensor
    labels: Tensor
    anomalous: Tensor

    def to(self, device: str | torch.device) -> TrainBatch:
        return TrainBatch(
            feats=self.feats.to(device, non_blocking=True),
            lengths=self.lengths.to(device, non_blocking=True),
            labels=self.labels.to(device, non_blocking=True),
            anomalous=self.anomalous.to(device, non_blocking=True),
        )

    @property
    def batch_size(self) -> int:
        return int(self.feats.shape[0])


@dataclass(frozen=True)
class Prediction:
    """Per-snippet outputs of a method.

    scores (B, L): anomaly score in [0, 1] of the classifier branch (``sigmoid(logits1)``);
    align_scores (B, L): the second branch's anomaly score (VadCLIP ``1 - softmax(logits2)[..., 0]``);
    class_probs (B, L, C): class probabilities for the fine-grained mAP (normal class first);
    ``None`` for a method without a class branch (``Method.has_class_branch`` False): it has no
    fine-grained detection mAP, rather than one computed from made-up probabilities.
    For a single video (from :func:`~dsan_toolkit.models.sampling.predict_video`) B is absent:
    scores (T,), align_scores (T,), class_probs (T, C).
    """

    scores: Tensor
    align_scores: Tensor
    class_probs: Tensor | None

    def map(self, fn: Any) -> Prediction:
        return Prediction(
            fn(self.scores), fn(self.align_scores), None if self.class_probs is None else fn(self.class_probs)
        )

    def detach_cpu(self) -> Prediction:
        return self.map(lambda t: t.detach().float().cpu())


@dataclass
class OptimSpec:
    """An optimiser with its scheduler and when to step the scheduler (``"epoch"`` or ``"iter"``)."""

    optimizer: torch.optim.Optimizer
    scheduler: Any | None = None
    step_on: StepOn = "epoch"
    name: str = "main"


class Method(ABC):
    """A registered method. Instances are stateless; state lives in the model and optimisers."""

    name: ClassVar[str] = ""
    trainable: ClassVar[bool] = True
    preset_cls: ClassVar[type[MethodPreset]] = MethodPreset
    presets: ClassVar[dict[str, MethodPreset]] = {}

    def get_preset(self, name: str = "ucf", **overrides: Any) -> MethodPreset:
        """A named preset, optionally with some fields changed."""
        if name not in self.presets:
            raise InputError(f"method {self.name!r} has no preset {name!r}; known: {sorted(self.presets)}")
        preset = self.presets[name]
        return preset.replace(**overrides) if overrides else preset

    @abstractmethod
    def build(
        self,
        preset: MethodPreset,
        classes: Sequence[ClassInfo],
        *,
        feature_dim: int,
        clip: Any | None,
        device: str | torch.device = "cpu",
    ) -> nn.Module:
        """The network for ``classes`` (the manifest's class table, normal class first).

        ``clip`` is a :class:`dsan_toolkit.clip.ClipBundle` for methods with a text branch
        (``needs_clip``); the model records ``clip.info`` (random weights are marked).
        """

    @abstractmethod
    def loss(self, model: nn.Module, batch: TrainBatch, preset: MethodPreset) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss (scalar, differentiable) and its named parts as detached scalar tensors on
        the batch device (``loss`` among them). ``model`` may be the data-parallel wrapper:
        call the forward through it, reach attributes through :func:`unwrap_model`."""

    @abstractmethod
    def predict(self, model: nn.Module, feats: Tensor, lengths: Tensor) -> Prediction:
        """Per-snippet outputs for a batch of chunks ``feats`` (B, L, D), ``lengths`` (B,)."""

    def optimizers(
        self, model: nn.Module, preset: MethodPreset, steps_per_epoch: int, *, schedule_iters_per_epoch: int
    ) -> list[OptimSpec]:
        """Optimisers and schedulers as the official code builds them (none for training-free methods).

        ``steps_per_epoch``: the optimiser steps an epoch runs. ``schedule_iters_per_epoch``: the
        iterations per epoch the official code sizes a per-iteration schedule for, the sum of
        its loaders' lengths (paired batches: the normal and the anomalous loader, about twice
        the steps that run; mixed: the steps). Training always passes both."""
        return []

    def bag_topk(self, lengths: Tensor) -> Tensor:
        """k per video (B,) long of the method's video-level (bag) score: the mean of a video's
        k highest snippet scores, as its MIL loss pools them (default: the official
        ``k = T // 16 + 1``). Used to score videos that have only a video-level label."""
        from .common.losses import topk_counts

        return topk_counts(lengths)

    needs_clip: ClassVar[bool] = True
    # data-parallel training: True when some trainable parameter gets no gradient on some
    # training step (DSANet and VadCLIP: the distance graph's ``sigma`` is never used), so the
    # wrapper looks for such parameters after every forward (``find_unused_parameters``); a
    # method whose every trainable parameter takes part in every step sets False (cheaper)
    ddp_unused_parameters: ClassVar[bool] = True
    # True: ``predict`` returns class probabilities of the method's own (a fine-grained branch),
    # so the fine-grained detection mAP and the class confusion mean something. False: the
    # method predicts one anomaly score per snippet and ``class_probs`` is None; reports show
    # neither metric (n/a).
    has_class_branch: ClassVar[bool] = True

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "presets": sorted(self.presets),
            "needs_clip": self.needs_clip,
            "has_class_branch": self.has_class_branch,
        }


def unwrap_model(model: nn.Module) -> nn.Module:
    """The network inside a data-parallel wrapper (``DistributedDataParallel`` keeps it as
    ``.module``); any other module as it is."""
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model


def float_outputs(out: Any) -> Any:
    """A model output dataclass with its floating tensors in float32: under mixed precision
    (autocast) the losses are computed from float32 outputs, with autocast off
    (:func:`full_precision`); in float32 training this returns the same tensors."""
    changes = {
        f.name: v.float()
        for f in dataclasses.fields(out)
        if isinstance(v := getattr(out, f.name), Tensor) and v.is_floating_point()
    }
    return dataclasses.replace(out, **changes)


def full_precision(device: torch.device | str) -> Any:
    """A context without autocast on ``device``'s type (the losses of a mixed-precision step)."""
    return torch.autocast(device_type=torch.device(device).type, enabled=False)


def detached_parts(total: Tensor, parts: dict[str, Tensor]) -> dict[str, Tensor]:
    """The logged parts of a loss: each part and the total (``loss``), detached (no host
    transfer: the trainer reads them later, all at once)."""
    logs = {k: v.detach() for k, v in parts.items()}
    logs["loss"] = total.detach()
    return logs


def class_prompts(classes: Sequence[ClassInfo]) -> list[str]:
    """The CLIP prompt of each class, normal class first (refuses a table without one)."""
    if not classes:
        raise InputError("the class table is empty")
    if not classes[0].normal:
        raise InputError(f"the first class must be the normal class, got {classes[0].code!r}")
    return [c.prompt for c in classes]


def text_method_prompts(
    method: str, preset: Any, preset_cls: type, classes: Sequence[ClassInfo], clip: Any
) -> list[str]:
    """The checks every method with a CLIP text branch makes before building: the right preset
    type, a CLIP bundle, a normal class and at least one anomaly class. Returns the prompts."""
    if not isinstance(preset, preset_cls):
        raise InputError(f"{method} needs a {preset_cls.__name__}, got {type(preset).__name__}")
    if clip is None:
        raise InputError(f"{method} needs a CLIP model for its text branch (clip=create_clip(...))")
    prompts = class_prompts(classes)
    if len(prompts) < 2:
        raise InputError(f"{method} needs a normal class and at least one anomaly class")
    return prompts


def labels_from_codes(codes: Sequence[Sequence[str]], classes: Sequence[ClassInfo]) -> Tensor:
    """Multi-hot (N, C) labels from each video's class codes (unknown codes -> InputError)."""
    index = {c.code: i for i, c in enumerate(classes)}
    out = torch.zeros(len(codes), len(classes))
    rows, cols = [], []
    for r, video_codes in enumerate(codes):
        for code in video_codes:
            if code not in index:
                raise InputError(f"label {code!r} is not in the class table {sorted(index)}")
            rows.append(r)
            cols.append(index[code])
    if rows:
        out[torch.tensor(rows), torch.tensor(cols)] = 1.0
    return out
