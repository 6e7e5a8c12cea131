"""The on-disk layout of a dsan feature store (Zarr v3, a local directory).

::

    STORE.zarr/
      zarr.json                 root group; attributes = the store metadata (see StoreSpec)
      meta/zarr.json            group; attributes {"manifest": [records]}: the embedded manifest
      index/zarr.json           group; attributes = the consolidated per-video index (after finalize)
      videos/zarr.json          group
      videos/v000123/           one array per video: (crops, T, D), chunks (1, chunk_t, D), dimension
                                names ("crop", "t", "feature"), uncompressed;
                                attributes {id, status, T, num_frames, fps, error, padded, flags, config_hash}
      .staging/r<rank>/         arrays being written (outside the Zarr hierarchy)

A video's key is its position in the embedded manifest (``v%06d``): stable, filesystem-safe
whatever the video id contains, and in manifest order. A video array only ever appears under
``videos/`` complete: it is written under ``.staging/`` and renamed into place (an atomic
directory rename), so a killed process leaves at most staging debris, which the next writer
removes. Writers finalize under the file lock ``.STORE.zarr.lock`` next to the store. Failed
videos are arrays of length 0 with ``status = "failed"`` and the reason.

It is ordinary Zarr v3: ``zarr.open_group(STORE)`` lists the groups and video arrays, and
``xarray.open_zarr(STORE, group="videos", drop_variables=[...others])`` opens a video array as a
``(crop, t, feature)`` variable (one at a time: their ``t`` lengths differ). The toolkit's
reader reads the chunk files directly (:mod:`.reader`), the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..manifest import Manifest

SCHEMA_VERSION = 1
FORMAT_NAME = "dsan-feature-store"

STATUS_DONE = "done"
STATUS_FAILED = "failed"
STATUSES = (STATUS_DONE, STATUS_FAILED)

STORAGE_DTYPES = ("float32", "float16")
DEFAULT_CHUNK_T = 256

VIDEOS_GROUP = "videos"
META_GROUP = "meta"
INDEX_GROUP = "index"
STAGING_DIR = ".staging"
LOCK_SUFFIX = ".lock"  # the writers' lock: ".NAME.lock" next to the store
DIMENSION_NAMES = ("crop", "t", "feature")  # of every video array (xarray needs them)

# Per-video record fields kept in each video array's attributes and in the index.
RECORD_FIELDS = ("id", "status", "T", "num_frames", "fps", "error", "padded", "flags")


def video_key(position: int) -> str:
    """Array name of the video at ``position`` in the embedded manifest."""
    return f"v{position:06d}"


# The backbone record's fields that identify the weights and the numbers they produce; the
# rest (a local file's path, a prose source) is recorded, not hashed.
BACKBONE_IDENTITY = (
    "model",
    "pretrained",
    "weights_sha256",
    "random_weights",
    "seed",
    "image_size",
    "embed_dim",
    "mean",
    "std",
)


@dataclass(frozen=True)
class StoreSpec:
    """Everything a store records about how its features were made.

    ``config`` is the producer's config as a dict (``to_dict`` of an ``ExtractConfig``, an
    import config, a synthetic config); ``identity()`` holds only the enums and numbers that
    change the stored values (the config, the backbone's identity, the layout; not the prose of
    ``preprocessing`` nor the backbone's paths), and a writer refuses to append to a store whose
    identity differs. ``numeric``: further enums/numbers of the producer that change the values
    and are not in its config (hashed); ``preprocessing`` and ``extra`` are recorded only.
    """

    manifest: Manifest
    crops: tuple[int, ...]
    feature_dim: int
    backbone: dict[str, Any]
    random_weights: bool
    preprocessing: dict[str, Any]
    snippet_rule: str
    config: dict[str, Any]
    producer: str
    snippet_len: int = 16
    dtype: str = "float32"
    chunk_t: int = DEFAULT_CHUNK_T
    extra: dict[str, Any] = field(default_factory=dict)
    numeric: dict[str, Any] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        """What the store's ``config_hash`` covers (see the class doc)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "manifest_hash": self.manifest.content_hash(),
            "crops": list(self.crops),
            "feature_dim": self.feature_dim,
            "backbone": {k: self.backbone[k] for k in BACKBONE_IDENTITY if k in self.backbone},
            "random_weights": self.random_weights,
            "snippet_rule": self.snippet_rule,
            "snippet_len": self.snippet_len,
            "dtype": self.dtype,
            "config": self.config,
            "numeric": self.numeric,
            "producer": self.producer,
        }


def library_versions() -> dict[str, str]:
    """Versions of the toolkit and of the libraries that shape the numbers."""
    from importlib.metadata import PackageNotFoundError, version

    from .. import __version__

    out = {"dsan_toolkit": __version__}
    for dist in ("torch", "open_clip_torch", "decord", "zarr", "numpy"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "absent"
    return out
