"""Feature stores: CLIP features per video in Zarr v3 (see :mod:`.schema` for the layout).

Read with :func:`open_store` / :class:`FeatureStore`; write with :class:`StoreWriter`
(extraction, import, synthetic generator); validate with :func:`check_store`. Code above the
store layer takes a store as :class:`FeatureStoreLike`.
"""

from .index import FinalizeResult, finalize_store
from .protocol import FeatureStoreLike
from .reader import FeatureStore, open_store
from .schema import SCHEMA_VERSION, STATUS_DONE, STATUS_FAILED, StoreSpec
from .writer import StoreWriter, VideoSink

__all__ = [
    "SCHEMA_VERSION",
    "STATUS_DONE",
    "STATUS_FAILED",
    "FeatureStore",
    "FeatureStoreLike",
    "FinalizeResult",
    "StoreSpec",
    "StoreWriter",
    "VideoSink",
    "finalize_store",
    "open_store",
]
