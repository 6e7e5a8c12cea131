"""Feature extraction: videos -> CLIP features in a store (see :mod:`.pipeline`)."""

from .config import ExtractConfig, RunOptions, auto_workers, distributed_env, parse_shard, tiny_extract_config
from .pipeline import ExtractResult, extract_features

__all__ = [
    "ExtractConfig",
    "ExtractResult",
    "RunOptions",
    "auto_workers",
    "distributed_env",
    "extract_features",
    "parse_shard",
    "tiny_extract_config",
]
