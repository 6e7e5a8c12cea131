"""Decoding the frames of feature rows in bounded blocks (runs in decode worker processes).

:func:`iter_video_blocks` opens one video with decord and yields messages (plain dicts, so
they cross process boundaries through a DataLoader):

- ``{"kind": "start", "id", "T", "num_frames", "fps", "padded"}``
- ``{"kind": "rows", "id", "t0", "rows", "k", "frames"}``: uint8 ``(rows * k, H, W, 3)``,
  the ``k`` encoded frames of rows ``[t0, t0 + rows)``; at most ``block_frames`` frames
- ``{"kind": "end", "id"}`` after the last block, or ``{"kind": "fail", "id", "error"}``
  (the video cannot be opened, has no frame, or a block fails to decode).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .probe import _decord, _short
from .snippets import row_count, snippet_frame_indices


def iter_video_blocks(
    video_id: str, path: str | Path, *, rule: str, snippet_len: int = 16, block_frames: int = 64
) -> Iterator[dict[str, Any]]:
    import torch

    path = Path(path)
    if not path.is_file():
        yield {"kind": "fail", "id": video_id, "error": f"missing: {path} does not exist"}
        return
    decord = _decord()
    try:
        vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        n = len(vr)
        fps = float(vr.get_avg_fps())
    except Exception as exc:  # decord raises RuntimeError/DECORDError for any unreadable input
        yield {"kind": "fail", "id": video_id, "error": f"unreadable: {_short(exc)}"}
        return
    T, padded = row_count(n, snippet_len)
    if T == 0:
        yield {"kind": "fail", "id": video_id, "error": "undecodable: no video frames", "num_frames": n, "fps": fps}
        return
    idx = snippet_frame_indices(rule, n, snippet_len)
    k = idx.shape[1]
    rows_per_block = max(1, block_frames // k)
    yield {"kind": "start", "id": video_id, "T": T, "num_frames": n, "fps": fps, "padded": padded}
    for t0 in range(0, T, rows_per_block):
        sel = idx[t0 : t0 + rows_per_block].reshape(-1)
        uniq, inverse = np.unique(sel, return_inverse=True)
        try:
            frames = vr.get_batch(uniq.tolist()).asnumpy()
        except Exception as exc:
            yield {"kind": "fail", "id": video_id, "error": f"undecodable: frames {int(uniq[0])}..{int(uniq[-1])}: {_short(exc)}",
                   "num_frames": n, "fps": fps}
            return
        if len(uniq) != len(sel):
            frames = frames[inverse]
        yield {"kind": "rows", "id": video_id, "t0": t0, "rows": len(sel) // k, "k": k,
               "frames": torch.from_numpy(np.ascontiguousarray(frames))}
    yield {"kind": "end", "id": video_id}
