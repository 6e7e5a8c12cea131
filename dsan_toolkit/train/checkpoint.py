"""Run configuration, checkpoints and resume state, without pickling anything.

- :class:`RunConfig`: the full resolved configuration of a training run (hashed into every
  artifact of the run directory, see ``docs/training.md``).
- Model weights: safetensors files of the full state dict (shared tensors stored once), with
  the run's metadata in the safetensors header.
- Resume state (optimisers, schedulers, RNGs, loop position): arbitrary nested Python state is
  split into a flat dict of tensors (stored in a safetensors file) and a JSON skeleton (stored
  in the same file's metadata) by :func:`encode_state` / :func:`decode_state`. Nothing is ever
  unpickled.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import (
    config_hash,
    from_dict,
    identity_dict,
    optional_field,
    register_config,
    runtime_field,
    to_dict,
)
from ..errors import InputError
from ..utils import atomic as _atomic
from ..utils.jsonio import read_json_object

CHECKPOINT_FORMAT = "dsan-checkpoint"
RESUME_FORMAT = "dsan-resume"


@register_config
@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a training run (see docs/training.md, ``config.json``)."""

    method: str
    preset_name: str
    preset: Any
    dataset: str
    manifest_hash: str
    store: str = runtime_field()  # absolute path: where the store was, not what it is (store_hash)
    store_hash: str
    store_config_hash: str | None
    feature_dim: int
    train_crops: tuple[int, ...]
    test_crop: int
    seed: int
    select: str = "last"
    eval_every: int = 0
    selection_metric: str = "auc"
    deterministic: bool = False
    world_size: int = 1
    backbone: dict[str, Any] = field(default_factory=dict)
    text_encoder: dict[str, Any] = field(default_factory=dict)
    # best-on-val only: the validation split's {"hash", "fraction", "seed", "size"}
    # (dsan_toolkit.manifest.valsplit); absent from the records of other runs
    val_split: dict[str, Any] | None = optional_field(None)
    # training arithmetic: "fp32" (the official numbers; absent from the records, so runs of
    # earlier versions keep their hashes), "bf16" or "fp16" (autocast; fp16 with a gradient scaler)
    precision: str = optional_field("fp32")
    device: str = runtime_field("cpu")
    clip_weights: str | None = runtime_field(None)  # the local CLIP file's path (its sha256 is in text_encoder)

    @property
    def hash(self) -> str:
        """The identity hash: everything but the runtime fields (store path, device)."""
        return config_hash(self)

    def comparable(self) -> dict[str, Any]:
        """The config as a dict without the fields a resume may change (the runtime fields)."""
        return identity_dict(self)


def read_run_config(path: Path) -> RunConfig:
    """The :class:`RunConfig` of a ``config.json``; :class:`InputError` naming the file when it
    is missing, not JSON or not a run config."""
    path = Path(path)
    data = read_json_object(path, "run config", hint="not a run directory? (see docs/training.md)")
    try:
        return run_config_from_json(data)
    except (InputError, KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path} is not a valid run config ({exc})") from None


def run_config_from_json(data: dict[str, Any]) -> RunConfig:
    """A :class:`RunConfig` from ``config.json`` content (or its ``config`` member)."""
    from ..models.registry import list_methods

    list_methods()  # registers every method's preset type, so the nested preset is rebuilt
    cfg = from_dict(data["config"] if "config" in data else data)
    if not isinstance(cfg, RunConfig):
        raise InputError("config.json does not hold a RunConfig")
    return with_typed_preset(cfg)


def with_typed_preset(cfg: RunConfig) -> RunConfig:
    """``cfg`` with its preset as the method's preset dataclass (a dict is converted)."""
    if isinstance(cfg.preset, dict):
        from dataclasses import replace

        from ..models.registry import list_methods

        list_methods()
        preset = from_dict(cfg.preset)
        return replace(cfg, preset=preset)
    return cfg


