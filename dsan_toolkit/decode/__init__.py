"""Decoding videos: probing (:mod:`.probe`), readers and snippet sampling (other modules)."""

from .probe import DECODE_MODES, REASONS, VideoError, VideoProbe, probe_video

__all__ = ["DECODE_MODES", "REASONS", "VideoError", "VideoProbe", "probe_video"]
