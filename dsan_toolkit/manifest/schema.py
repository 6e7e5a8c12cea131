"""The manifest schema.

A manifest is one :class:`DatasetInfo` (classes, fps, snippet length) and a list of
:class:`VideoRecord` rows. Paths are relative to a dataset root chosen at run time.
Temporal segments are frame intervals ``[start, end)`` (0-based, end exclusive), the
convention the official ground-truth code uses (``gt[start:end] = 1``).

On disk a manifest is JSON Lines (see :mod:`dsan_toolkit.manifest.io`): the first line is
the dataset record (``"kind": "dataset"``), every further line one video (``"kind": "video"``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ..config import canonical_json, sha256_text
from ..errors import InputError

SCHEMA_VERSION = 1
SPLITS: tuple[str, ...] = ("train", "test")


@dataclass(frozen=True)
class ClassInfo:
    """One class: ``code`` as it appears in labels, a readable ``name``, the CLIP ``prompt``."""

    code: str
    name: str
    prompt: str
    normal: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "name": self.name, "prompt": self.prompt, "normal": self.normal}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClassInfo:
        return cls(
            code=str(d["code"]), name=str(d["name"]), prompt=str(d["prompt"]), normal=bool(d.get("normal", False))
        )


@dataclass(frozen=True)
class Segment:
    """An annotated anomalous interval: frames ``[start, end)`` of class ``label``."""

    start: int
    end: int
    label: str

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "label": self.label}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Segment:
        return cls(start=int(d["start"]), end=int(d["end"]), label=str(d["label"]))


@dataclass(frozen=True)
class VideoRecord:
    """One video of a dataset.

    ``labels`` are class codes (the normal class for normal videos); ``segments`` are the
    temporal annotations of a test video. ``frame_intervals`` is set only where the official
    frame-level ground truth differs from the union of the segments (XD-Violence: its
    ``annotations.txt``, used for AUC/AP, and ``annotations_multiclasses.txt``, used for the
    detection mAP, disagree for a few videos). ``fps`` overrides the dataset's nominal fps and
    ``num_frames`` is filled when known (custom datasets, synthetic data, lock files).
    """

    id: str
    path: str
    split: str
    labels: tuple[str, ...]
    segments: tuple[Segment, ...] = ()
    fps: float | None = None
    num_frames: int | None = None
    frame_intervals: tuple[tuple[int, int], ...] = ()
    note: str | None = None  # e.g. why the video could not be probed when the manifest was made

    def gt_intervals(self) -> tuple[tuple[int, int], ...]:
        """Intervals ``[start, end)`` of the frame-level ground truth (AUC/AP)."""
        return self.frame_intervals or tuple((s.start, s.end) for s in self.segments)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "kind": "video",
            "id": self.id,
            "path": self.path,
            "split": self.split,
            "labels": list(self.labels),
        }
        if self.segments:
            d["segments"] = [s.to_dict() for s in self.segments]
        if self.fps is not None:
            d["fps"] = self.fps
        if self.num_frames is not None:
            d["num_frames"] = self.num_frames
        if self.frame_intervals:
            d["frame_intervals"] = [list(iv) for iv in self.frame_intervals]
        if self.note:
            d["note"] = self.note
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VideoRecord:
        labels = d["labels"]
        if isinstance(labels, str):
            raise TypeError("'labels' must be a list of class codes, not a string")
        return cls(
            id=str(d["id"]),
            path=str(d["path"]),
            split=str(d["split"]),
            labels=tuple(str(x) for x in labels),
            segments=tuple(Segment.from_dict(s) for s in d.get("segments", ()) or ()),
            fps=None if d.get("fps") is None else float(d["fps"]),
            num_frames=None if d.get("num_frames") is None else int(d["num_frames"]),
            frame_intervals=tuple((int(a), int(b)) for a, b in d.get("frame_intervals", ()) or ()),
            note=None if d.get("note") is None else str(d["note"]),
        )


@dataclass(frozen=True)
class DatasetInfo:
    """Dataset-level facts: classes (the first normal one is *the* normal class), fps,
    snippet length, and the crop the official protocol evaluates on."""

    name: str
    classes: tuple[ClassInfo, ...]
    fps: float
    snippet_len: int = 16
    test_crop: int = 0
    description: str = ""
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "dataset",
            "schema_version": self.schema_version,
            "name": self.name,
            "description": self.description,
            "fps": self.fps,
            "snippet_len": self.snippet_len,
            "test_crop": self.test_crop,
            "classes": [c.to_dict() for c in self.classes],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetInfo:
        return cls(
            name=str(d["name"]),
            classes=tuple(ClassInfo.from_dict(c) for c in d["classes"]),
            fps=float(d["fps"]),
            snippet_len=int(d.get("snippet_len", 16)),
            test_crop=int(d.get("test_crop", 0)),
            description=str(d.get("description", "")),
            schema_version=int(d.get("schema_version", SCHEMA_VERSION)),
        )


@dataclass(frozen=True)
class Manifest:
    """A dataset manifest: its info plus videos in a fixed order."""

    info: DatasetInfo
    videos: tuple[VideoRecord, ...] = field(default_factory=tuple)

    # -- look-ups --------------------------------------------------------------------
    @cached_property
    def _by_id(self) -> dict[str, VideoRecord]:
        return {v.id: v for v in self.videos}

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def class_codes(self) -> tuple[str, ...]:
        return tuple(c.code for c in self.info.classes)

    @property
    def normal_class(self) -> str:
        for c in self.info.classes:
            if c.normal:
                return c.code
        raise ValueError(f"manifest {self.name!r} has no normal class")

    def class_index(self) -> dict[str, int]:
        """Class code -> index in the class table (the order used for text prompts)."""
        return {c.code: i for i, c in enumerate(self.info.classes)}

    def video(self, video_id: str) -> VideoRecord:
        try:
            return self._by_id[video_id]
        except KeyError:
            raise InputError(f"video {video_id!r} is not in manifest {self.name!r}") from None

    def __contains__(self, video_id: object) -> bool:
        return video_id in self._by_id

    def __iter__(self) -> Iterator[VideoRecord]:
        return iter(self.videos)

    def __len__(self) -> int:
        return len(self.videos)

    def is_anomalous(self, v: VideoRecord) -> bool:
        return any(lab != self.normal_class for lab in v.labels)

    def split(self, split: str) -> Manifest:
        return Manifest(self.info, tuple(v for v in self.videos if v.split == split))

    def select(self, ids: Iterable[str]) -> Manifest:
        keep = set(ids)
        return Manifest(self.info, tuple(v for v in self.videos if v.id in keep))

    def fps_of(self, v: VideoRecord) -> float:
        return v.fps if v.fps is not None else self.info.fps

    # -- summaries -------------------------------------------------------------------
    def counts(self) -> dict[str, dict[str, int]]:
        """Per split: number of videos, anomalous videos, annotated videos, and per class."""
        out: dict[str, dict[str, int]] = {}
        for split in sorted({v.split for v in self.videos}):
            vids = [v for v in self.videos if v.split == split]
            per_class = Counter(lab for v in vids for lab in v.labels)
            row = {
                "videos": len(vids),
                "anomalous": sum(self.is_anomalous(v) for v in vids),
                "annotated": sum(bool(v.segments) for v in vids),
            }
            row.update({f"class:{c}": per_class.get(c, 0) for c in self.class_codes})
            out[split] = row
        return out

    def to_records(self) -> list[dict[str, Any]]:
        return [self.info.to_dict()] + [v.to_dict() for v in self.videos]

    def content_hash(self) -> str:
        """sha256 of the canonical JSON of every record: identifies the manifest's content."""
        return sha256_text("\n".join(canonical_json(r) for r in self.to_records()))