# ---------------------------------------------------------------------------------------
# atomic file helpers


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Complete-or-absent write with the umask's permissions (``dsan_toolkit.utils.atomic``)."""
    _atomic.atomic_write_bytes(path, data)


def atomic_write_json(path: Path, obj: Any, *, indent: int | None = 2) -> None:
    _atomic.atomic_write_json(path, obj, indent=indent, sort_keys=False)


# ---------------------------------------------------------------------------------------
# nested state <-> (tensors, JSON skeleton)


class _Encoder:
    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}
        self._seen: dict[tuple[Any, ...], str] = {}

    def _put(self, t: torch.Tensor) -> str:
        # a tensor registered under two names (shared modules) is stored once
        ident = (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)
        if t.numel() and ident in self._seen:
            return self._seen[ident]
        key = f"t{len(self.tensors)}"
        self.tensors[key] = t.detach().cpu().contiguous().clone()
        if t.numel():
            self._seen[ident] = key
        return key

    def encode(self, obj: Any) -> Any:
        if isinstance(obj, torch.Tensor):
            return {"__tensor__": self._put(obj)}
        if isinstance(obj, np.ndarray):
            return {"__ndarray__": self._put(torch.from_numpy(np.ascontiguousarray(obj)))}
        if isinstance(obj, np.generic):
            return self.encode(obj.item())
        if isinstance(obj, bool) or obj is None or isinstance(obj, str):
            return obj
        if isinstance(obj, int):
            return obj
        if isinstance(obj, float):
            if obj != obj or obj in (float("inf"), float("-inf")):
                return {"__float__": repr(obj)}
            return obj
        if isinstance(obj, Counter):
            return {"__counter__": [[self.encode(k), self.encode(v)] for k, v in obj.items()]}
        if isinstance(obj, dict):
            if all(isinstance(k, str) and not k.startswith("__") for k in obj):
                return {k: self.encode(v) for k, v in obj.items()}
            return {"__dict__": [[self.encode(k), self.encode(v)] for k, v in obj.items()]}
        if isinstance(obj, tuple):
            return {"__tuple__": [self.encode(v) for v in obj]}
        if isinstance(obj, list):
            return [self.encode(v) for v in obj]
        raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint")


def encode_state(obj: Any) -> tuple[dict[str, torch.Tensor], str]:
    """Split nested state into a flat tensor dict and a JSON skeleton referencing it."""
    enc = _Encoder()
    skeleton = enc.encode(obj)
    return enc.tensors, json.dumps(skeleton, separators=(",", ":"))


def decode_state(tensors: dict[str, torch.Tensor], skeleton: str) -> Any:
    """Inverse of :func:`encode_state`."""

    def dec(x: Any) -> Any:
        if isinstance(x, list):
            return [dec(v) for v in x]
        if not isinstance(x, dict):
            return x
        if "__tensor__" in x:
            return tensors[x["__tensor__"]]
        if "__ndarray__" in x:
            return tensors[x["__ndarray__"]].numpy()
        if "__float__" in x:
            return float(x["__float__"])
        if "__counter__" in x:
            return Counter({dec(k): dec(v) for k, v in x["__counter__"]})
        if "__dict__" in x:
            return {dec(k): dec(v) for k, v in x["__dict__"]}
        if "__tuple__" in x:
            return tuple(dec(v) for v in x["__tuple__"])
        return {k: dec(v) for k, v in x.items()}

    return dec(json.loads(skeleton))


# ---------------------------------------------------------------------------------------
# RNG state


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].to(torch.uint8))
    np_state = state["numpy"]
    np.random.set_state((np_state[0], np.asarray(np_state[1], dtype=np.uint32), *np_state[2:]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.to(torch.uint8) for s in state["cuda"]])


# ---------------------------------------------------------------------------------------
# model weights


