"""XD-Violence: manifest built from the official lists (Wu et al., ECCV 2020).

Raw inputs (``shared/datasets/xd_violence``): ``train_videos.txt``, ``test_videos.txt``,
``annotations_multiclasses.txt`` (classed intervals: the segments, used by the detection mAP)
and ``annotations.txt`` (the intervals of the official frame-level ground truth; where their
frames differ from the segments' union they are kept as ``frame_intervals``). A video's labels are the codes after ``_label_`` in its
name (``0`` = none, ``A`` = normal); annotation intervals are 0-based frames at 24 fps and
become ``[start, end)`` segments. Videos live under ``train/`` and ``test/`` of the root.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ManifestError
from ..manifest import ClassInfo, DatasetInfo, Manifest, Segment, VideoRecord
from ..manifest.validate import validate_manifest
from .spec import ArchivePart, DatasetSpec

# (code, readable name, CLIP prompt) in the official label-map order.
XD_CLASSES: tuple[tuple[str, str, str], ...] = (
    ("A", "normal", "normal"),
    ("B1", "fighting", "fighting"),
    ("B2", "shooting", "shooting"),
    ("B4", "riot", "riot"),
    ("B5", "abuse", "abuse"),
    ("B6", "car accident", "car accident"),
    ("G", "explosion", "explosion"),
)
FPS = 24.0
OFFICIAL_TEST_CROP = 0


def _info() -> DatasetInfo:
    return DatasetInfo(
        name="xd",
        description="XD-Violence (Wu et al., ECCV 2020): 4,754 movie/web videos, 6 violence classes",
        classes=tuple(ClassInfo(code, name, prompt, normal=(code == "A")) for code, name, prompt in XD_CLASSES),
        fps=FPS,
        snippet_len=16,
        test_crop=OFFICIAL_TEST_CROP,
    )


def labels_from_name(name: str) -> tuple[str, ...]:
    """``..._label_B2-G-0`` -> ``("B2", "G")``; ``..._label_A`` -> ``("A",)``."""
    if "_label_" not in name:
        raise ManifestError(f"XD-Violence video name without '_label_': {name!r}")
    codes = name.rsplit("_label_", 1)[1].split("-")
    return tuple(c for c in codes if c != "0")


def _names(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def _strip_ext(name: str) -> str:
    return name[:-4] if name.endswith(".mp4") else name


def _parse_annotations(path: Path) -> dict[str, tuple[Segment, ...]]:
    out: dict[str, tuple[Segment, ...]] = {}
    problems: list[str] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        name, rest = _strip_ext(parts[0]), parts[1:]
        if len(rest) % 3 or not rest:
            problems.append(f"{path}:{lineno}: expected triples 'class start end', got {len(rest)} fields")
            continue
        try:
            segs = tuple(Segment(int(rest[i + 1]), int(rest[i + 2]), rest[i]) for i in range(0, len(rest), 3))
        except ValueError:
            problems.append(f"{path}:{lineno}: frame indices must be integers")
            continue
        if name in out:
            problems.append(f"{path}:{lineno}: {name} annotated twice")
        out[name] = segs
    if problems:
        raise ManifestError(f"cannot parse {path}", problems)
    return out


def _parse_frame_annotations(path: Path) -> dict[str, tuple[tuple[int, int], ...]]:
    out: dict[str, tuple[tuple[int, int], ...]] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        nums = parts[1:]
        if len(nums) % 2 or not nums:
            raise ManifestError(f"cannot parse {path}", [f"{path}:{lineno}: expected pairs 'start end'"])
        try:
            vals = [int(x) for x in nums]
        except ValueError:
            raise ManifestError(f"cannot parse {path}", [f"{path}:{lineno}: frame indices must be integers"]) from None
        out[_strip_ext(parts[0])] = tuple(zip(vals[::2], vals[1::2]))
    return out


def _frames(intervals: tuple[tuple[int, int], ...]) -> set[int]:
    return {f for a, b in intervals for f in range(a, b)}


def build_xd_manifest(raw_dir: Path) -> Manifest:
    """Build the XD-Violence manifest from the raw official lists in ``raw_dir``."""
    raw_dir = Path(raw_dir)
    annotations = _parse_annotations(raw_dir / "annotations_multiclasses.txt")
    frame_annotations = _parse_frame_annotations(raw_dir / "annotations.txt")
    if set(frame_annotations) != set(annotations):
        diff = sorted(set(frame_annotations) ^ set(annotations))
        raise ManifestError("annotations.txt and annotations_multiclasses.txt name different videos", diff)
    videos: list[VideoRecord] = []
    for split in ("train", "test"):
        for name in _names(raw_dir / f"{split}_videos.txt"):
            name = _strip_ext(name)
            segs = annotations.get(name, ()) if split == "test" else ()
            frame_iv = frame_annotations.get(name, ()) if split == "test" else ()
            if frame_iv and _frames(frame_iv) == _frames(tuple((s.start, s.end) for s in segs)):
                frame_iv = ()  # the segments give the same frame ground truth
            videos.append(
                VideoRecord(
                    id=name,
                    path=f"{split}/{name}.mp4",
                    split=split,
                    labels=labels_from_name(name),
                    segments=segs,
                    frame_intervals=frame_iv,
                )
            )
    test_ids = {v.id for v in videos if v.split == "test"}
    stray = sorted(set(annotations) - test_ids)
    if stray:
        raise ManifestError("annotated videos that are not in the test list", stray)
    manifest = Manifest(_info(), tuple(videos))
    validate_manifest(manifest, source="xd (built)")
    return manifest


XD = DatasetSpec(
    name="xd",
    title="XD-Violence",
    homepage="https://roc-ng.github.io/XD-Violence/",
    build_manifest=build_xd_manifest,
    # The archive parts of the official release: OneDrive share pages (a browser is
    # needed), file names as they download; sizes and checksums were never published.
    archives=tuple(
        ArchivePart(
            name=name,
            page=f"https://stuxidianeducn-my.sharepoint.com/:u:/g/personal/pengwu_stu_xidian_edu_cn/{share}",
            extract_to=folder,
        )
        for name, share, folder in (
            ("1-1004.zip", "ERiQQLUAex1CnwuBIEOK9YgBtcqU3hR_ZDtahCwLtVVkew?e=QHJ3bz", "train"),
            ("1005-2004.zip", "EU-CqR-yYmVEqlFR1qHs3ZwB_Xfmi9d2augzSoOgDM66ug?e=gNNLIR", "train"),
            ("2005-2804.zip", "EVcHk8zeeQJGhoDrsj1I-RsBXwGgOwrr_qU_8Yvx1KVnEw?e=84ftkC", "train"),
            ("2805-3319.zip", "EV9x2SOsTWNFjAAukYmTVIEBKTFz2rc_lkJ4N-8Y7AbIvA?e=fOZU2d", "train"),
            ("3320-3954.zip", "ERGkxZqFDJlGs4GM1CvhOY4B5ASIKQIS4elt3VWZqjR65g?e=jdbmcO", "train"),
            ("XD_violence_test_video.zip", "EdewYQSko-BHpew03RBfGLQBIAOUdF7jt1rC71rK5iBGag?e=v4Enay", "test"),
        )
    ),
    manual_download=(
        "XD-Violence is distributed from the project page (https://roc-ng.github.io/XD-Violence/) "
        "through OneDrive and Baidu links that need a browser. Download the five training zips and "
        "the test-video zip into one folder and pass it with --from DIR (videos are placed by file "
        "name), or put the videos yourself as <root>/train/<name>.mp4 and <root>/test/<name>.mp4. "
        "If your test archive has another file name, rename it to the name above."
    ),
)
