"""Typed, hashed configuration records.

Every config is a frozen dataclass. :func:`to_dict` gives a JSON-able dict with a
``"type"`` tag, :func:`from_dict` rebuilds it (through the registry of config types), and
:func:`config_hash` is the sha256 of the canonical JSON of its *identity*, which is written
into every artifact (stores, checkpoints, result rows) so that two artifacts made with the same
configuration can be recognised.

Which fields are identity is decided once, on the field: a runtime field (a device, a path, a
worker count) is declared with :func:`runtime_field` (``metadata={"hash": False}``); it is
kept in :func:`to_dict` (so a record says where it ran) and left out of
:func:`identity_dict` and :func:`config_hash`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from .errors import InputError

T = TypeVar("T")

_CONFIG_TYPES: dict[str, type] = {}
HASHED = "hash"  # field metadata key: False marks a runtime field, left out of the identity
OMIT_DEFAULT = "omit_default"  # field metadata key: True leaves the field out of the record while it has its default


def runtime_field(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field that is recorded but not part of the config's identity (hash)."""
    return dataclasses.field(default=default, default_factory=default_factory, metadata={HASHED: False})


def optional_field(default: Any = None) -> Any:
    """A hashed dataclass field added after records existed: left out of :func:`to_dict` (and
    so of the identity hash) while it holds ``default``, so that the records and hashes of
    configs that do not use it stay what they were."""
    return dataclasses.field(default=default, metadata={OMIT_DEFAULT: True})


def is_hashed(f: dataclasses.Field) -> bool:
    return bool(f.metadata.get(HASHED, True))


def register_config(cls: type[T]) -> type[T]:
    """Class decorator: make a frozen dataclass round-trippable by its type tag."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__} is not a dataclass")
    _CONFIG_TYPES[cls.__name__] = cls
    return cls


def _plain(value: Any, identity: bool = False) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict(value, identity=identity)
    if isinstance(value, dict):
        return {str(k): _plain(v, identity) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, identity) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and value != value:  # NaN is not canonical JSON
        raise ValueError("NaN is not allowed in a config")
    return value


def to_dict(cfg: Any, *, identity: bool = False) -> dict[str, Any]:
    """A JSON-able dict of a dataclass config, tagged with its type name (``identity``: without
    its runtime fields, nested configs included)."""
    out: dict[str, Any] = {"type": type(cfg).__name__}
    for f in dataclasses.fields(cfg):
        if identity and not is_hashed(f):
            continue
        value = getattr(cfg, f.name)
        if f.metadata.get(OMIT_DEFAULT) and value == f.default:
            continue
        out[f.name] = _plain(getattr(cfg, f.name), identity)
    return out


def identity_dict(cfg: Any) -> dict[str, Any]:
    """What identifies a config: :func:`to_dict` without the runtime fields."""
    return to_dict(cfg, identity=True)


def _coerce(tp: Any, value: Any) -> Any:
    """Rebuild a field value from JSON according to its annotation (tuples, nested configs)."""
    origin = typing.get_origin(tp)
    if value is None:
        return None
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _coerce(args[0], value) if len(args) == 1 else value
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v) for v in value)
        return tuple(_coerce(a, v) for a, v in zip(args, value)) if args else tuple(value)
    if origin is dict:
        _, vt = typing.get_args(tp) or (Any, Any)
        return {k: _coerce(vt, v) for k, v in value.items()}
    if isinstance(value, dict) and "type" in value and value["type"] in _CONFIG_TYPES:
        return from_dict(value)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return from_dict({"type": tp.__name__, **value})
    return value


def from_dict(data: dict[str, Any], cls: type[T] | None = None) -> T:
    """Rebuild a config from :func:`to_dict` output; unknown keys are refused."""
    name = data.get("type") or (cls.__name__ if cls else None)
    target = cls or _CONFIG_TYPES.get(str(name))
    if target is None:
        raise InputError(f"unknown config type {name!r}; known: {sorted(_CONFIG_TYPES)}")
    hints = typing.get_type_hints(target)
    fields = {f.name for f in dataclasses.fields(target)}
    unknown = set(data) - fields - {"type"}
    if unknown:
        raise InputError(f"{target.__name__}: unknown config keys {sorted(unknown)}")
    kwargs = {k: _coerce(hints[k], v) for k, v in data.items() if k in fields}
    try:
        return target(**kwargs)
    except TypeError as exc:  # a required field missing, or a value of the wrong kind
        raise InputError(f"{target.__name__}: {exc}") from None


def canonical_json(obj: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, dataclasses expanded."""
    return json.dumps(_plain(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def config_hash(cfg: Any) -> str:
    """sha256 of the canonical JSON of a config's identity (a dataclass: :func:`identity_dict`;
    a plain dict is hashed as it is: rebuild a recorded config with :func:`from_dict` first)."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        cfg = identity_dict(cfg)
    return sha256_text(canonical_json(cfg))


def legacy_config_hash(data: dict[str, Any]) -> str:
    """The hash a recorded config got before runtime fields were left out of the identity (the
    whole recorded dict): audits and resumes accept it for records of those versions."""
    return sha256_text(canonical_json(data))


def recorded_config_hash(data: dict[str, Any], cls: type | None = None) -> str | None:
    """The identity hash of a recorded config (a :func:`to_dict` dict, tagged with its type):
    rebuilt first, so that runtime fields are left out as at write time; ``None`` when the
    record is no valid config (edited by hand, or of an unknown type)."""
    try:
        return config_hash(from_dict(data, cls))
    except (InputError, TypeError, ValueError, KeyError):
        return None


def recorded_identity_hash(data: dict[str, Any], cls: type) -> str:
    """The identity hash of a recorded config taken as it stands (the recorded dict minus the
    runtime fields of ``cls``), without rebuilding it: the hash a record of a version whose
    config had other identity fields (renamed or added since) was written with."""
    runtime = {f.name for f in dataclasses.fields(cls) if not is_hashed(f)}
    return sha256_text(canonical_json({k: v for k, v in data.items() if k not in runtime}))


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """sha256 of a file, read in streamed chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()
