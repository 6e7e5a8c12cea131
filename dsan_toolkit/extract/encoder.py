"""The model stage: decoded frame blocks -> feature rows, with model calls fixed per video.

**Same input, same bytes.** A CPU (or GPU) kernel may round a row's last bit differently
depending on the call it is in: how many images the call holds (matrix-multiply kernels are
picked by shape) and, on a CPU, how many threads run it (measured on the reference machine:
ViT-B-16 and ``dsan-tiny`` give bit-equal rows with 1, 2 and 4 threads for calls of 1, 20 and
27 images, and rows that differ by up to 2.7e-6 for calls of 5 and 10 images). So:

- a video's frames are cut into model calls at fixed offsets from *its own* first frame
  (frames ``[0, g)``, ``[g, 2g)``, ..., the rest in a last, smaller call; ``g`` =
  :meth:`Encoder.frames_per_call`), never mixed with another video's frames and whatever the
  block boundaries; a call's content thus depends on the video and the options only, not on
  which worker decoded it or when;
- on a CPU the model always runs with :data:`CPU_MODEL_THREADS` intra-op thread (the decode
  workers that also encode run one thread each anyway; ``--workers 0`` and decode-only workers
  do the same in the main process, see :func:`model_threads`).

The same command on the same machine therefore writes the same bytes with ``--workers`` 0, 1 or
N. Calls are as large as before within a video; only a video's last call is smaller.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..decode.crops import parse_crops
from ..decode.messages import DecodeMessage, FrameBlock, VideoEnd, VideoFailed, VideoStart
from .config import CPU_MODEL_THREADS, ExtractConfig, RunOptions
from .preprocess import preprocess_frames

CPU_BATCH_BYTES = 16 * 2**20  # float crops per model call on a CPU: about what a last-level cache holds


@contextlib.contextmanager
def model_threads(device: torch.device, threads: int | None = CPU_MODEL_THREADS) -> Iterator[None]:
    """Run the block with ``threads`` torch intra-op threads when the model runs on a CPU
    (``None`` or another device: unchanged); the previous count is restored after."""
    if device.type != "cpu" or threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _Pieces:
    """A FIFO of tensors along dim 0, taken from by count without concatenating."""

    def __init__(self) -> None:
        self.parts: deque[torch.Tensor] = deque()
        self.size = 0

    def push(self, t: torch.Tensor) -> None:
        if t.shape[0]:
            self.parts.append(t)
            self.size += int(t.shape[0])

    def take(self, n: int) -> list[torch.Tensor]:
        """The first ``n`` items (``n <= size``), as views of the pushed tensors."""
        out: list[torch.Tensor] = []
        while n > 0:
            head = self.parts[0]
            if head.shape[0] <= n:
                out.append(self.parts.popleft())
            else:
                out.append(head[:n])
                self.parts[0] = head[n:]
            n -= int(out[-1].shape[0])
            self.size -= int(out[-1].shape[0])
        return out


@dataclass(frozen=True)
class FeatureRows:
    """Rows ``[t0, t0 + rows.shape[1])`` of a video for every crop: float32 ``(C, r, D)``
    (``frames``: how many decoded frames they came from)."""

    id: str
    t0: int
    rows: np.ndarray
    frames: int


# what the model stage sends to the store writer
WriterMessage = VideoStart | FeatureRows | VideoEnd | VideoFailed


@dataclass
class _Video:
    """A video being encoded: frames not yet through the model (less than one call between
    blocks), per-frame features not yet averaged into rows, blocks waiting for their rows."""

    frames: _Pieces = field(default_factory=_Pieces)
    feats: _Pieces = field(default_factory=_Pieces)
    blocks: deque[tuple[int, int, int]] = field(default_factory=deque)  # (t0, rows, k)


class Encoder:
    """Runs the image tower on a video's frames in calls of :meth:`frames_per_call` frames.

    Frames wait on the device as uint8; each call's frames are preprocessed straight into one
    reused batch buffer (no concatenation copies), then the image tower runs on it.
    """

    def __init__(
        self, model: torch.nn.Module, cfg: ExtractConfig, opts: RunOptions, device: torch.device, info: Any
    ) -> None:
        self.model = model
        self.cfg = cfg
        self.device = device
        self.batch_size = max(1, opts.batch_size)
        self.crops = parse_crops(cfg.crops)
        self.info = info
        self.autocast_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(cfg.precision)
        self._buf: torch.Tensor | None = None

    def to_device(self, frames: torch.Tensor) -> torch.Tensor:
        return frames.to(self.device, non_blocking=True)

    def frames_per_call(self) -> int:
        """Frames per model call: ``batch_size // C``; on a CPU also at most what fits in
        :data:`CPU_BATCH_BYTES` of float crops, so that the crops are still in cache when the
        model reads them (a bigger batch makes the CPU write, then re-read, them through DRAM)."""
        C, S = len(self.crops), self.info.image_size
        g = max(1, self.batch_size // C)
        if self.device.type == "cpu":
            g = min(g, max(1, CPU_BATCH_BYTES // (C * 3 * S * S * 4)))
        return g

    def _buffer(self, n_frames: int) -> torch.Tensor:
        C, S = len(self.crops), self.info.image_size
        if self._buf is None or self._buf.shape[0] < n_frames:
            self._buf = torch.empty((n_frames, C, 3, S, S), device=self.device)
        return self._buf[:n_frames]

    def _model(self, x: torch.Tensor) -> torch.Tensor:
        if self.autocast_dtype is not None:
            with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                return self.model.encode_image(x).float()
        return self.model.encode_image(x).float()

    @torch.inference_mode()
    def call(self, pieces: list[torch.Tensor]) -> torch.Tensor:
        """One model call on the frames of ``pieces`` (uint8 (n_i, H, W, 3), one video):
        features (n, C, D) float32 on the device."""
        C, S = len(self.crops), self.info.image_size
        n = sum(int(p.shape[0]) for p in pieces)
        buf = self._buffer(n)
        s = 0
        for p in pieces:
            preprocess_frames(
                p,
                self.crops,
                resize=int(self.cfg.resize or S),
                size=S,
                mean=self.info.mean,
                std=self.info.std,
                interpolation=self.cfg.interpolation,
                out=buf[s : s + p.shape[0]],
            )
            s += int(p.shape[0])
        feats = self._model(buf.view(n * C, 3, S, S))
        if self.cfg.normalize_features:
            feats = torch.nn.functional.normalize(feats, dim=-1)
        return feats.view(n, C, -1)

    def run_calls(self, video: _Video, *, last: bool) -> None:
        """Every full call of ``video``'s waiting frames (and the rest too when ``last``)."""
        g = self.frames_per_call()
        while video.frames.size >= g or (last and video.frames.size):
            video.feats.push(self.call(video.frames.take(min(g, video.frames.size))))

    def ready_rows(self, vid: str, video: _Video) -> Iterator[FeatureRows]:
        """The rows of each waiting block whose frames have all been encoded, in order."""
        while video.blocks and video.feats.size >= video.blocks[0][1] * video.blocks[0][2]:
            t0, rows, k = video.blocks.popleft()
            with torch.inference_mode():
                f = torch.cat(video.feats.take(rows * k)).view(rows, k, len(self.crops), -1).mean(dim=1)
                block = f.permute(1, 0, 2).contiguous().cpu().numpy()
            yield FeatureRows(vid, t0, block, rows * k)


