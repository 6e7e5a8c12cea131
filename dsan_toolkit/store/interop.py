"""Interoperability with the released VadCLIP features, and comparing stores.

The released layout (see ``datasets/README.md``): one ``float32 (T, 512)`` ``.npy`` file per
video per crop named ``<video name>__<crop>.npy``, listed in ``path,label`` CSVs whose paths
are the authors' absolute paths. Paths are therefore mapped by *file name* only.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import register_config, sha256_file, to_dict
from ..errors import InputError
from ..manifest import Manifest
from ..progress import Listener, counted
from .index import FinalizeResult
from .reader import FeatureStore
from .schema import StoreSpec
from .writer import StoreWriter

FORMATS = ("vadclip",)
CROP_SEP = "__"


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise InputError(f"unknown feature format {fmt!r}; supported: {', '.join(FORMATS)}")


def split_feature_name(file_name: str) -> tuple[str, int] | None:
    """``Abuse001_x264__3.npy`` -> ("Abuse001_x264", 3); None if the name does not fit."""
    if not file_name.endswith(".npy"):
        return None
    stem = file_name[:-4]
    name, sep, crop = stem.rpartition(CROP_SEP)
    if not sep or not name or not crop.isdigit():
        return None
    return name, int(crop)


def read_feature_list(path: str | Path) -> list[tuple[str, int, str]]:
    """(video name, crop, label) of every row of an official list CSV."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"feature list not found: {path}")
    out: list[tuple[str, int, str]] = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["path", "label"]:
            raise InputError(f"{path}: expected a 'path,label' header, got {header}")
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            parsed = split_feature_name(row[0].replace("\\", "/").rsplit("/", 1)[-1])
            if parsed is None:
                raise InputError(f"{path}:{lineno}: {row[0]!r} is not a '<name>__<crop>.npy' feature file")
            out.append((parsed[0], parsed[1], row[1] if len(row) > 1 else ""))
    return out


# Rows a released video may differ from the row rule of its frame count (``N // L``): the
# extraction code of the released features is unreleased and may keep a last partial snippet.
LENGTH_TOLERANCE = 1


@register_config
@dataclass(frozen=True)
class ImportConfig:
    format: str
    lists: tuple[str, ...]  # sha256 of each list file
    crops: tuple[int, ...]
    dtype: str = "float32"
    length_tolerance: int = LENGTH_TOLERANCE
    allow_length_mismatch: bool = False  # import videos whose T contradicts their frame count, flagged


@dataclass
class ImportReport:
    store: Path
    videos: int = 0
    imported: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    unknown_names: list[str] = field(default_factory=list)  # in the lists, not in the manifest
    extra_files: list[str] = field(default_factory=list)  # .npy files under root not used
    flagged: list[tuple[str, str]] = field(default_factory=list)  # imported with a flag (allow_length_mismatch)
    unchecked: list[str] = field(default_factory=list)  # imported without a frame count: row count not checked
    finalize: FinalizeResult | None = None

    @property
    def ok(self) -> bool:
        return not self.failed and not self.unknown_names


def import_features(
    fmt: str,
    lists: Sequence[str | Path],
    root: str | Path,
    manifest: Manifest,
    out: str | Path,
    *,
    crops: Sequence[int] | None = None,
    dtype: str = "float32",
    overwrite: bool = False,
    frame_counts: dict[str, int] | None = None,
    allow_length_mismatch: bool = False,
    on_event: Listener | None = None,
) -> ImportReport:
    """Import released per-crop ``.npy`` features into a store (see module doc).

    Videos are the manifest videos named in the lists; crops are ``crops`` or every crop the
    lists name (files of the other crops are looked up in ``root`` by name too). A video
    with a missing or unreadable file (a pickled object array is never unpickled), a bad
    shape/dtype, or a row count that contradicts its frame count is recorded as failed with the
    reason. Frame counts come from ``frame_counts`` (e.g. a ``dsan verify`` lock file) or the
    manifest's ``num_frames``; a video's T may differ from the row rule ``N // L`` by
    :data:`LENGTH_TOLERANCE` rows. ``allow_length_mismatch`` imports such videos anyway, each
    flagged in its record (``dsan store info`` / ``check`` show the flags).
    """
    _check_format(fmt)
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"feature folder {root} is not a folder")
    if not lists:
        raise InputError("give at least one --list")
    rows = [r for lst in lists for r in read_feature_list(lst)]
    names = list(dict.fromkeys(name for name, _, _ in rows))
    unknown = [n for n in names if n not in manifest]
    crop_ids = tuple(sorted(set(crops) if crops else {c for _, c, _ in rows}))
    files: dict[str, Path] = {}
    for p in root.rglob("*.npy"):
        files.setdefault(p.name, p)
    sub = manifest.select(n for n in names if n in manifest)
    report = ImportReport(store=Path(out), videos=len(sub), unknown_names=unknown)
    wanted = {f"{v.id}{CROP_SEP}{c}.npy" for v in sub.videos for c in crop_ids}
    report.extra_files = sorted(set(files) - wanted)
    if not len(sub):
        raise InputError(f"none of the {len(names)} videos in the lists is in manifest {manifest.name!r}")
    dim = _feature_dim(
        [files[n] for n in (f"{v.id}{CROP_SEP}{c}.npy" for v in sub.videos for c in crop_ids) if n in files], root
    )
    counts = {v.id: v.num_frames for v in sub.videos if v.num_frames is not None}
    counts.update(frame_counts or {})
    cfg = ImportConfig(
        format=fmt,
        lists=tuple(sha256_file(x) for x in lists),
        crops=crop_ids,
        dtype=dtype,
        allow_length_mismatch=allow_length_mismatch,
    )
    spec = StoreSpec(
        manifest=sub,
        crops=crop_ids,
        feature_dim=dim,
        backbone={
            "model": "ViT-B-16",
            "pretrained": "openai",
            "source": f"released {fmt} features (as described by their authors)",
        },
        random_weights=False,
        preprocessing={
            "kind": f"released {fmt} features",
            "snippet_len": sub.info.snippet_len,
            "note": "extraction code unreleased: snippet rule and crop geometry unknown",
        },
        snippet_rule="unknown (released)",
        snippet_len=sub.info.snippet_len,
        config=to_dict(cfg),
        producer="import",
        dtype=dtype,
        extra={"source_lists": [str(x) for x in lists]},
    )
    with StoreWriter(out, spec, overwrite=overwrite) as w:
        pending = w.pending_ids()
        with counted(on_event, "import", len(pending), unit="videos") as advance:
            _import_videos(w, pending, advance, crop_ids, files, dim, counts, sub.info.snippet_len, cfg, report)
        report.imported = len(w.done_ids())
        report.finalize = w.finalize()
    return report


