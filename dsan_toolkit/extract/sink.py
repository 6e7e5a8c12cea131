"""The write stage of extraction: a thread that applies the model stage's messages to the store.

Rows go to the :class:`~dsan_toolkit.store.StoreWriter` through a bounded queue (it bounds the
rows in flight); each video is committed atomically when its last row is written, and a failed
video is recorded with its reason (the rows written before are dropped with it).
"""

from __future__ import annotations

import queue
import threading

from ..decode.messages import VideoEnd, VideoFailed, VideoStart
from ..store import StoreWriter
from ..store.writer import VideoSink
from .encoder import FeatureRows, WriterMessage


class StoreSink:
    """A thread applying writer messages in order; errors are raised in the caller's thread
    (at the next :meth:`put`, or at :meth:`close`)."""

    def __init__(self, writer: StoreWriter, maxsize: int = 16) -> None:
        self.writer = writer
        self.q: queue.Queue[WriterMessage | None] = queue.Queue(maxsize=maxsize)
        self.error: BaseException | None = None
        self.sinks: dict[str, VideoSink] = {}
        self.thread = threading.Thread(target=self._run, name="dsan-store-writer", daemon=True)
        self.thread.start()

    def put(self, msg: WriterMessage) -> None:
        if self.error is not None:
            raise self.error
        self.q.put(msg)

    def _run(self) -> None:
        while (msg := self.q.get()) is not None:
            if self.error is not None:
                continue
            try:
                self._apply(msg)
            except BaseException as exc:  # re-raised in the main thread
                self.error = exc

    def _apply(self, msg: WriterMessage) -> None:
        if isinstance(msg, FeatureRows):
            self.sinks[msg.id].write_rows(msg.t0, msg.rows)
        elif isinstance(msg, VideoStart):
            self.sinks[msg.id] = self.writer.begin_video(
                msg.id, msg.T, num_frames=msg.num_frames, fps=msg.fps, padded=msg.padded
            )
        elif isinstance(msg, VideoEnd):
            self.sinks.pop(msg.id).commit()
        elif isinstance(msg, VideoFailed):
            sink = self.sinks.pop(msg.id, None)
            if sink is not None:
                sink.abort()
            self.writer.fail_video(msg.id, msg.error, num_frames=msg.num_frames, fps=msg.fps)
        else:
            raise TypeError(f"not a writer message: {msg!r}")

    def close(self) -> None:
        self.q.put(None)
        self.thread.join()
        for sink in self.sinks.values():
            sink.abort()
        if self.error is not None:
            raise self.error


__all__ = ["StoreSink"]