def encode_stream(messages: Iterable[DecodeMessage], encoder: Encoder) -> Iterator[WriterMessage]:
    """Decoder messages (:mod:`dsan_toolkit.decode.messages`, of one or several videos,
    interleaved) -> writer messages: each :class:`~dsan_toolkit.decode.messages.FrameBlock`
    becomes :class:`FeatureRows` once its frames are encoded; start, end and failure pass on.

    Each video's messages keep their order (model calls at fixed offsets from the video's start,
    see the module docstring).
    """
    open_videos: dict[str, _Video] = {}
    for msg in messages:
        if isinstance(msg, FrameBlock):
            video = open_videos[msg.id]
            video.frames.push(encoder.to_device(msg.frames))
            video.blocks.append((msg.t0, msg.rows, msg.k))
            encoder.run_calls(video, last=False)
            yield from encoder.ready_rows(msg.id, video)
        elif isinstance(msg, VideoStart):
            open_videos[msg.id] = _Video()
            yield msg
        elif isinstance(msg, VideoEnd):
            video = open_videos.pop(msg.id)
            encoder.run_calls(video, last=True)
            yield from encoder.ready_rows(msg.id, video)
            yield msg
        elif isinstance(msg, VideoFailed):  # the rows already sent are dropped with the video
            open_videos.pop(msg.id, None)
            yield msg
        else:
            raise TypeError(f"not a decoder message: {msg!r}")


__all__ = [
    "CPU_BATCH_BYTES",
    "CPU_MODEL_THREADS",
    "Encoder",
    "FeatureRows",
    "WriterMessage",
    "encode_stream",
    "model_threads",
]
