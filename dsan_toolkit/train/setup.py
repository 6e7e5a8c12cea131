"""Setting up a run: the device, the feature store and its fit, the text encoder, the model, the seeds.

What training (:mod:`~dsan_toolkit.train.run`), evaluation (:mod:`~dsan_toolkit.train.evaluate`)
and ``dsan score`` share, below all of them:

- :func:`resolve_device`: ``--device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``) once, checked;
  ``cuda`` under torchrun is this process's local GPU;
- :func:`open_feature_store`, :func:`resolve_manifest_for`, :func:`check_store_fits`: the store,
  the manifest it is used with, and a clear refusal when they do not fit;
- :func:`text_encoder_spec` / :func:`load_clip_for`: which CLIP text encoder a run uses, and
  loading it; :func:`build_model`, :func:`count_params`;
- :func:`seed_everything`, :func:`determinism_restored`; the selection labels of a run's checkpoints and evaluations
  (:data:`LAST`, :data:`BEST`, :data:`BEST_VAL`).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..manifest.schema import Manifest
from ..models.api import Method
from ..store.protocol import FeatureStoreLike
from ..utils.torchrun import torchrun_env
from .checkpoint import RunConfig

# the selection labels: names of a run's checkpoints (checkpoints/<label>.safetensors), of its
# evaluations (eval/<label>/) and keys of metrics.json's "results"
LAST = "last"
BEST = "best-on-test"  # the official rule: selected on the test split
BEST_VAL = "best-on-val"  # selected on a validation split held out of the training split
SELECTIONS = (LAST, BEST, BEST_VAL)
IN_TRAINING = (BEST, BEST_VAL)  # the selections that evaluate during training and keep the best weights


# ---------------------------------------------------------------------------------------
# device, store, manifest


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise InputError(f"invalid device {device!r} (use cpu, cuda, cuda:N or auto)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but CUDA is not available here")
    return torch.device(torchrun_env().device(str(dev)))


def open_feature_store(path: Path) -> Any:
    from ..store import open_store

    return open_store(Path(path))


def check_store_fits(
    store: FeatureStoreLike,
    manifest: Manifest,
    feature_dim: int,
    *,
    test_crop: int,
    splits: tuple[str, ...] = ("train", "test"),
) -> None:
    """Refuse a store whose manifest, feature dimension or crops do not fit (clear messages)."""
    smf = store.manifest
    problems = []
    if smf.content_hash() != manifest.content_hash():
        if smf.class_codes != manifest.class_codes:
            problems.append(
                f"class tables differ: store {list(smf.class_codes)} vs dataset {list(manifest.class_codes)}"
            )
        if smf.name != manifest.name:
            problems.append(f"the store was made for dataset {smf.name!r}, not {manifest.name!r}")
        if not problems:
            problems.append(
                "the store's embedded manifest differs from the dataset's manifest (other videos or labels)"
            )
    if int(store.feature_dim) != int(feature_dim):
        problems.append(
            f"feature dimension {store.feature_dim} does not fit the preset's {feature_dim} "
            "(features of another backbone?)"
        )
    crops = [int(c) for c in store.crop_ids]
    if test_crop not in crops:
        problems.append(
            f"the store has crops {crops} but the test crop is {test_crop} (the dataset's official test crop; "
            "pass --test-crop to choose another)"
        )
    if problems:
        raise InputError(f"the feature store {_store_path(store)} does not fit:\n  - " + "\n  - ".join(problems))
    have = set(store.video_ids())
    for split in splits:
        ids = [v.id for v in manifest.split(split)]
        if not ids:
            raise InputError(f"the dataset {manifest.name!r} has no {split} videos")
        missing = [v for v in ids if v not in have]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise InputError(
                f"the feature store lacks features of {len(missing)} {split} videos ({shown}); "
                "finish the extraction (`dsan extract` resumes) or check it with `dsan store check`"
            )


def _store_path(store: FeatureStoreLike) -> str:
    return str(getattr(store, "path", "") or "")


def resolve_manifest_for(store: FeatureStoreLike, dataset: str | None) -> Manifest:
    if dataset is None:
        return store.manifest
    from ..manifest.builtin import resolve_manifest

    return resolve_manifest(dataset)


# ---------------------------------------------------------------------------------------
# determinism, CLIP, model


CUBLAS_WORKSPACE = "CUBLAS_WORKSPACE_CONFIG"


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, numpy and torch; ``deterministic`` also switches the process to deterministic
    algorithms (cuDNN, cuBLAS workspace): see :func:`determinism_restored`."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault(CUBLAS_WORKSPACE, ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


@contextmanager
def determinism_restored() -> Iterator[None]:
    """Give back, when the block ends, the process-wide settings that :func:`seed_everything`
    changes for a deterministic run: deterministic algorithms, the cuDNN flags and
    ``CUBLAS_WORKSPACE_CONFIG``."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    cublas = os.environ.get(CUBLAS_WORKSPACE)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
        if cublas is None:
            os.environ.pop(CUBLAS_WORKSPACE, None)
        else:
            os.environ[CUBLAS_WORKSPACE] = cublas


