"""Synthetic videos and datasets for tests, and deliberately broken files.

Typical use in a test module (a module-scoped fixture; the dataset is built once)::

    from dsan_toolkit.testing import TINY_SYNTH, synthetic_dataset

    @pytest.fixture(scope="module")
    def synth(tmp_path_factory):
        return synthetic_dataset(tmp_path_factory.mktemp("synth"), TINY_SYNTH)  # (root, manifest)

:func:`cached_synthetic_dataset` shares one copy per config within a process (a
temporary folder removed at exit): treat it as read-only, and :func:`copy_dataset` it
before changing any file.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..config import config_hash
from ..datasets.synth import SynthConfig, make_synthetic_dataset, write_video
from ..manifest import Manifest

# Small and fast (~1 s): 5 train videos (2 normal, 3 anomalous: one per class), 5 test
# videos (2 normal, 3 anomalous with segments), 64-96 frames of 64x48 at 16 fps.
TINY_SYNTH = SynthConfig(
    seed=0,
    train_normal=2,
    train_anomalous=3,
    test_normal=2,
    test_anomalous=3,
    min_frames=64,
    max_frames=96,
    width=64,
    height=48,
    min_event_frames=8,
)


def synthetic_dataset(root: str | Path, cfg: SynthConfig = TINY_SYNTH) -> tuple[Path, Manifest]:
    """Generate (or reuse) the dataset of ``cfg`` under ``root``; returns ``(root, manifest)``."""
    root = Path(root)
    return root, make_synthetic_dataset(root, cfg)


_CACHE: dict[str, tuple[Path, Manifest]] = {}
_CACHE_DIR: Path | None = None


def _cache_dir() -> Path:
    global _CACHE_DIR
    if _CACHE_DIR is None:
        _CACHE_DIR = Path(tempfile.mkdtemp(prefix="dsan-synth-"))
        atexit.register(shutil.rmtree, _CACHE_DIR, True)
    return _CACHE_DIR


def cached_synthetic_dataset(cfg: SynthConfig = TINY_SYNTH) -> tuple[Path, Manifest]:
    """One shared, read-only copy of ``cfg``'s dataset per process: ``(root, manifest)``."""
    key = config_hash(cfg)
    if key not in _CACHE:
        _CACHE[key] = synthetic_dataset(_cache_dir() / key[:16], cfg)
    return _CACHE[key]


def copy_dataset(src: str | Path, dst: str | Path) -> Path:
    """Copy a dataset folder (to break or change files without touching the original)."""
    return Path(shutil.copytree(src, dst))


def write_test_video(
    path: str | Path,
    num_frames: int = 32,
    *,
    width: int = 64,
    height: int = 48,
    fps: float = 16.0,
    seed: int = 0,
) -> Path:
    """A small real H.264 ``.mp4`` of random smooth colour frames (for probe/verify tests)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(1, height, width, 3)).astype(np.int16)
    drift = (np.arange(num_frames, dtype=np.int16) * 3)[:, None, None, None]
    frames = ((base + drift) % 256).astype(np.uint8)
    return write_video(path, frames, fps)


def make_truncated(src: str | Path, dst: str | Path, keep: float = 0.5) -> Path:
    """Copy the first ``keep`` fraction of ``src``'s bytes to ``dst`` (a cut-off download)."""
    data = Path(src).read_bytes()
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


def make_zero_byte(dst: str | Path) -> Path:
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(b"")
    return dst


def make_not_a_video(dst: str | Path, text: str = "this is not a video\n") -> Path:
    """A file with a video name that holds text (e.g. an HTML error page saved as .mp4)."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(text * 64, encoding="utf-8")
    return dst


def make_corrupt(src: str | Path, dst: str | Path, *, seed: int = 0, fraction: float = 0.5) -> Path:
    """Copy ``src`` with ``fraction`` of its bytes (after the first 64) overwritten by noise."""
    data = bytearray(Path(src).read_bytes())
    rng = np.random.default_rng(seed)
    n = len(data) - 64
    if n > 0:
        idx = 64 + rng.choice(n, size=int(n * fraction), replace=False)
        arr = np.frombuffer(data, dtype=np.uint8).copy()
        arr[idx] = rng.integers(0, 256, size=idx.size, dtype=np.uint8)
        data = bytearray(arr.tobytes())
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(bytes(data))
    return dst


def make_undecodable(src: str | Path, dst: str | Path, *, seed: int = 0, fraction: float = 0.05) -> Path:
    """Copy the MP4 ``src`` with ``fraction`` of its coded frame data (the ``mdat`` payload, from
    its 16th byte) overwritten by noise: the container opens, its frames fail to decode."""
    data = bytearray(Path(src).read_bytes())
    at = data.find(b"mdat")
    if at < 4:
        raise ValueError(f"{src} has no mdat box")
    size = int.from_bytes(data[at - 4 : at], "big")
    lo, hi = at + 16, min(len(data), at - 4 + size)
    rng = np.random.default_rng(seed)
    idx = lo + rng.choice(hi - lo, size=max(1, int((hi - lo) * fraction)), replace=False)
    arr = np.frombuffer(bytes(data), dtype=np.uint8).copy()
    arr[idx] = rng.integers(0, 256, size=idx.size, dtype=np.uint8)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(arr.tobytes())
    return dst


def tiny_config(**overrides: object) -> SynthConfig:
    """:data:`TINY_SYNTH` with some fields changed (e.g. ``seed=1``)."""
    return replace(TINY_SYNTH, **overrides)  # type: ignore[arg-type]


# Seven short videos (2 + 2 train, 1 + 2 test): enough to train a tiny run and score a video.
SMALL_SYNTH = SynthConfig(
    seed=2, train_normal=2, train_anomalous=2, test_normal=1, test_anomalous=2, min_frames=48, max_frames=64
)


def extract_tiny(manifest: Manifest, root: str | Path, out: str | Path, **changes: Any) -> Path:
    """Extract ``manifest``'s videos under ``root`` into the store ``out`` with the demo's tiny
    random CLIP (its ExtractConfig with ``changes``, e.g. ``snippet="first"``), in process;
    every video must succeed."""
    from ..extract import RunOptions, extract_features, tiny_extract_config

    cfg = replace(tiny_extract_config(), **changes)
    res = extract_features(manifest, root, out, cfg, RunOptions(workers=0))
    if not res.ok:
        raise AssertionError(f"extraction failed: {res.failed}")
    return Path(out)
