"""Helpers for tests and demos: synthetic videos and datasets, deliberately broken files."""

from .videos import (
    SMALL_SYNTH,
    TINY_SYNTH,
    cached_synthetic_dataset,
    copy_dataset,
    extract_tiny,
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
    "SMALL_SYNTH",
    "TINY_SYNTH",
    "cached_synthetic_dataset",
    "copy_dataset",
    "extract_tiny",
    "make_corrupt",
    "make_not_a_video",
    "make_truncated",
    "make_undecodable",
    "make_zero_byte",
    "synthetic_dataset",
    "tiny_config",
    "write_test_video",
]
