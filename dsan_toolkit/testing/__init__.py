"""Helpers for tests and demos: synthetic videos and datasets, deliberately broken files."""

from .videos import (
    TINY_SYNTH,
    cached_synthetic_dataset,
    copy_dataset,
    make_corrupt,
    make_not_a_video,
    make_truncated,
    make_undecodable,
    make_zero_byte,
    synthetic_dataset,
    tiny_config,
    write_test_video,
)

__all__ = [
    "TINY_SYNTH",
    "cached_synthetic_dataset",
    "copy_dataset",
    "make_corrupt",
    "make_not_a_video",
    "make_truncated",
    "make_undecodable",
    "make_zero_byte",
    "synthetic_dataset",
    "tiny_config",
    "write_test_video",
]
