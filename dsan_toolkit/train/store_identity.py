"""Which feature store a run refers to, and whether the store found is that one.

A run records its feature store twice (``config.json``): by **absolute path** (``store``) and
by **identity**: ``store_hash`` (the content hash of every stored array,
:meth:`~dsan_toolkit.store.reader.FeatureStore.content_hash`) and ``store_config_hash`` (the
hash of the extraction/import/synthetic config that made it). Every command that reopens a
run's store (``dsan eval``, ``dsan score``, ``dsan audit``, ``dsan bench``) goes through
:func:`open_run_store`, one rule:

1. the store given explicitly (``--features``), else the path the run recorded (absolute;
   a relative path recorded by older versions is taken relative to the current folder);
2. its identity is compared with the recorded one: the features (at one of two levels, below)
   and the embedded manifest (the ground truth and class table: ``manifest_hash``). A store
   found at the recorded path whose identity differs is refused, naming both hashes. An
   explicitly given store may differ: the difference is returned (:class:`StoreUse`), written
   into the output's record and printed as a label.

Two levels for the features: ``"content"`` (the arrays themselves: what evaluation and audit
read) and ``"config"`` (how the features are made: what ``dsan score`` needs to extract a new
video like the training features, without reading every array).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import keys
from ..errors import InputError
from ..store.protocol import FeatureStoreLike

CONTENT = "content"
CONFIG = "config"
IDENTITY_LEVELS = (CONTENT, CONFIG)


@dataclass(frozen=True)
class StoreUse:
    """A run's store as reopened: where it was found and whether it is the training store."""

    store: FeatureStoreLike
    path: Path
    explicit: bool
    level: str
    recorded_hash: str | None
    actual_hash: str
    recorded_manifest: str | None = None  # the manifest (ground truth, class table) the run was trained with
    actual_manifest: str | None = None

    @property
    def same_features(self) -> bool:
        return self.recorded_hash is not None and self.recorded_hash == self.actual_hash

    @property
    def same_manifest(self) -> bool:
        return self.recorded_manifest is None or self.recorded_manifest == self.actual_manifest

    @property
    def matches(self) -> bool:
        """The store is the training store: the same features and the same embedded manifest."""
        return self.same_features and self.same_manifest

    def record(self) -> dict[str, Any]:
        """What an output records about the store it used (``store`` in eval records)."""
        return {
            "path": absolute_store_path(self.path),
            "explicit": self.explicit,
            "identity": self.level,
            "trained_hash": self.recorded_hash,
            "hash": self.actual_hash,
            "trained_manifest_hash": self.recorded_manifest,
            "manifest_hash": self.actual_manifest,
            "matches_training_store": self.matches,
        }

    def differences(self) -> str:
        """What differs from the training store, naming both hashes ('' when nothing)."""
        parts = []
        if not self.same_features:
            parts.append(f"{self.level} hash {self.actual_hash}, the run recorded {self.recorded_hash}")
        if not self.same_manifest:
            parts.append(f"manifest hash {self.actual_manifest}, the run recorded {self.recorded_manifest}")
        return "; ".join(parts)

    def label(self) -> str:
        """'' for the training store, else a one-line warning naming what differs."""
        return "" if self.matches else f"NOT THE TRAINING FEATURES: {self.path}: {self.differences()}"


def difference_label(record: dict[str, Any]) -> str:
    """The label of an output's store record (:meth:`StoreUse.record`): '' for the training
    store, else what differs, with both hashes shortened."""
    if not record or record.get("matches_training_store", True):
        return ""
    parts = []
    if record.get("hash") != record.get("trained_hash"):
        parts.append(
            f"{record.get('identity', 'content')} hash {_short(record.get('hash'))}, "
            f"trained on {_short(record.get('trained_hash'))}"
        )
    if record.get("manifest_hash") != record.get("trained_manifest_hash"):
        parts.append(
            f"manifest hash {_short(record.get('manifest_hash'))}, "
            f"trained on {_short(record.get('trained_manifest_hash'))}"
        )
    return f"NOT THE TRAINING FEATURES: {record.get('path')}: " + "; ".join(parts)


def absolute_store_path(path: str | Path) -> str:
    """The form a run records its store path in: absolute, symlinks resolved."""
    return str(Path(path).expanduser().resolve())


def resolve_store_path(recorded: str, explicit: str | Path | None, option: str = "--features") -> tuple[Path, bool]:
    """(path, explicit?) by the rule of the module doc; refuses a missing store by name."""
    if explicit is not None:
        path = Path(explicit)
        if not path.exists():
            raise InputError(f"{option} {path}: feature store not found")
        return path, True
    if not recorded:
        raise InputError(f"the run records no feature store path; pass {option} STORE")
    path = Path(recorded)
    if not path.exists():
        raise InputError(
            f"the run's feature store {recorded} is not found (moved or on another machine?); "
            f"pass {option} STORE to name it"
        )
    return path, False


def store_config_hash(store: FeatureStoreLike) -> str | None:
    """The hash of the config that made an open store (its ``config_hash`` attribute), if any."""
    v = (getattr(store, "attrs", {}) or {}).get(keys.STORE_ATTR_CONFIG_HASH)
    return None if v is None else str(v)


def store_backbone(store: FeatureStoreLike) -> dict[str, Any]:
    """The image backbone an open store's features come from (``backbone`` attribute), with
    ``random_weights`` filled in from the store's own flag when the record lacks it."""
    attrs = getattr(store, "attrs", {}) or {}
    bb = dict(attrs.get("backbone") or {})
    if "random_weights" not in bb and "random_weights" in attrs:
        bb["random_weights"] = bool(attrs["random_weights"])
    return bb


def store_identity(store: FeatureStoreLike, level: str) -> str:
    """The identity hash of an open store at ``level`` (content: reads every array)."""
    if level == CONTENT:
        return str(store.content_hash())
    if level == CONFIG:
        return store_config_hash(store) or ""
    raise ValueError(f"unknown identity level {level!r}; known: {IDENTITY_LEVELS}")


def recorded_identity(cfg: Any, level: str) -> str | None:
    """The identity a :class:`RunConfig` recorded at ``level``."""
    return cfg.store_hash if level == CONTENT else cfg.store_config_hash


def open_run_store(
    cfg: Any,
    explicit: str | Path | None = None,
    *,
    level: str = CONTENT,
    option: str = "--features",
    run: str | Path | None = None,
) -> StoreUse:
    """Open the store of run config ``cfg`` (or ``explicit``) and check its identity.

    Raises :class:`InputError` when the store at the recorded path is not the training store.
    """
    from ..store import open_store

    path, is_explicit = resolve_store_path(str(cfg.store), explicit, option)
    store = open_store(path)
    use = StoreUse(
        store,
        path,
        is_explicit,
        level,
        recorded_identity(cfg, level),
        store_identity(store, level),
        recorded_manifest=getattr(cfg, "manifest_hash", None),
        actual_manifest=store.manifest.content_hash(),
    )
    if not use.matches and not is_explicit:
        who = f"run {run}" if run is not None else "the run"
        raise InputError(
            f"the feature store at {path} is not the one {who} was trained on: {use.differences()}. "
            f"Pass {option} STORE to use another store on purpose (the difference is then recorded and labelled)."
        )
    return use


def _short(h: str | None) -> str:
    return "none" if not h else h[:12]
