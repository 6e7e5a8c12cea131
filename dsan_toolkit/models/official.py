"""The authors' released checkpoints <-> our models, through explicit key-mapping tables.

``load_official_checkpoint(method, path, preset="ucf")`` reads an official ``.pth`` (a plain
state dict with the official key names, the frozen CLIP ViT-B/16 included) with
``torch.load(weights_only=True)`` -- never unpickling -- maps every key through the method's
:class:`KeyMap`, and loads it with ``strict=True`` into a freshly built model whose CLIP text
tower (an open_clip ``ViT-B-16`` architecture) takes the checkpoint's CLIP weights, so no
separate CLIP download is needed. The CLIP image tower (``clipmodel.visual.*``) is not part of
our models (features are precomputed); its tensors are kept in :class:`OfficialLoad.extras`
so that ``to_official_state_dict(model, extras)`` rebuilds the file's state dict exactly.

Key maps are data, registered per method (``register_keymap``); DSANet registers its own
(where ``clipmodel.*`` and ``clip_adapter.clipmodel.*`` both map to one text tower and must hold
equal tensors).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..clip import BackboneInfo, ClipBundle, create_clip, load_state_dict_file
from ..config import sha256_file
from ..errors import InputError
from ..manifest.schema import ClassInfo
from .api import Method
from .input_norm import BUFFER_KEYS, is_identity
from .registry import get_method


@dataclass(frozen=True)
class KeyMap:
    """Prefix rules ``(official_prefix, our_prefix)`` (first match wins) and dropped prefixes.

    Several official prefixes may map to one of ours (duplicated modules); exporting writes
    every one of them.
    """

    rules: tuple[tuple[str, str], ...]
    dropped: tuple[str, ...] = ()
    clip_model: str = "ViT-B-16-quickgelu"  # open_clip architecture of the embedded CLIP (OpenAI: QuickGELU)

    def to_ours(self, key: str) -> str | None:
        """Our key for an official key, None for a dropped key; InputError for an unknown key."""
        for off, ours in self.rules:
            if key.startswith(off) or key == off.rstrip("."):
                return ours + key[len(off) :] if key.startswith(off) else ours.rstrip(".")
        if any(key.startswith(d) or key == d.rstrip(".") for d in self.dropped):
            return None
        raise InputError(f"official key {key!r} is not in the key map")

    def to_official(self, key: str) -> list[str]:
        """Every official key that holds our ``key``."""
        out = []
        for off, ours in self.rules:
            if key.startswith(ours):
                out.append(off + key[len(ours) :])
            elif key == ours.rstrip("."):
                out.append(off.rstrip("."))
        return out


_CLIP_TEXT_RULES: tuple[tuple[str, str], ...] = (
    ("clipmodel.token_embedding.", "text_encoder.token_embedding."),
    ("clipmodel.positional_embedding", "text_encoder.positional_embedding"),
    ("clipmodel.transformer.", "text_encoder.transformer."),
    ("clipmodel.ln_final.", "text_encoder.ln_final."),
    ("clipmodel.text_projection", "text_encoder.text_projection"),
)
_CLIP_DROPPED: tuple[str, ...] = ("clipmodel.visual.", "clipmodel.logit_scale")

ENCODER_RULES: tuple[tuple[str, str], ...] = (
    ("temporal.", "encoder.temporal."),
    ("gc1.", "encoder.gc1."),
    ("gc2.", "encoder.gc2."),
    ("gc3.", "encoder.gc3."),
    ("gc4.", "encoder.gc4."),
    ("disAdj.", "encoder.disAdj."),
    ("linear.", "encoder.linear."),
    ("frame_position_embeddings.", "encoder.frame_position_embeddings."),
    ("mlp1.", "mlp1."),
    ("mlp2.", "mlp2."),
    ("classifier.", "classifier."),
)

VADCLIP_KEYMAP = KeyMap(
    rules=ENCODER_RULES + (("text_prompt_embeddings.", "prompt.text_prompt_embeddings."),) + _CLIP_TEXT_RULES,
    dropped=_CLIP_DROPPED,
)


def clip_text_rules(prefix: str = "clipmodel.") -> tuple[tuple[str, str], ...]:
    """The CLIP text-tower rules for an official CLIP registered under ``prefix``."""
    return tuple((prefix + off[len("clipmodel.") :], ours) for off, ours in _CLIP_TEXT_RULES)


# DSANet's checkpoints: the shared encoder under ``encoder.``, both CLIP copies (``clipmodel.*``,
# ``clip_adapter.clipmodel.*``) onto the one text tower (their image towers and ``logit_scale``
# are dropped and kept as extras), the text adapter and the normality branch under their own
# names. The released CLIP is OpenAI's ViT-B/16 (QuickGELU).
DSANET_KEYMAP = KeyMap(
    rules=ENCODER_RULES
    + (
        ("clip_adapter.text_adapter.", "clip_adapter.text_adapter."),
        ("video_anomaly_refiner.", "video_anomaly_refiner."),
    )
    + clip_text_rules("clipmodel.")
    + clip_text_rules("clip_adapter.clipmodel."),
    dropped=tuple(p + rest for p in ("clipmodel.", "clip_adapter.clipmodel.") for rest in ("visual.", "logit_scale")),
    clip_model="ViT-B-16-quickgelu",
)

_KEYMAPS: dict[str, KeyMap] = {"vadclip": VADCLIP_KEYMAP, "dsanet": DSANET_KEYMAP}


def register_keymap(method: str, keymap: KeyMap) -> None:
    """Declare the official checkpoint format of a further method."""
    _KEYMAPS[method] = keymap


def get_keymap(method: str) -> KeyMap:
    get_method(method)  # make sure the method (and its key map) is registered
    if method not in _KEYMAPS:
        raise InputError(f"method {method!r} has no official checkpoint format; known: {sorted(_KEYMAPS)}")
    return _KEYMAPS[method]


@dataclass
class OfficialLoad:
    model: nn.Module
    method: str
    preset: Any
    extras: dict[str, Tensor] = field(default_factory=dict)  # dropped official tensors (CLIP image tower)
    source: str = ""
    sha256: str = ""
    # the file's dtype per official key (GPU-trained releases hold the CLIP weights in float16;
    # ours computes in float32, as the official code does on CPU)
    dtypes: dict[str, torch.dtype] = field(default_factory=dict)

    def report(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "preset": self.preset.name,
            "source": self.source,
            "sha256": self.sha256,
            "dropped_keys": len(self.extras),
        }


def map_official_state(state: dict[str, Tensor], keymap: KeyMap) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Official state dict -> (our state dict, dropped tensors); duplicates must agree."""
    ours: dict[str, Tensor] = {}
    extras: dict[str, Tensor] = {}
    unknown = []
    for key, value in state.items():
        try:
            target = keymap.to_ours(key)
        except InputError:
            unknown.append(key)
            continue
        if target is None:
            extras[key] = value
        elif target in ours:
            if ours[target].shape != value.shape or not torch.equal(ours[target], value):
                raise InputError(f"official keys mapping to {target!r} hold different tensors")
        else:
            ours[target] = value
    if unknown:
        raise InputError(
            f"{len(unknown)} official keys are not in the key map (e.g. {unknown[:5]}): not an official checkpoint of this method"
        )
    return ours, extras


