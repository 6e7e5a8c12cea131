"""Feature extraction: videos -> CLIP features in a store (see :mod:`.pipeline`)."""

from .config import ExtractConfig, RunOptions, distributed_env, parse_shard
from .pipeline import ExtractResult, extract_features

__all__ = ["ExtractConfig", "ExtractResult", "RunOptions", "distributed_env", "extract_features", "parse_shard"]
