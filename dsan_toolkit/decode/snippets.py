"""Snippet sampling: which frames of a video make each feature row (pure functions).

**Row-count rule.** A video of ``N`` decodable frames gives ``T = N // L`` rows (``L = 16``):
snippet ``t`` covers frames ``[t*L, (t+1)*L)`` and the last ``N % L`` frames are dropped. This
matches the ground truth of the official code, which is ``T * L`` frames long (annotated
intervals past ``T * L`` are cut). A video with ``0 < N < L`` gives one *padded* snippet
(frame indices clamped to ``N - 1``; the record says ``padded: true``; its ground truth is
``L`` frames long, the frames past ``N`` being normal). ``N == 0`` is a failed video.

**Snippet rules** (a registry: ``--snippet NAME``) say which frames of a snippet are encoded
and averaged into its row: ``first`` (frame ``t*L``), ``middle`` (frame ``t*L + L//2``),
``mean`` (all ``L`` frames, the row is the mean of their per-frame features).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class SnippetRule:
    name: str
    description: str
    offsets: Callable[[int], np.ndarray]  # snippet_len -> offsets of the encoded frames in a snippet


_RULES: dict[str, SnippetRule] = {}


def register_snippet_rule(
    name: str, description: str
) -> Callable[[Callable[[int], np.ndarray]], Callable[[int], np.ndarray]]:
    def deco(fn: Callable[[int], np.ndarray]) -> Callable[[int], np.ndarray]:
        if name in _RULES:
            raise ValueError(f"snippet rule {name!r} registered twice")
        _RULES[name] = SnippetRule(name, description, fn)
        return fn

    return deco


@register_snippet_rule("first", "the first frame of each snippet")
def _first(snippet_len: int) -> np.ndarray:
    return np.zeros(1, dtype=np.int64)


@register_snippet_rule("middle", "the middle frame of each snippet (offset L // 2)")
def _middle(snippet_len: int) -> np.ndarray:
    return np.array([snippet_len // 2], dtype=np.int64)


@register_snippet_rule("mean", "the mean of the per-frame features of all L frames")
def _mean(snippet_len: int) -> np.ndarray:
    return np.arange(snippet_len, dtype=np.int64)


def list_snippet_rules() -> list[str]:
    return sorted(_RULES)


def get_snippet_rule(name: str) -> SnippetRule:
    try:
        return _RULES[name]
    except KeyError:
        raise InputError(f"unknown snippet rule {name!r}; choose one of {', '.join(list_snippet_rules())}") from None


def row_count(num_frames: int, snippet_len: int = 16) -> tuple[int, bool]:
    """``(T, padded)`` for a video of ``num_frames`` frames (see the module doc)."""
    if num_frames <= 0:
        return 0, False
    if num_frames < snippet_len:
        return 1, True
    return num_frames // snippet_len, False


def snippet_frame_indices(rule: str, num_frames: int, snippet_len: int = 16) -> np.ndarray:
    """(T, k) frame indices encoded for each row; rows average their k frames."""
    T, _ = row_count(num_frames, snippet_len)
    offsets = get_snippet_rule(rule).offsets(snippet_len)
    idx = np.arange(T, dtype=np.int64)[:, None] * snippet_len + offsets[None, :]
    return np.minimum(idx, max(num_frames - 1, 0))