def _clip_bundle_from_state(clip_model: str, source: str, sha: str) -> ClipBundle:
    """A random-init CLIP of the checkpoint's architecture; its text weights come from the checkpoint."""
    bundle = create_clip(clip_model, pretrained=None, device="cpu")
    info = BackboneInfo(
        **{
            **bundle.info.to_dict(),
            "pretrained": "official-checkpoint",
            "weights_file": source,
            "weights_sha256": sha or None,
            "random_weights": False,
            "seed": None,
        }
    )
    return ClipBundle(model=bundle.model, tokenizer=bundle.tokenizer, info=info)


def _infer_overrides(method: str, ours: dict[str, Tensor]) -> dict[str, Any]:
    layers = {int(k.split(".")[3]) for k in ours if k.startswith("encoder.temporal.resblocks.")}
    over: dict[str, Any] = {}
    if layers:
        over["visual_layers"] = max(layers) + 1
    if "encoder.frame_position_embeddings.weight" in ours:
        length, width = ours["encoder.frame_position_embeddings.weight"].shape
        over["visual_length"], over["visual_width"] = int(length), int(width)
    return over


def load_official_checkpoint(
    method: str,
    path: str | Path,
    *,
    preset: str = "ucf",
    classes: Sequence[ClassInfo] | None = None,
    device: str | torch.device = "cpu",
    clip_model: str | None = None,
) -> OfficialLoad:
    """Load the authors' released ``.pth`` of ``method`` into our model (strict, weights_only).

    ``preset`` names the official option file the checkpoint was trained with (``ucf``/``xd``);
    ``classes`` defaults to that built-in dataset's class table; ``clip_model`` (the open_clip
    architecture of the embedded CLIP) defaults to ViT-B-16 as in the releases.
    """
    path = Path(path)
    get_keymap(method)  # an unknown method fails before the file is read
    state = load_state_dict_file(path)
    if "model_state_dict" in state and isinstance(state["model_state_dict"], dict):  # a training checkpoint
        state = state["model_state_dict"]
    return load_official_state(
        method,
        state,
        preset=preset,
        classes=classes,
        device=device,
        clip_model=clip_model,
        source=str(path),
        sha256=sha256_file(path),
    )