def _import_videos(
    w: StoreWriter,
    pending: list[str],
    advance: Any,
    crop_ids: Sequence[int],
    files: dict[str, Path],
    dim: int,
    counts: dict[str, int],
    snippet_len: int,
    cfg: ImportConfig,
    report: ImportReport,
) -> None:
    """Write each pending video, or record it failed with the reason."""
    for vid in pending:
        advance()
        try:
            feats = _load_video(vid, crop_ids, files, dim)
            flags = _length_flags(vid, feats.shape[1], counts.get(vid), snippet_len, cfg)
        except InputError as exc:
            w.fail_video(vid, str(exc))
            report.failed.append((vid, str(exc)))
            continue
        w.write_video(vid, feats, num_frames=counts.get(vid), flags=flags)
        if counts.get(vid) is None:
            report.unchecked.append(vid)
        if flags:
            report.flagged.append((vid, flags[0]))


def _load_npy(path: Path, mmap: bool = False) -> np.ndarray:
    """An ``.npy`` array, never unpickled: an object array (or any unreadable file) is an
    :class:`InputError` naming the file."""
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path.name}: not a readable .npy ({exc})") from None


def _feature_dim(paths: list[Path], root: Path) -> int:
    """The feature dimension, from the first listed file that is a readable 2-d array (the
    others are judged per video, like every later file)."""
    if not paths:
        raise InputError(f"no feature file of the listed videos was found under {root}")
    for p in paths:
        try:
            a = _load_npy(p, mmap=True)
        except InputError:
            continue
        if a.ndim == 2:
            return int(a.shape[1])
    raise InputError(f"none of the {len(paths)} listed feature files under {root} is a readable (T, D) .npy array")


def _length_flags(vid: str, T: int, num_frames: int | None, snippet_len: int, cfg: ImportConfig) -> tuple[str, ...]:
    """() when T fits the frame count (or none is known); else a refusal, or with
    ``allow_length_mismatch`` the flag recorded with the video."""
    from ..decode.snippets import row_count

    if num_frames is None:
        return ()
    want, _ = row_count(int(num_frames), snippet_len)
    if abs(T - want) <= cfg.length_tolerance:
        return ()
    what = (
        f"{T} rows, but its {num_frames} frames give {want} snippets of {snippet_len} "
        f"(tolerance {cfg.length_tolerance} row{'s' if cfg.length_tolerance != 1 else ''})"
    )
    if not cfg.allow_length_mismatch:
        raise InputError(f"{vid}: {what}; pass --allow-length-mismatch to import it flagged")
    return (f"length mismatch: {what}",)


def _load_video(vid: str, crops: Sequence[int], files: dict[str, Path], dim: int) -> np.ndarray:
    arrays = []
    for c in crops:
        name = f"{vid}{CROP_SEP}{c}.npy"
        if name not in files:
            raise InputError(f"missing file {name}")
        a = _load_npy(files[name])
        if a.ndim != 2 or a.shape[1] != dim:
            raise InputError(f"{name}: shape {a.shape}, expected (T, {dim})")
        if a.dtype not in (np.float32, np.float16, np.float64):
            raise InputError(f"{name}: dtype {a.dtype}, expected float32")
        arrays.append(a)
    lengths = {a.shape[0] for a in arrays}
    if len(lengths) != 1:
        raise InputError(f"crops of {vid} have different lengths {sorted(lengths)}")
    if 0 in lengths:
        raise InputError(f"{vid}: no rows (0 snippets)")
    if not all(np.isfinite(a).all() for a in arrays):
        raise InputError(f"{vid}: non-finite values")
    return np.stack(arrays).astype(np.float32)