def canonicalize_safetensors(src: Path, dst: Path) -> None:
    """Copy safetensors file ``src`` to ``dst`` with its JSON header in canonical form (sorted
    keys, compact, padded to 8 bytes): safetensors writes its metadata from a hash map, so the
    key order, and with it the file's sha256, changes from one process to the next. The data
    section is copied unchanged (its layout is already deterministic), so equal content gives
    equal bytes."""
    with open(src, "rb") as fi:
        n = int.from_bytes(fi.read(8), "little")
        header = json.loads(fi.read(n))
        ordered: dict[str, Any] = {}
        if "__metadata__" in header:
            ordered["__metadata__"] = dict(sorted(header.pop("__metadata__").items()))
        ordered.update(sorted(header.items()))
        text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        text += b" " * (-len(text) % 8)
        with open(dst, "wb") as fo:
            fo.write(len(text).to_bytes(8, "little"))
            fo.write(text)
            shutil.copyfileobj(fi, fo, 1 << 24)


@contextlib.contextmanager
def _canonical_safetensors_path(path: Path) -> Iterator[Path]:
    """A temporary path for a safetensors writer; the file lands at ``path`` (atomically) with
    a canonical header (:func:`canonicalize_safetensors`)."""
    with _atomic.atomic_path(Path(path), suffix=".safetensors") as final:
        raw = final.with_name(f"{final.name}.raw.safetensors")  # unique: named after the temporary file
        try:
            yield raw
            canonicalize_safetensors(raw, final)
        finally:
            raw.unlink(missing_ok=True)


def save_weights(model: torch.nn.Module, path: Path, metadata: dict[str, Any]) -> None:
    """Save the full state dict as safetensors (shared tensors once), atomically, with a
    canonical header (equal weights and metadata give equal files)."""
    from safetensors.torch import save_model

    meta = {"format": CHECKPOINT_FORMAT}
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()})
    with _canonical_safetensors_path(Path(path)) as tmp:
        save_model(model, str(tmp), metadata=meta)


def read_metadata(path: Path) -> dict[str, str]:
    """The metadata of a safetensors file (``InputError`` if it is not one)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except Exception as exc:  # noqa: BLE001 - any parse failure means "not a safetensors file"
        raise InputError(f"{path} is not a safetensors checkpoint: {exc}") from None


def load_weights(model: torch.nn.Module, path: Path, device: str | torch.device = "cpu") -> dict[str, str]:
    """Load weights saved by :func:`save_weights` into ``model`` (strict); returns the metadata."""
    from safetensors.torch import load_model

    meta = read_metadata(path)
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path} is not a dsan checkpoint (format {meta.get('format')!r})")
    try:
        missing, unexpected = load_model(model, str(path), strict=False, device=str(device))
    except Exception as exc:  # noqa: BLE001 - shape mismatch etc.
        raise InputError(f"{path} does not fit the model: {exc}") from None
    if missing or unexpected:
        raise InputError(
            f"{path} does not fit the model: {len(missing)} missing keys (e.g. {sorted(missing)[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {sorted(unexpected)[:3]})"
        )
    return meta


# ---------------------------------------------------------------------------------------
# resume state


def save_resume(path: Path, state: dict[str, Any], config_hash_: str) -> None:
    from safetensors.torch import save_file

    tensors, skeleton = encode_state(state)
    with _canonical_safetensors_path(Path(path)) as tmp:
        save_file(tensors, str(tmp), metadata={"format": RESUME_FORMAT, "config_hash": config_hash_, "state": skeleton})


def load_resume(path: Path) -> tuple[dict[str, Any], str]:
    """Returns (state, config hash) of a resume file."""
    from safetensors.torch import load_file

    meta = read_metadata(path)
    if meta.get("format") != RESUME_FORMAT or "state" not in meta:
        raise InputError(f"{path} is not a dsan resume file")
    tensors = load_file(str(path))
    return decode_state(tensors, meta["state"]), meta.get("config_hash", "")


def config_json(cfg: RunConfig) -> dict[str, Any]:
    return {"hash": cfg.hash, "config": to_dict(cfg)}
