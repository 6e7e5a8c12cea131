"""Validating a feature store: metadata, completeness, shapes, finite values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..decode.snippets import row_count
from ..manifest import Manifest
from ..progress import Listener, counted
from .reader import FeatureStore
from .schema import RECORD_FIELDS, STATUS_FAILED, STATUSES, VIDEOS_GROUP

REQUIRED_ATTRS = (
    "schema_version",
    "dataset",
    "manifest_hash",
    "backbone",
    "random_weights",
    "preprocessing",
    "snippet_len",
    "snippet_rule",
    "crops",
    "feature_dim",
    "dtype",
    "versions",
    "config",
    "config_hash",
)


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    checked: int = 0
    done: int = 0
    failed: int = 0
    missing: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def check_store(
    store: FeatureStore,
    *,
    manifest: Manifest | None = None,
    scan_values: bool = True,
    on_event: Listener | None = None,
) -> CheckReport:
    """Every problem found (not just the first): see ``dsan store check``."""
    with counted(on_event, "check", len(store._index["id"]), unit="videos") as advance:
        return _check(store, manifest, scan_values, advance)


def _check(store: FeatureStore, manifest: Manifest | None, scan_values: bool, advance: Any) -> CheckReport:
    rep = CheckReport()
    attrs = store.attrs
    for key in REQUIRED_ATTRS:
        if key not in attrs:
            rep.problems.append(f"metadata: missing attribute {key!r}")
    emb = store.manifest
    if attrs.get("manifest_hash") != emb.content_hash():
        rep.problems.append("metadata: manifest_hash does not match the embedded manifest")
    if attrs.get("random_weights"):
        rep.warnings.append(str(attrs.get("warning") or "features come from a backbone with RANDOM weights"))
    if manifest is not None:
        extra = [v.id for v in manifest.videos if v.id not in emb]
        if extra:
            rep.problems.append(
                f"{len(extra)} videos of the given manifest are not in the store's manifest, e.g. {extra[:3]}"
            )
    expected_ids = [v.id for v in (manifest or emb).videos if v.id in emb]
    ix = store._index
    have = set(ix["id"])
    missing = [vid for vid in expected_ids if vid not in have]
    rep.missing = len(missing)
    if missing:
        rep.problems.append(f"{len(missing)} videos have no record (not extracted), e.g. {missing[:3]}")
    if not attrs.get("complete"):
        rep.problems.append("the store is not finalized as complete (run the writer again or `dsan store finalize`)")
    C, D, L = store.num_crops, store.feature_dim, int(attrs.get("snippet_len", 16))
    want = set(expected_ids)
    import zarr

    for i, vid in enumerate(ix["id"]):
        advance()
        if vid not in want:
            continue
        rep.checked += 1
        rec: dict[str, Any] = {f: ix[f][i] for f in ("key", *RECORD_FIELDS)}
        status = rec["status"]
        if status not in STATUSES:
            rep.problems.append(f"{vid}: unknown status {status!r}")
            continue
        if status == STATUS_FAILED:
            rep.failed += 1
            rep.problems.append(f"{vid}: failed: {rec['error']}")
            continue
        rep.done += 1
        try:
            arr = zarr.open_array(str(store.path / VIDEOS_GROUP / rec["key"]), mode="r")
        except Exception as exc:  # noqa: BLE001 - any unreadable array is a store problem
            rep.problems.append(f"{vid}: array unreadable ({exc})")
            continue
        if arr.shape != (C, rec["T"], D):
            rep.problems.append(f"{vid}: array shape {arr.shape}, expected ({C}, {rec['T']}, {D})")
            continue
        if str(arr.dtype) != attrs.get("dtype"):
            rep.problems.append(f"{vid}: dtype {arr.dtype}, store says {attrs.get('dtype')}")
        exp = None if rec.get("num_frames") is None else row_count(int(rec["num_frames"]), L)[0]
        for flag in rec.get("flags") or ():
            rep.warnings.append(f"{vid}: flagged: {flag}")
        if attrs.get("producer") == "extract" and exp is not None and exp != rec["T"]:
            rep.problems.append(f"{vid}: T = {rec['T']} but {rec['num_frames']} frames give {exp} snippets")
        if scan_values:
            data = arr[...]
            bad = int(np.count_nonzero(~np.isfinite(data)))
            if bad:
                rep.problems.append(f"{vid}: {bad} non-finite values")
            elif data.size and not np.any(data):
                rep.problems.append(f"{vid}: all features are zero")
    return rep
