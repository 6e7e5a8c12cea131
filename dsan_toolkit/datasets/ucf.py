"""UCF-Crime: manifest built from the official lists (Sultani et al., CVPR 2018).

Raw inputs (``shared/datasets/ucf_crime``): ``Anomaly_Train.txt``, ``Anomaly_Test.txt`` and
``Temporal_Anomaly_Annotation.txt``. Normal videos sit in ``Training_Normal_Videos_Anomaly/``
and ``Testing_Normal_Videos_Anomaly/`` and carry the class ``Normal``; an anomalous video's
class is its folder. Test annotations are 0-based frame indices at 30 fps, ``-1`` for none,
and become ``[start, end)`` segments as the official ground-truth code builds them.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from ..errors import ManifestError
from ..manifest import ClassInfo, DatasetInfo, Manifest, Segment, VideoRecord
from ..manifest.validate import validate_manifest
from .spec import ArchivePart, DatasetSpec

# (code, prompt) in the official label-map order; the prompt is the text the official code
# feeds to CLIP. The readable name is the prompt with spaces.
UCF_CLASSES: tuple[tuple[str, str, str], ...] = (
    ("Normal", "normal", "normal"),
    ("Abuse", "abuse", "abuse"),
    ("Arrest", "arrest", "arrest"),
    ("Arson", "arson", "arson"),
    ("Assault", "assault", "assault"),
    ("Burglary", "burglary", "burglary"),
    ("Explosion", "explosion", "explosion"),
    ("Fighting", "fighting", "fighting"),
    ("RoadAccidents", "road accidents", "roadAccidents"),
    ("Robbery", "robbery", "robbery"),
    ("Shooting", "shooting", "shooting"),
    ("Shoplifting", "shoplifting", "shoplifting"),
    ("Stealing", "stealing", "stealing"),
    ("Vandalism", "vandalism", "vandalism"),
)
NORMAL_FOLDERS = {"Training_Normal_Videos_Anomaly", "Testing_Normal_Videos_Anomaly"}
FPS = 30.0
OFFICIAL_TEST_CROP = 5


def _info() -> DatasetInfo:
    return DatasetInfo(
        name="ucf",
        description="UCF-Crime (Sultani et al., CVPR 2018): 1,900 surveillance videos, 13 anomaly classes",
        classes=tuple(ClassInfo(code, name, prompt, normal=(code == "Normal")) for code, name, prompt in UCF_CLASSES),
        fps=FPS,
        snippet_len=16,
        test_crop=OFFICIAL_TEST_CROP,
    )


def _read_lines(path: Path) -> list[tuple[int, str]]:
    return [(i, ln.strip()) for i, ln in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if ln.strip()]


def _parse_annotations(path: Path) -> dict[str, tuple[str, tuple[tuple[int, int], ...]]]:
    out: dict[str, tuple[str, tuple[tuple[int, int], ...]]] = {}
    problems: list[str] = []
    for lineno, line in _read_lines(path):
        parts = line.split()
        if len(parts) != 6:
            problems.append(f"{path}:{lineno}: expected 6 fields, got {len(parts)}")
            continue
        name, cls, *nums = parts
        try:
            s1, e1, s2, e2 = (int(x) for x in nums)
        except ValueError:
            problems.append(f"{path}:{lineno}: frame indices must be integers")
            continue
        segs = tuple((s, e) for s, e in ((s1, e1), (s2, e2)) if s != -1 and e != -1)
        out[name] = (cls, segs)
    if problems:
        raise ManifestError(f"cannot parse {path}", problems)
    return out


def _video(rel: str, split: str, annotations: dict | None) -> VideoRecord:
    p = PurePosixPath(rel)
    folder, vid = p.parts[0], p.stem
    label = "Normal" if folder in NORMAL_FOLDERS else folder
    segments: tuple[Segment, ...] = ()
    if annotations is not None:
        cls, segs = annotations[vid]
        if cls != label:
            raise ManifestError(f"{vid}: annotation class {cls!r} differs from its folder {folder!r}")
        segments = tuple(Segment(s, e, label) for s, e in segs)
    return VideoRecord(id=vid, path=rel, split=split, labels=(label,), segments=segments)


def build_ucf_manifest(raw_dir: Path) -> Manifest:
    """Build the UCF-Crime manifest from the raw official lists in ``raw_dir``."""
    raw_dir = Path(raw_dir)
    annotations = _parse_annotations(raw_dir / "Temporal_Anomaly_Annotation.txt")
    train = [_video(rel, "train", None) for _, rel in _read_lines(raw_dir / "Anomaly_Train.txt")]
    test_lines = _read_lines(raw_dir / "Anomaly_Test.txt")
    missing = [rel for _, rel in test_lines if PurePosixPath(rel).stem not in annotations]
    if missing:
        raise ManifestError("test videos without a temporal annotation line", missing)
    test = [_video(rel, "test", annotations) for _, rel in test_lines]
    manifest = Manifest(_info(), tuple(train + test))
    validate_manifest(manifest, source="ucf (built)")
    return manifest


UCF = DatasetSpec(
    name="ucf",
    title="UCF-Crime",
    homepage="https://www.crcv.ucf.edu/projects/real-world/",
    build_manifest=build_ucf_manifest,
    # The archive parts of the official release: a shared Dropbox folder, file names as
    # published there and in the release's ReadMe; sizes and checksums were never
    # published. The per-file links may answer with a web page (a browser is then needed),
    # which the downloader detects and reports. The event-recognition normal videos are
    # not in the anomaly-detection lists, hence optional.
    archives=tuple(
        ArchivePart(
            name=name,
            url=f"https://www.dropbox.com/sh/75v5ehq4cdg5g5g/{key}/{name}?dl=1" if key else None,
            page="https://www.dropbox.com/sh/75v5ehq4cdg5g5g/AABvnJSwZI7zXb8_myBA0CLHa?dl=0",
            optional=key is None,
        )
        for key, name in (
            ("AABJtkTnNc8LcVTfH1gE_uFoa", "Anomaly-Videos-Part-1.zip"),
            ("AAAbdSEUox64ZLgVAntr2WgSa", "Anomaly-Videos-Part-2.zip"),
            ("AAAgpsRNSHI_BtRnSCxxR7j9a", "Anomaly-Videos-Part-3.zip"),
            ("AABqY-3fJSmSMafFIlJXRE-9a", "Anomaly-Videos-Part-4.zip"),
            ("AADEUCsLOCN_jHmmx7uFcUhHa", "Training-Normal-Videos-Part-1.zip"),
            ("AAAHZByMMGCVms4hhHZU2pMBa", "Training-Normal-Videos-Part-2.zip"),
            ("AACeDPUxpB6sY2jKgLGzaEdra", "Testing_Normal_Videos.zip"),
            (None, "Normal_Videos_for_Event_Recognition.zip"),
        )
    ),
    manual_download=(
        "UCF-Crime is distributed from a Dropbox folder linked on the project page "
        "(https://www.dropbox.com/sh/75v5ehq4cdg5g5g/AABvnJSwZI7zXb8_myBA0CLHa?dl=0); its direct "
        "links may need a browser. Download the seven archives named above into one folder and "
        "pass it with --from DIR (videos are placed by file name, whatever folders the archives "
        "hold), or put the videos yourself under the root as Abuse/, ..., "
        "Training_Normal_Videos_Anomaly/ and Testing_Normal_Videos_Anomaly/."
    ),
)