# -- export -------------------------------------------------------------------------------------
def _save_npy(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, arr, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _official_label(manifest: Manifest, vid: str) -> str:
    if "_label_" in vid:  # XD-Violence: the label string is in the name
        return vid.split("_label_", 1)[1]
    return manifest.video(vid).labels[0]


def export_features(
    store: FeatureStore, out: str | Path, fmt: str = "vadclip", *, on_event: Listener | None = None
) -> dict[str, Any]:
    """Write the official layout: ``out/<folder>/<name>__<crop>.npy`` (folder as in the
    manifest path) and ``<dataset>_CLIP_rgb.csv`` (train, every crop) /
    ``<dataset>_CLIP_rgbtest.csv`` (test, the dataset's test crop) with absolute paths."""
    _check_format(fmt)
    out = Path(out).resolve()
    m = store.manifest
    crops = store.crop_ids
    test_crop = m.info.test_crop if m.info.test_crop in crops else crops[0]
    lists: dict[str, list[tuple[str, str]]] = {"train": [], "test": []}
    n_files = 0
    ids = store.video_ids()
    with counted(on_event, "export", len(ids), unit="videos") as advance:
        for vid in ids:
            advance()
            _export_video(store, m, vid, out, crops, test_crop, lists)
            n_files += len(crops)
    written = []
    for split, suffix in (("train", "rgb"), ("test", "rgbtest")):
        path = out / f"{m.name}_CLIP_{suffix}.csv"
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=out)
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            wr = csv.writer(fh)
            wr.writerow(["path", "label"])
            wr.writerows(lists[split])
        os.replace(tmp, path)
        written.append(path)
    return {"files": n_files, "lists": written, "test_crop": test_crop}


def _export_video(
    store: FeatureStore,
    m: Manifest,
    vid: str,
    out: Path,
    crops: list[int],
    test_crop: int,
    lists: dict[str, list[tuple[str, str]]],
) -> None:
    """Every crop of one video as ``<name>__<crop>.npy``, listed in the train or test list."""
    v = m.video(vid)
    folder = out / Path(v.path).parent
    feats = store.read(vid)
    label = _official_label(m, vid)
    for i, c in enumerate(crops):
        path = folder / f"{vid}{CROP_SEP}{c}.npy"
        _save_npy(path, feats[i])
        if v.split == "train" or c == test_crop:
            lists["test" if v.split == "test" else "train"].append((str(path), label))


# -- compare ------------------------------------------------------------------------------------
def compare_stores(
    a: FeatureStore, b: FeatureStore, crops: Sequence[int] | None = None, *, on_event: Listener | None = None
) -> dict[str, Any]:
    """Per-video cosine similarity (mean over the common rows and crops) and length agreement."""
    la, lb = a.lengths(), b.lengths()
    common = [v for v in la if v in lb]
    crop_ids = list(crops) if crops is not None else [c for c in a.crop_ids if c in b.crop_ids]
    if not crop_ids:
        raise InputError(f"the stores share no crop (A: {a.crop_ids}, B: {b.crop_ids})")
    if a.feature_dim != b.feature_dim:
        raise InputError(f"feature dims differ: {a.feature_dim} vs {b.feature_dim}")
    rows = []
    with counted(on_event, "compare", len(common), unit="videos") as advance:
        for vid in common:
            advance()
            rows.append(_compare_video(a, b, vid, crop_ids, la[vid], lb[vid]))
    cosines = np.array([r["cos_mean"] for r in rows]) if rows else np.zeros(0)
    summary = {
        "common": len(common),
        "only_a": sorted(set(la) - set(lb)),
        "only_b": sorted(set(lb) - set(la)),
        "crops": crop_ids,
        "same_length": int(sum(r["same_length"] for r in rows)),
        "cos_mean": float(cosines.mean()) if len(cosines) else float("nan"),
        "cos_p05": float(np.percentile(cosines, 5)) if len(cosines) else float("nan"),
        "cos_min": float(cosines.min()) if len(cosines) else float("nan"),
    }
    return {"summary": summary, "videos": rows}


def _compare_video(a: FeatureStore, b: FeatureStore, vid: str, crop_ids: list[int], ta: int, tb: int) -> dict[str, Any]:
    """Cosine similarity of one video's rows (common length) over the crops."""
    fa, fb = a.read(vid, crop_ids), b.read(vid, crop_ids)
    t = min(fa.shape[1], fb.shape[1])
    x, y = fa[:, :t], fb[:, :t]
    num = (x * y).sum(-1)
    den = np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1)
    cos = np.where(den > 0, num / np.maximum(den, 1e-12), 0.0)
    return {
        "id": vid,
        "T_a": ta,
        "T_b": tb,
        "same_length": ta == tb,
        "cos_mean": float(cos.mean()) if cos.size else float("nan"),
        "cos_min": float(cos.min()) if cos.size else float("nan"),
    }
