"""Validation splits: videos held out of a manifest's training split for model selection.

A validation split is carved from the **training** split at video level, stratified by class:
a video's stratum is its primary class (its first anomaly label; the normal class for a
normal video). It is derived from the manifest alone, deterministically:

- strata in sorted order of their class code, the training videos of each sorted by id;
- one ``numpy.random.default_rng(seed)`` draws ``rng.permutation(n)`` per stratum in that order,
  and the first ``k`` positions of the permutation are the stratum's validation videos;
- ``k = floor(fraction * n + 0.5)`` (rounded half up), at least 1 for a stratum of >= 2 videos
  and at most ``n - 1`` (a stratum keeps at least one training video); a stratum of one video
  keeps it for training.

The same manifest, fraction and seed give the same ids on any machine. A split is written as
a JSON file (:func:`write_val_split`): its ids (sorted), ``fraction``, ``seed``, the dataset
name and ``manifest_hash``, per-stratum counts and ``hash``, the sha256 of the canonical JSON
of everything else (what a run config records). The built-in datasets have their default
split (10 %, seed 0) committed next to their manifest as ``<name>.val-split.json``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import canonical_json, sha256_text
from ..errors import InputError
from ..utils.atomic import atomic_write_text
from .schema import Manifest, VideoRecord

FORMAT = "dsan-val-split"
DEFAULT_FRACTION = 0.1
DEFAULT_SEED = 0
RULE = "stratified by primary class; k = floor(fraction*n + 0.5), >= 1 when n >= 2, <= n - 1"
EXPLICIT_RULE = "explicit ids"
SUFFIX = ".val-split.json"


@dataclass(frozen=True)
class ValSplit:
    """The validation videos of a manifest's training split and how they were chosen.

    ``strata``: stratum (class code) -> ``{"train": videos of the training split in it,
    "val": of them held out}``. ``seed`` is ``None`` for a split of explicit ids."""

    dataset: str
    manifest_hash: str
    fraction: float
    seed: int | None
    ids: tuple[str, ...]
    strata: dict[str, dict[str, int]] = field(default_factory=dict)
    rule: str = RULE

    @property
    def size(self) -> int:
        return len(self.ids)

    def record(self) -> dict[str, Any]:
        """Everything the hash covers."""
        return {
            "format": FORMAT,
            "dataset": self.dataset,
            "manifest_hash": self.manifest_hash,
            "fraction": self.fraction,
            "seed": self.seed,
            "rule": self.rule,
            "size": self.size,
            "strata": {k: dict(v) for k, v in sorted(self.strata.items())},
            "ids": list(self.ids),
        }

    @property
    def hash(self) -> str:
        return sha256_text(canonical_json(self.record()))

    def to_json(self) -> str:
        return json.dumps({**self.record(), "hash": self.hash}, indent=1) + "\n"

    def summary(self) -> dict[str, Any]:
        """What a run config records of it (its identity)."""
        return {"hash": self.hash, "fraction": self.fraction, "seed": self.seed, "size": self.size}


def stratum_of(manifest: Manifest, video: VideoRecord) -> str:
    """A video's stratum: its first anomaly label, or the normal class for a normal video."""
    normal = manifest.normal_class
    return next((lab for lab in video.labels if lab != normal), normal)


def stratum_size(n: int, fraction: float) -> int:
    """Validation videos taken from a stratum of ``n`` training videos (the documented rule)."""
    if n < 2:
        return 0
    return min(n - 1, max(1, math.floor(fraction * n + 0.5)))


def _check_fraction(fraction: float) -> float:
    try:
        f = float(fraction)
    except (TypeError, ValueError):
        raise InputError(f"the validation fraction must be a number, not {fraction!r}") from None
    if not 0.0 < f < 1.0:
        raise InputError(f"the validation fraction must be in (0, 1), got {fraction!r}")
    return f


def _strata(manifest: Manifest) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for v in manifest.split("train"):
        groups.setdefault(stratum_of(manifest, v), []).append(v.id)
    return {k: sorted(groups[k]) for k in sorted(groups)}


def _check_both_kinds(manifest: Manifest, ids: Iterable[str], what: str) -> None:
    chosen = [manifest.video(i) for i in ids]
    anomalous = sum(manifest.is_anomalous(v) for v in chosen)
    if anomalous == 0 or anomalous == len(chosen):
        kind = "anomalous" if anomalous == 0 else "normal"
        raise InputError(
            f"{what} has no {kind} video ({len(chosen)} videos): a video-level AUC/AP needs both; "
            "use a larger validation fraction or another split"
        )


def derive_val_split(manifest: Manifest, fraction: float = DEFAULT_FRACTION, seed: int = DEFAULT_SEED) -> ValSplit:
    """The validation split of ``manifest`` for ``fraction`` and ``seed`` (module docstring)."""
    fraction = _check_fraction(fraction)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"the validation seed must be a non-negative integer, got {seed!r}")
    strata = _strata(manifest)
    if not strata:
        raise InputError(f"the dataset {manifest.name!r} has no training videos to hold out for validation")
    rng = np.random.default_rng(int(seed))
    ids: list[str] = []
    counts: dict[str, dict[str, int]] = {}
    for name, members in strata.items():
        k = stratum_size(len(members), fraction)
        order = rng.permutation(len(members))
        ids += [members[i] for i in order[:k]]
        counts[name] = {"train": len(members), "val": k}
    split = ValSplit(manifest.name, manifest.content_hash(), fraction, int(seed), tuple(sorted(ids)), counts)
    _check_both_kinds(manifest, split.ids, f"the validation split ({fraction:g} of the training videos, seed {seed})")
    return split


