"""Decoding videos: opening and probing (:mod:`.probe`), failure kinds (:mod:`.failures`),
decord's native log (:mod:`.native_log`), root checks (:mod:`.root`), readers and snippet
sampling (other modules)."""

from .probe import DECODE_MODES, REASONS, VideoError, VideoProbe, probe_video

__all__ = ["DECODE_MODES", "REASONS", "VideoError", "VideoProbe", "probe_video"]