def load_official_state(
    method: str,
    state: dict[str, Tensor],
    *,
    preset: str = "ucf",
    classes: Sequence[ClassInfo] | None = None,
    device: str | torch.device = "cpu",
    clip_model: str | None = None,
    source: str = "<state dict>",
    sha256: str = "",
) -> OfficialLoad:
    """:func:`load_official_checkpoint` for a state dict already in memory (official key names);
    ``source`` and ``sha256`` say where it came from (in messages and the report)."""
    m: Method = get_method(method)
    keymap = get_keymap(method)
    bad = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if bad:
        raise InputError(f"{source}: entries that are not tensors: {bad[:5]}")
    ours, extras = map_official_state(state, keymap)
    p = m.get_preset(preset)
    overrides = {k: v for k, v in _infer_overrides(method, ours).items() if getattr(p, k, v) != v}
    if overrides:
        raise InputError(
            f"{source} does not fit preset {preset!r}: the checkpoint has {overrides} (try the other preset)"
        )
    if classes is None:
        from ..manifest.builtin import load_builtin_manifest

        classes = load_builtin_manifest(preset).info.classes
    clip = _clip_bundle_from_state(clip_model or keymap.clip_model, source, sha256)
    model = m.build(p, classes, feature_dim=p.feature_dim, clip=clip, device="cpu")
    expected = model.state_dict()
    # a preset's (non-official) input normalisation starts as the identity: official weights have none
    ours.update({k: expected[k] for k in BUFFER_KEYS if k in expected and k not in ours})
    missing = sorted(set(expected) - set(ours))
    unexpected = sorted(set(ours) - set(expected))
    wrong = [k for k in ours if k in expected and expected[k].shape != ours[k].shape]
    if missing or unexpected or wrong:
        raise InputError(
            f"{source} does not fit {method}/{preset}: {len(missing)} missing keys {missing[:3]}, "
            f"{len(unexpected)} unexpected {unexpected[:3]}, shape mismatches {wrong[:3]}"
        )
    model.load_state_dict(ours, strict=True)
    model.to(device).eval()
    dtypes = {k: v.dtype for k, v in state.items()}
    return OfficialLoad(
        model=model, method=method, preset=p, extras=extras, source=source, sha256=sha256, dtypes=dtypes
    )


def to_official_state_dict(
    model: nn.Module,
    method: str,
    extras: dict[str, Tensor] | None = None,
    dtypes: dict[str, torch.dtype] | None = None,
) -> dict[str, Tensor]:
    """Our model's state dict under the official key names (+ ``extras``, e.g. the CLIP image tower),
    cast to ``dtypes`` per official key where given (``OfficialLoad.dtypes`` restores a file exactly)."""
    keymap = get_keymap(method)
    dtypes = dtypes or {}
    out: dict[str, Tensor] = {}
    if not is_identity(model):
        raise InputError(
            "this model standardises its input features (preset input_norm, fitted on training data); the "
            f"official {method} code has no such step, so it cannot be written as an official checkpoint"
        )
    for key, value in model.state_dict().items():
        if key in BUFFER_KEYS:
            continue  # the identity normalisation: nothing to write
        names = keymap.to_official(key)
        if not names:
            raise InputError(f"our key {key!r} has no official name in the {method} key map")
        for name in names:
            out[name] = value.to(dtypes[name]) if name in dtypes else value
    for key, value in (extras or {}).items():
        out.setdefault(key, value)
    return out


def save_official_checkpoint(
    model: nn.Module,
    method: str,
    path: str | Path,
    extras: dict[str, Tensor] | None = None,
    dtypes: dict[str, torch.dtype] | None = None,
) -> Path:
    """Write an official-format ``.pth`` (a plain tensor dict; atomic)."""
    import os
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in to_official_state_dict(model, method, extras, dtypes).items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