def text_encoder_spec(
    backbone: dict[str, Any], clip_weights: Path | None = None, clip_model: str | None = None
) -> dict[str, Any]:
    """Which CLIP text encoder a run uses: the store's image backbone's own (same model and
    weights), a local weight file (``--clip-weights``; identified by its sha256, the path is a
    runtime field of the run), or, for stores whose backbone is not an open_clip model
    (synthetic features), the tiny random-init text tower (marked random). ``clip_model`` forces
    an architecture (random-init unless ``clip_weights`` is given). Features extracted from a
    local weight file need that same file (``--clip-weights``, checked by sha256)."""
    from ..clip import TINY_MODEL, list_backbones

    if clip_model is not None:
        if clip_model not in list_backbones():
            raise InputError(f"unknown open_clip model {clip_model!r} for --clip-model")
        if clip_weights is None:
            return {
                "model": clip_model,
                "pretrained": None,
                "random_weights": True,
                "seed": 0,
                "reason": "--clip-model without weights",
            }
        backbone = {"model": clip_model}
    model = str(backbone.get("model") or "ViT-B-16")
    if model not in list_backbones():
        return {
            "model": TINY_MODEL,
            "pretrained": None,
            "random_weights": True,
            "seed": 0,
            "reason": f"store backbone {model!r} is not an open_clip model",
        }
    image_sha = None if backbone.get("random_weights") else backbone.get("weights_sha256")
    if clip_weights is not None:
        from ..config import sha256_file

        sha = sha256_file(clip_weights)
        if image_sha and sha != image_sha:
            raise InputError(
                f"--clip-weights {clip_weights} has sha256 {sha[:12]}, but the store's features were extracted with "
                f"the weight file {image_sha[:12]}: the text encoder must be the image encoder's CLIP"
            )
        return {"model": model, "weights_sha256": sha, "random_weights": False}
    if image_sha:
        raise InputError(
            f"the store's features were extracted from a local {model} weight file (sha256 {image_sha[:12]}); "
            "pass --clip-weights FILE, the same file, for the text encoder"
        )
    if backbone.get("random_weights") or model == TINY_MODEL:
        return {"model": model, "pretrained": None, "random_weights": True, "seed": int(backbone.get("seed") or 0)}
    return {"model": model, "pretrained": backbone.get("pretrained") or "openai", "random_weights": False}


def load_clip_for(spec: dict[str, Any], device: torch.device, clip_weights: str | Path | None = None) -> Any:
    """Build the CLIP model of a :func:`text_encoder_spec`; a local weight file (``clip_weights``,
    or the path recorded by runs of earlier versions) must have the spec's sha256."""
    from ..clip import create_clip
    from ..config import sha256_file

    model = str(spec["model"])
    weights = clip_weights or spec.get("weights_file")
    if spec.get("weights_sha256"):
        if weights is None or not Path(str(weights)).is_file():
            where = f" ({weights} not found)" if weights else ""
            raise InputError(
                f"this model's text encoder is a local CLIP weight file (sha256 {str(spec['weights_sha256'])[:12]})"
                f"{where}; pass --clip-weights FILE"
            )
        got = sha256_file(weights)
        if got != spec["weights_sha256"]:
            raise InputError(
                f"--clip-weights {weights} has sha256 {got[:12]}, the model was trained with "
                f"{str(spec['weights_sha256'])[:12]}"
            )
        return create_clip(model, weights=weights, device=device)
    if spec.get("random_weights"):
        return create_clip(model, pretrained=None, device=device, seed=int(spec.get("seed") or 0))
    return create_clip(model, pretrained=spec.get("pretrained") or "openai", device=device)


def build_model(
    method: Method, cfg: RunConfig, manifest: Manifest, device: torch.device, clip_weights: Path | None = None
) -> torch.nn.Module:
    weights = clip_weights or getattr(cfg, "clip_weights", None)
    clip = load_clip_for(cfg.text_encoder, device, weights) if method.needs_clip else None
    model = method.build(cfg.preset, manifest.info.classes, feature_dim=cfg.feature_dim, clip=clip, device=device)
    return model.to(device)


def count_params(model: torch.nn.Module) -> dict[str, int]:
    seen: set[int] = set()
    total = trainable = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return {"total": total, "trainable": trainable}
