"""Seeded, version-stable model weights and snippet features for golden-output tests.

The golden fixtures under ``tests/fixtures/official/`` hold the outputs of the official
DSANet / VadCLIP code; the inputs those outputs were computed from (a full set of model weights,
tens of millions of numbers, and the snippet features of a few videos) are not stored. They are
regenerated here, identically on every machine, from a seed and a name:

- every array comes from its own stream: numpy's PCG64 seeded with ``SeedSequence([seed,
  crc32(name)])`` (a documented, fixed algorithm), drawn with ``Generator.random(dtype=float32)``
  (uniform, 24 random bits per value) and mapped affinely in float32. No torch initialiser is
  involved, so a torch upgrade cannot change the inputs;
- a weight's distribution follows its name and shape (:func:`init_rule`): centred uniform
  with a Xavier-like spread for matrices, small for biases and embeddings, around 1 for
  normalisation weights;
- snippet features are a per-video base vector plus an AR(1) sequence over time, so
  neighbouring snippets are similar (the similarity graph's threshold matters) and distant
  ones less so.

:func:`arrays_digest` hashes a set of arrays (names, dtypes, shapes, little-endian bytes); the
fixtures record it, so a change in this generator (or in numpy's streams) shows up as a digest
mismatch instead of as puzzling output differences. ``GENERATOR_VERSION`` names the rules.
"""

from __future__ import annotations

import hashlib
import math
import zlib
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

GENERATOR_VERSION = 1

StateSpec = Sequence[tuple[str, Sequence[int], str]]  # (key, shape, source key: equal sources share values)


def stream(seed: int, name: str) -> np.random.Generator:
    """The random stream of ``name`` under ``seed`` (independent of every other name)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), zlib.crc32(name.encode("utf-8"))])))


def uniform(seed: int, name: str, shape: Sequence[int], center: float, half_width: float) -> np.ndarray:
    """float32 values uniform in ``[center - half_width, center + half_width)``."""
    u = np.asarray(stream(seed, name).random(size=tuple(int(s) for s in shape), dtype=np.float32))  # 0-d stays an array
    # center + half_width * (2u - 1), one float32 rounding per step, in place
    u *= np.float32(2.0)
    u -= np.float32(1.0)
    u *= np.float32(half_width)
    u += np.float32(center)
    return u


def init_rule(key: str, shape: Sequence[int]) -> tuple[float, float]:
    """``(center, standard deviation)`` of the weight ``key`` of ``shape``."""
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "video_prototypes":
        return 0.0, 1.0  # drawn from a standard normal by the official code too
    if leaf == "learn_scale":
        return 1.0, 0.1
    if leaf == "sigma":
        return 0.1, 0.0
    if leaf == "logit_scale":
        return math.log(100.0), 0.0
    if leaf == "bias" or leaf.endswith("_bias"):
        return 0.0, 0.02
    if "embedding" in key:
        return 0.0, 0.02
    if len(shape) == 1:  # normalisation weights
        return 1.0, 0.05
    if len(shape) >= 2:
        field = math.prod(int(s) for s in shape[2:])
        fan_out, fan_in = int(shape[0]) * field, int(shape[1]) * field
        return 0.0, math.sqrt(2.0 / (fan_in + fan_out))
    return 0.0, 0.02


def seeded_weight(seed: int, key: str, shape: Sequence[int], scale: float = 1.0) -> np.ndarray:
    """The weight ``key``: :func:`init_rule`'s distribution, its spread times ``scale``."""
    center, std = init_rule(key, shape)
    return uniform(seed, "weight/" + key, shape, center, scale * std * math.sqrt(3.0))


def seeded_state(spec: StateSpec, seed: int, scales: Mapping[str, float] | None = None) -> dict[str, np.ndarray]:
    """A state dict for ``spec``: every key gets the values of its source key (aliases share one
    array); ``scales`` (source key -> factor) narrows or widens single weights."""
    scales = scales or {}
    unknown = set(scales) - {source for _, _, source in spec}
    if unknown:
        raise ValueError(f"scales for keys that are not in the spec: {sorted(unknown)}")
    by_source: dict[str, np.ndarray] = {}
    out: dict[str, np.ndarray] = {}
    for key, shape, source in spec:
        arr = by_source.get(source)
        if arr is None:
            arr = by_source[source] = seeded_weight(seed, source, shape, scales.get(source, 1.0))
        if arr.shape != tuple(shape):
            raise ValueError(f"{key}: shape {tuple(shape)} differs from its source {source!r} {arr.shape}")
        out[key] = arr
    return out


def seeded_features(seed: int, name: str, num_snippets: int, dim: int = 512, rho: float = 0.9) -> np.ndarray:
    """(T, dim) float32 snippet features of the video ``name``: ``0.8 * base + 0.6 * x_t`` with
    ``x_t = rho * x_{t-1} + sqrt(1 - rho^2) * e_t`` (unit-variance uniform base and innovations)."""
    rng = stream(seed, "features/" + name)
    half = np.float32(math.sqrt(3.0))
    two, one = np.float32(2.0), np.float32(1.0)
    base = half * (two * rng.random(dim, dtype=np.float32) - one)
    noise = half * (two * rng.random((num_snippets, dim), dtype=np.float32) - one)
    r, s = np.float32(rho), np.float32(math.sqrt(1.0 - rho * rho))
    x = np.empty_like(noise)
    x[0] = noise[0]
    for t in range(1, num_snippets):
        x[t] = r * x[t - 1] + s * noise[t]
    return (np.float32(0.8) * base + np.float32(0.6) * x).astype(np.float32, copy=False)


def arrays_digest(arrays: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]]) -> str:
    """sha256 over sorted names, dtypes, shapes and little-endian bytes of a set of arrays."""
    items = sorted(arrays.items() if isinstance(arrays, Mapping) else arrays, key=lambda kv: kv[0])
    h = hashlib.sha256()
    for name, arr in items:
        a = np.asarray(arr)
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


__all__ = [
    "GENERATOR_VERSION",
    "arrays_digest",
    "init_rule",
    "seeded_features",
    "seeded_state",
    "seeded_weight",
    "stream",
    "uniform",
]
