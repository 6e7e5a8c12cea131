"""Feature extraction: videos -> CLIP features in a store (see :mod:`.pipeline`)."""

from .config import ExtractConfig, RunOptions, auto_workers, parse_shard, tiny_extract_config, torchrun_options
from .pipeline import ExtractResult, extract_features

__all__ = [
    "ExtractConfig",
    "ExtractResult",
    "RunOptions",
    "auto_workers",
    "extract_features",
    "parse_shard",
    "tiny_extract_config",
    "torchrun_options",
]