def val_split_from_ids(manifest: Manifest, ids: Iterable[str]) -> ValSplit:
    """A validation split of explicitly chosen training videos (``seed`` None, ``fraction`` the
    share of the training split it holds)."""
    chosen = sorted(set(ids))
    _check_ids(manifest, chosen, "the chosen validation videos")
    strata = _strata(manifest)
    held = set(chosen)
    counts = {k: {"train": len(m), "val": sum(i in held for i in m)} for k, m in strata.items()}
    n_train = sum(c["train"] for c in counts.values())
    return ValSplit(
        manifest.name, manifest.content_hash(), len(chosen) / n_train, None, tuple(chosen), counts, EXPLICIT_RULE
    )


def _check_ids(manifest: Manifest, ids: list[str], what: str) -> None:
    if not ids:
        raise InputError(f"{what}: no videos")
    unknown = [i for i in ids if i not in manifest]
    if unknown:
        raise InputError(f"{what}: {len(unknown)} ids are not in the dataset {manifest.name!r}, e.g. {unknown[0]!r}")
    not_train = [i for i in ids if manifest.video(i).split != "train"]
    if not_train:
        raise InputError(f"{what}: {len(not_train)} videos are not training videos, e.g. {not_train[0]!r}")
    _check_both_kinds(manifest, ids, what)
    if len(ids) >= len(manifest.split("train")):
        raise InputError(f"{what}: every training video would be held out")


def write_val_split(split: ValSplit, path: Path, *, overwrite: bool = False) -> Path:
    """Write a split file atomically; an existing file is refused unless ``overwrite``."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a folder; give a file name for the validation split (e.g. val-split.json)")
    if path.exists() and not overwrite:
        raise InputError(f"{path} exists; pass --overwrite to replace it or choose another --out")
    if not path.parent.is_dir():
        raise InputError(f"the folder of {path} does not exist")
    atomic_write_text(path, split.to_json())
    return path


def read_val_split(path: Path, manifest: Manifest | None = None) -> ValSplit:
    """Read a split file; with ``manifest``, check that it was made from that manifest and
    that its ids are training videos of it. Every problem is an :class:`InputError`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"validation split file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not a JSON file ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f'{path} is not a validation split file (no "format": {FORMAT!r})')
    try:
        split = ValSplit(
            dataset=str(data["dataset"]),
            manifest_hash=str(data["manifest_hash"]),
            fraction=float(data["fraction"]),
            seed=None if data["seed"] is None else int(data["seed"]),
            ids=tuple(str(i) for i in data["ids"]),
            strata={str(k): {"train": int(v["train"]), "val": int(v["val"])} for k, v in data["strata"].items()},
            rule=str(data["rule"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"{path} is not a valid validation split file (field {exc})") from None
    if list(split.ids) != sorted(set(split.ids)):
        raise InputError(f"{path}: the ids must be sorted and unique")
    if "hash" in data and data["hash"] != split.hash:
        raise InputError(f"{path}: its recorded hash {str(data['hash'])[:12]} is not its content's ({split.hash[:12]})")
    if manifest is not None:
        if split.manifest_hash != manifest.content_hash():
            raise InputError(
                f"{path} was made from another manifest (hash {split.manifest_hash[:12]}) than the dataset "
                f"{manifest.name!r} ({manifest.content_hash()[:12]}); write one for it with `dsan manifest val-split`"
            )
        _check_ids(manifest, list(split.ids), str(path))
    return split


def builtin_val_split_path(name: str) -> Path:
    """Where a built-in dataset's default split file is (next to its manifest)."""
    from .builtin import manifest_dir

    return manifest_dir() / f"{name}{SUFFIX}"


def default_val_split(
    manifest: Manifest, fraction: float = DEFAULT_FRACTION, seed: int = DEFAULT_SEED
) -> tuple[ValSplit, str]:
    """The split a run uses when no file is given, and where it came from (``builtin`` or
    ``derived``): a built-in manifest at the default fraction and seed reads its committed
    file (equal to the derived split, tested); anything else is derived."""
    from .builtin import list_builtin_manifests, load_builtin_manifest

    fraction = _check_fraction(fraction)
    if (
        manifest.name in list_builtin_manifests()
        and fraction == DEFAULT_FRACTION
        and seed == DEFAULT_SEED
        and load_builtin_manifest(manifest.name).content_hash() == manifest.content_hash()
        and builtin_val_split_path(manifest.name).is_file()
    ):
        return read_val_split(builtin_val_split_path(manifest.name), manifest), "builtin"
    return derive_val_split(manifest, fraction, seed), "derived"


__all__ = [
    "DEFAULT_FRACTION",
    "DEFAULT_SEED",
    "ValSplit",
    "builtin_val_split_path",
    "default_val_split",
    "derive_val_split",
    "read_val_split",
    "stratum_of",
    "stratum_size",
    "val_split_from_ids",
    "write_val_split",
]
