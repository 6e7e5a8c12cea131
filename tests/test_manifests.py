"""Built-in manifests (counts, segments, classes) and schema validation errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dsan_toolkit.datasets.registry import list_datasets
from dsan_toolkit.datasets.xd import labels_from_name
from dsan_toolkit.errors import InputError, ManifestError
from dsan_toolkit.manifest import Manifest, Segment, read_manifest, write_manifest
from dsan_toolkit.manifest.builtin import (
    list_builtin_manifests,
    load_builtin_manifest,
    manifest_resource,
    resolve_manifest,
)

# The raw official lists (not shipped with the package: they come with the datasets and with the
# official DSANet/VadCLIP code's list/ folders). Put them in a folder with ucf_crime/ and
# xd_violence/ subfolders (layout: scripts/build_manifests.py) and point DSAN_RAW_LISTS at it;
# default: ../shared/datasets next to the checkout.
SHARED = Path(os.environ.get("DSAN_RAW_LISTS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))


def test_every_registered_dataset_has_its_builtin_manifest_and_no_other():
    """The manifest layer knows the built-in names from the committed files, the datasets layer
    from the specs: the same names."""
    assert list_builtin_manifests() == list_datasets() == ["ucf", "xd"]
    assert resolve_manifest("xd") is load_builtin_manifest("xd")
    with pytest.raises(InputError, match="unknown dataset 'nope'; built-in datasets are: ucf, xd"):
        resolve_manifest("nope")


def test_ucf_counts():
    m = load_builtin_manifest("ucf")
    c = m.counts()
    assert (c["train"]["videos"], c["test"]["videos"]) == (1610, 290)
    assert (c["train"]["anomalous"], c["test"]["anomalous"]) == (810, 140)
    assert c["test"]["annotated"] == 140
    assert m.normal_class == "Normal"
    assert m.info.fps == 30 and m.info.snippet_len == 16 and m.info.test_crop == 5
    assert len(m.info.classes) == 14
    v = m.video("Abuse028_x264")
    assert v.path == "Abuse/Abuse028_x264.mp4" and v.split == "test" and v.labels == ("Abuse",)
    assert v.segments == (Segment(165, 240, "Abuse"),)
    # two-event annotation keeps both intervals
    assert sum(len(x.segments) == 2 for x in m.split("test")) == 16


def test_xd_counts():
    m = load_builtin_manifest("xd")
    c = m.counts()
    assert (c["train"]["videos"], c["test"]["videos"]) == (3954, 800)
    assert c["test"]["anomalous"] == 500 and c["test"]["annotated"] == 500
    assert c["test"]["class:A"] == 300
    assert m.normal_class == "A" and m.info.fps == 24 and m.info.test_crop == 0
    v = m.video("v=u5SF4SlqNDQ__#00-00-00_00-01-00_label_G-0-0")
    assert v.segments == (Segment(624, 912, "G"), Segment(950, 1441, "G"))
    assert v.path.startswith("test/") and v.path.endswith(".mp4")
    # names in the annotation file that carry '.mp4' are matched to their videos
    assert m.video("v=FW_qbiPH7UA__#1_label_B1-0-0").segments


def test_xd_labels_from_name():
    assert labels_from_name("x_label_B2-G-0") == ("B2", "G")
    assert labels_from_name("x_label_A") == ("A",)
    with pytest.raises(ManifestError):
        labels_from_name("no_label_here".replace("_label_", "-"))


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"raw official lists not found at {SHARED} (set DSAN_RAW_LISTS)")
@pytest.mark.parametrize("name,folder", [("ucf", "ucf_crime"), ("xd", "xd_violence")])
def test_committed_manifest_matches_raw_lists(name, folder):
    from dsan_toolkit.datasets import get_dataset

    built = get_dataset(name).build_manifest(SHARED / folder)
    assert built.content_hash() == read_manifest(manifest_resource(name)).content_hash()


def _write_lines(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


HEADER = {
    "kind": "dataset",
    "name": "toy",
    "fps": 25,
    "classes": [
        {"code": "N", "name": "normal", "prompt": "normal", "normal": True},
        {"code": "F", "name": "fire", "prompt": "fire"},
    ],
}


def _video(**kw):
    base = {"kind": "video", "id": "v1", "path": "a/v1.mp4", "split": "train", "labels": ["N"]}
    base.update(kw)
    return base


def test_roundtrip(tmp_path):
    p = _write_lines(
        tmp_path / "m.jsonl",
        [
            HEADER,
            _video(),
            _video(id="v2", split="test", labels=["F"], segments=[{"start": 3, "end": 9, "label": "F"}], num_frames=20),
        ],
    )
    m = read_manifest(p)
    out = write_manifest(m, tmp_path / "again.jsonl")
    assert read_manifest(out).content_hash() == m.content_hash()
    assert m.is_anomalous(m.video("v2")) and not m.is_anomalous(m.video("v1"))


@pytest.mark.parametrize(
    "records,needle",
    [
        ([HEADER, _video(), _video()], "3: duplicate video id 'v1' (first on line 2)"),
        ([HEADER, _video(labels=["X"])], "2: unknown class 'X'"),
        ([HEADER, _video(split="val")], "split 'val'"),
        ([HEADER, _video(labels=["F"], segments=[{"start": 9, "end": 3, "label": "F"}])], "ends before it starts"),
        (
            [HEADER, _video(labels=["F"], num_frames=10, segments=[{"start": 2, "end": 30, "label": "F"}])],
            "outside the video (10 frames)",
        ),
        ([HEADER, _video(path="/abs/v.mp4")], "must be relative"),
        ([HEADER, _video(path="../v.mp4")], "must be relative"),
        ([HEADER, {k: v for k, v in _video().items() if k != "split"}], "2: missing field 'split'"),
        ([{k: v for k, v in HEADER.items() if k != "fps"}, _video()], "1: missing field 'fps'"),
        ([HEADER, _video(segments=[{"start": 1, "end": 3, "label": "F"}])], "normal video 'v1' has anomaly segments"),
        ([HEADER, {"kind": "frame"}], "unknown record kind"),
    ],
)
def test_invalid_manifests_are_located(tmp_path, records, needle):
    p = _write_lines(tmp_path / "bad.jsonl", records)
    with pytest.raises(ManifestError) as err:
        read_manifest(p)
    assert str(p) in str(err.value)
    assert needle in str(err.value)


def test_unreadable_manifest(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ManifestError, match="UTF-8|JSON"):
        read_manifest(p)
    p.write_text("{not json\n")
    with pytest.raises(ManifestError, match=r"m.jsonl:1: not valid JSON"):
        read_manifest(p)
    with pytest.raises(ManifestError, match="not found"):
        read_manifest(tmp_path / "missing.jsonl")


def test_write_is_validated_and_atomic(tmp_path):
    m = read_manifest(_write_lines(tmp_path / "m.jsonl", [HEADER, _video()]))
    bad = Manifest(m.info, m.videos + m.videos)
    target = tmp_path / "out.jsonl"
    with pytest.raises(ManifestError):
        write_manifest(bad, target)
    assert not target.exists() and not list(tmp_path.glob(".out.jsonl*"))


def test_cli_datasets_and_validate(cli, tmp_path):
    code, out = cli("datasets")
    assert code == 0 and "ucf" in out and "xd" in out and "1610" in out and "3954" in out
    code, out = cli("datasets", "nope")
    assert code == 2 and "unknown dataset 'nope'" in out
    good = _write_lines(tmp_path / "good.jsonl", [HEADER, _video()])
    code, out = cli("manifest", "validate", good)
    assert code == 0 and "1 videos" in out
    bad = _write_lines(tmp_path / "bad.jsonl", [HEADER, _video(labels=["X"])])
    code, out = cli("manifest", "validate", bad)
    assert code == 2 and "unknown class 'X'" in out and "Traceback" not in out
    code, out = cli("manifest", "show", "xd", "--video", "nope")
    assert code == 2 and "not in manifest" in out


def test_xd_frame_ground_truth_follows_annotations_txt():
    """annotations.txt (frame GT) and annotations_multiclasses.txt (classed segments) disagree
    for 5 XD test videos; the frame GT keeps the former, the segments the latter."""
    from dsan_toolkit.eval.gt import frame_gt

    m = load_builtin_manifest("xd")
    differing = [v for v in m.split("test") if v.frame_intervals]
    assert len(differing) == 5
    v = m.video("Casino.Royale.2006__#00-18-30_00-19-20_label_G-B2-0")
    assert {(s.start, s.end) for s in v.segments} == {(261, 293), (293, 580)}
    same = [x for x in m.split("test") if x.segments and not x.frame_intervals][0]
    assert same.gt_intervals() == tuple((s.start, s.end) for s in same.segments)
    d = m.video("Love.Death.and.Robots.S01E10__#0-01-00_0-02-13_label_B2-G-0")
    assert d.frame_intervals == ((560, 600), (846, 905), (1050, 1295))
    assert (1190, 1191) not in {(s.start, s.end) for s in d.segments}
    gt = frame_gt(m, [d], {d.id: 100})  # 1,600 frames
    assert gt[1190] == 1  # frame 1190 is anomalous in annotations.txt, a gap between two segments
    assert gt.sum() == 40 + 59 + 245 and not gt[600:846].any()
