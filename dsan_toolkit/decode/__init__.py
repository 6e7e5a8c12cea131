"""Decoding the frames of feature rows for extraction: snippet sampling (:mod:`.snippets`),
crop geometry (:mod:`.crops`) and the block reader (:mod:`.reader`). Opening and probing a
video file, and the failure kinds, are :mod:`dsan_toolkit.media`."""
