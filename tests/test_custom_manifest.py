"""`dsan manifest create`: manifests for custom datasets from labels.csv (real videos probed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsan_toolkit.datasets.custom import create_manifest, unlisted_videos
from dsan_toolkit.datasets.labels_csv import read_classes_csv, read_labels_csv
from dsan_toolkit.datasets.verify import verify_dataset
from dsan_toolkit.errors import InputError, ManifestError
from dsan_toolkit.manifest import read_manifest
from dsan_toolkit.testing import make_not_a_video, make_zero_byte, write_test_video


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """A folder of real H.264 clips with known frame counts and rates."""
    root = tmp_path_factory.mktemp("cams")
    write_test_video(root / "normal" / "a.mp4", 40, fps=16.0, seed=1)
    write_test_video(root / "normal" / "b.mp4", 36, fps=16.0, seed=2)
    write_test_video(root / "fire" / "c.mp4", 48, fps=16.0, seed=3)
    write_test_video(root / "test" / "d.mp4", 64, fps=16.0, seed=4)
    write_test_video(root / "test" / "e.mp4", 30, fps=25.0, seed=5)
    write_test_video(root / "test" / "unlisted.mp4", 20, seed=6)
    return root


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


GOOD = (
    "path,split,labels,segments\n"
    "normal/a.mp4,train,Normal,\n"
    "normal/b.mp4,train,,\n"
    "fire/c.mp4,train,Fire,\n"
    "test/d.mp4,test,Fire|Smoke,10-20:Fire; 30-64:Smoke\n"
    "test/e.mp4,test,Smoke,5-15\n"
)


def test_create_from_labels(videos, tmp_path):
    m = create_manifest(videos, _write(tmp_path / "labels.csv", GOOD), name="cams")
    assert m.name == "cams" and m.normal_class == "Normal"
    assert m.class_codes == ("Normal", "Fire", "Smoke")  # normal first, then sorted
    assert [v.id for v in m.videos] == ["a", "b", "c", "d", "e"]
    a, b, c, d, e = m.videos
    assert b.labels == ("Normal",)  # empty labels: the normal class
    assert (a.num_frames, a.fps, e.num_frames, e.fps) == (40, 16.0, 30, 25.0)
    assert m.info.fps == 16.0  # the most common rate
    assert d.labels == ("Fire", "Smoke")
    assert [(s.start, s.end, s.label) for s in d.segments] == [(10, 20, "Fire"), (30, 64, "Smoke")]
    assert [(s.start, s.end, s.label) for s in e.segments] == [(5, 15, "Smoke")]  # class implied
    assert not c.segments and c.split == "train"
    assert unlisted_videos(videos, m) == ["test/unlisted.mp4"]
    # what it builds verifies against the same folder
    assert verify_dataset(m, videos).ok


def test_classes_csv_sets_table_and_order(videos, tmp_path):
    classes = _write(
        tmp_path / "classes.csv",
        "code,name,prompt,normal\nSmoke,smoke,smoke rising,0\nOK,normal,normal scene,yes\nFire,fire,a fire,0\n",
    )
    labels = _write(tmp_path / "labels.csv", GOOD.replace(",Normal,", ",OK,"))
    m = create_manifest(videos, labels, classes_csv=classes)
    assert m.class_codes == ("Smoke", "OK", "Fire") and m.normal_class == "OK"
    assert m.info.classes[0].prompt == "smoke rising"
    assert m.video("b").labels == ("OK",)
    assert m.info.name == videos.resolve().name


def test_id_column_and_duplicates(videos, tmp_path):
    dup = _write(tmp_path / "dup.csv", "path,split,labels\nnormal/a.mp4,train,\nnormal/a.mp4,test,\n")
    with pytest.raises(ManifestError) as info:
        create_manifest(videos, dup)
    assert f"{dup}:3: duplicate video id 'a' (first on line 2)" in str(info.value)
    ok = _write(tmp_path / "ids.csv", "id,path,split,labels\nx1,normal/a.mp4,train,\nx2,normal/a.mp4,test,\n")
    assert [v.id for v in create_manifest(videos, ok).videos] == ["x1", "x2"]


def test_bad_rows_reported_with_file_and_line(videos, tmp_path):
    make_zero_byte(videos / "broken" / "zero.mp4")
    make_not_a_video(videos / "broken" / "html.mp4")
    bad = _write(
        tmp_path / "bad.csv",
        "id,path,split,labels,segments\n"
        "r2,normal/a.mp4,val,,\n"  # 2 split
        "r3,nope/x.mp4,train,,\n"  # 3 missing
        "r4,/abs/y.mp4,train,,\n"  # 4 absolute
        "r5,test/d.mp4,test,Fire,10-999\n"  # 5 past the end
        "r6,test/e.mp4,test,Fire|Smoke,1-5\n"  # 6 class needed
        "r7,fire/c.mp4,test,Normal,1-5\n"  # 7 normal with segments
        "r8,broken/zero.mp4,train,,\n"  # 8 empty file
        "r9,broken/html.mp4,train,,\n"  # 9 not a video
        "r10,normal/b.mp4,test,Fire,1..5\n"  # 10 syntax
        "\n"
        "r12,normal/b.mp4,test,Fire,8-3\n"  # 12 backwards
        "r13,normal/b.mp4,test,Fire,1-3:Smoke,extra\n"  # 13 too many fields
        "r14,normal/b.mp4,test,Normal|Fire,\n"  # 14 normal and anomalous
        "r5,normal/b.mp4,test,,\n",  # 15 duplicate id
    )
    with pytest.raises(ManifestError) as info:
        create_manifest(videos, bad)
    text = str(info.value)
    expected = {
        2: "split 'val' is not one of",
        3: "is missing (no such file)",
        4: "must be relative",
        5: "ends past the video (64 frames)",
        6: "needs ':CLASS'",
        7: "a normal video cannot have anomaly segments",
        8: "is empty",
        9: "is unreadable",
        10: "segment '1..5' is not",
        12: "ends before it starts",
        13: "6 fields, the header has 5",
        14: "both normal and anomalous",
        15: "duplicate video id 'r5' (first on line 5)",
    }
    for line, reason in expected.items():
        assert any(p.startswith(f"{bad}:{line}: ") and reason in p for p in info.value.problems), (line, text)
    lines = [int(p.split(":")[1]) for p in info.value.problems]
    assert lines == sorted(lines)


def test_bad_files(videos, tmp_path):
    with pytest.raises(InputError, match="labels file not found"):
        create_manifest(videos, tmp_path / "none.csv")
    with pytest.raises(InputError, match="not a folder"):
        create_manifest(tmp_path / "nofolder", _write(tmp_path / "l.csv", GOOD))
    with pytest.raises(ManifestError, match="missing column"):
        read_labels_csv(_write(tmp_path / "h.csv", "file,split\na.mp4,train\n"))
    with pytest.raises(ManifestError, match="unknown column"):
        read_labels_csv(_write(tmp_path / "u.csv", "path,split,colour\na.mp4,train,red\n"))
    with pytest.raises(InputError, match="empty file"):
        read_labels_csv(_write(tmp_path / "e.csv", ""))
    with pytest.raises(ManifestError, match="no video rows"):
        read_labels_csv(_write(tmp_path / "n.csv", "path,split\n"))
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(InputError, match="UTF-8"):
        read_labels_csv(tmp_path / "bin.csv")
    with pytest.raises(ManifestError, match="exactly one class must have normal=1"):
        read_classes_csv(_write(tmp_path / "c1.csv", "code,normal\nA,0\nB,0\n"))
    with pytest.raises(ManifestError, match="defined again"):
        read_classes_csv(_write(tmp_path / "c2.csv", "code,normal\nA,1\nA,0\n"))
    with pytest.raises(ManifestError, match="normal must be"):
        read_classes_csv(_write(tmp_path / "c3.csv", "code,normal\nA,maybe\n"))
    classes = _write(tmp_path / "c4.csv", "code,normal\nNormal,1\nFire,0\n")
    with pytest.raises(ManifestError, match="unknown class 'Smoke'"):
        create_manifest(videos, _write(tmp_path / "l2.csv", GOOD), classes_csv=classes)


# -- CLI ----------------------------------------------------------------------------------


def test_cli_create_then_validate_and_verify(cli, videos, tmp_path):
    labels = _write(tmp_path / "labels.csv", GOOD)
    out = tmp_path / "cams.jsonl"
    code, text = cli("manifest", "create", "--videos", videos, "--labels", labels, "--name", "cams", "--out", out)
    assert code == 0, text
    assert "wrote" in text and "5 videos" in text and "not in" in text and "dsan verify" in text
    m = read_manifest(out)
    assert m.name == "cams" and len(m) == 5
    assert cli("manifest", "validate", out)[0] == 0
    code, text = cli("verify", "--dataset", out, "--root", videos, "--no-lock")
    assert code == 0, text
    # an existing manifest is not overwritten without --overwrite
    code, text = cli("manifest", "create", "--videos", videos, "--labels", labels, "--out", out)
    assert code == 2 and "--overwrite" in text
    code, text = cli(
        "manifest",
        "create",
        "--videos",
        videos,
        "--labels",
        labels,
        "--out",
        out,
        "--overwrite",
        "--normal",
        "Normal",
        "--snippet-len",
        "8",
    )
    assert code == 0 and read_manifest(out).info.snippet_len == 8
    # default output: NAME.jsonl in the working directory (the cli fixture runs in tmp_path)
    code, text = cli("manifest", "create", "--videos", videos, "--labels", labels, "--name", "here")
    assert code == 0 and (tmp_path / "here.jsonl").is_file()


def test_cli_create_errors(cli, videos, tmp_path):
    bad = _write(tmp_path / "bad.csv", "path,split,labels\nnormal/a.mp4,val,\nmissing.mp4,train,\n")
    code, text = cli("manifest", "create", "--videos", videos, "--labels", bad, "--out", tmp_path / "x.jsonl")
    assert code == 2 and "Traceback" not in text
    assert f"{bad}:2:" in text and f"{bad}:3:" in text
    assert not (tmp_path / "x.jsonl").exists()
    code, text = cli("manifest", "create", "--videos", tmp_path / "none", "--labels", bad)
    assert code == 2 and "not a folder" in text
    code, text = cli("manifest", "create", "--videos", videos, "--labels", tmp_path / "none.csv")
    assert code == 2 and "not found" in text


def test_unreadable_rows_refused_kept_marked_or_skipped(cli, videos, tmp_path):
    from dsan_toolkit.extract import RunOptions, extract_features, tiny_extract_config
    from dsan_toolkit.store import open_store

    make_zero_byte(videos / "unr" / "zero.mp4")
    labels = _write(tmp_path / "l.csv", GOOD + "unr/zero.mp4,train,Fire,\nunr/gone.mp4,test,Smoke,3-9\n")
    args = ["manifest", "create", "--videos", videos, "--labels", labels, "--name", "cams"]
    code, text = cli(*args, "--out", tmp_path / "refused.jsonl")
    flat = " ".join(text.split())
    assert code == 2 and "--unreadable keep" in flat and "--unreadable skip" in flat
    assert f"{labels}:7: video 'unr/zero.mp4' is empty" in flat and f"{labels}:8:" in flat
    assert not (tmp_path / "refused.jsonl").exists()

    code, text = cli(*args, "--out", tmp_path / "skip.jsonl", "--unreadable", "skip")
    assert code == 0 and "2 row(s) whose video could not be read were skipped" in " ".join(text.split()), text
    assert [v.id for v in read_manifest(tmp_path / "skip.jsonl").videos] == ["a", "b", "c", "d", "e"]

    code, text = cli(*args, "--out", tmp_path / "keep.jsonl", "--unreadable", "keep")
    assert code == 0 and "were kept, marked" in " ".join(text.split()), text
    m = read_manifest(tmp_path / "keep.jsonl")
    kept = {v.id: v for v in m.videos}
    assert len(m) == 7 and kept["zero"].note.startswith("unreadable when the manifest was made: empty")
    assert kept["gone"].num_frames is None and kept["gone"].segments[0].label == "Smoke"
    assert kept["a"].note is None and kept["a"].num_frames == 40
    # verify and extract record the marked rows as failed and go on with the rest
    rep = verify_dataset(m, videos)
    assert {c.id for c in rep.checks if c.status != "ok"} == {"zero", "gone"}
    res = extract_features(m, videos, tmp_path / "f.zarr", tiny_extract_config(), RunOptions(workers=0))
    assert {vid for vid, _ in res.failed} == {"zero", "gone"} and res.done == 5
    assert sorted(open_store(tmp_path / "f.zarr").video_ids("failed")) == ["gone", "zero"]
