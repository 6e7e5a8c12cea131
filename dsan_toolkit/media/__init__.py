"""Video files as media: opening and probing them with decord (:mod:`.probe`), why one cannot
be used (:mod:`.failures`), decord's native log (:mod:`.native_log`) and whether a folder holds
a dataset's videos at all (:mod:`.root`). Decoding the frames of feature rows is
:mod:`dsan_toolkit.decode`, which builds on this layer."""

from .probe import DECODE_MODES, REASONS, VideoError, VideoProbe, probe_video

__all__ = ["DECODE_MODES", "REASONS", "VideoError", "VideoProbe", "probe_video"]
