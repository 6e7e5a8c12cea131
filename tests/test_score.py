"""`dsan score` on a real H.264 video with a run trained on features extracted from real
videos (tiny random CLIP, vadclip tiny preset, one epoch), plus the interval logic."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from dsan_toolkit.apps.score import describe_intervals, find_intervals, frame_table


@pytest.fixture()
def scored_run(extracted_world):
    return extracted_world


def test_score_cli_writes_csv_png_and_intervals(scored_run, tmp_path, cli):
    from dsan_toolkit.media.probe import probe_video

    root, run, video, manifest = scored_run
    code, out = cli("score", str(video), "--run", str(run), "--out", str(tmp_path), "--threshold", "0")
    assert code == 0, out
    probe = probe_video(video)
    T = probe.num_frames // 16
    rows = list(csv.DictReader((tmp_path / f"{video.stem}.scores.csv").open()))
    assert len(rows) == min(probe.num_frames, T * 16)
    assert set(rows[0]) >= {"frame", "time_s", "snippet", "score", "align_score", "top_class"}
    assert {f"p_{c}" for c in manifest.class_codes} <= set(rows[0])
    by_snippet = {}  # every frame of a snippet carries that snippet's score
    for r in rows:
        by_snippet.setdefault(int(r["snippet"]), set()).add(r["score"])
    assert all(len(v) == 1 for v in by_snippet.values()) and len(by_snippet) == T
    assert all(int(r["snippet"]) == int(r["frame"]) // 16 for r in rows)
    assert float(rows[16]["time_s"]) == pytest.approx(16 / probe.fps, abs=1e-3)
    png = (tmp_path / f"{video.stem}.scores.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # threshold 0: the whole video is one interval, with its most likely anomaly classes
    assert f"0-{T * 16}" in out.replace(" ", "")
    assert any(c in out for c in manifest.class_codes[1:])
    assert "random" in out  # the run's backbone is the random tiny CLIP
    # the record: what made the outputs, written last
    from dsan_toolkit.config import sha256_file

    rec = json.loads((tmp_path / f"{video.stem}.scores.json").read_text())
    assert rec["video"]["sha256"] == sha256_file(video) and rec["selection"] == "last"
    assert rec["config_hash"] == json.loads((run / "config.json").read_text())["hash"]
    assert rec["checkpoint_sha256"] == sha256_file(run / "checkpoints" / "last.safetensors")
    assert rec["store"]["matches_training_store"] and rec["threshold"] == 0
    assert rec["outputs"] == {p.name: sha256_file(p) for p in tmp_path.glob(f"{video.stem}.scores.[cp]*")}
    assert [(iv["start_frame"], iv["end_frame"]) for iv in rec["intervals"]] == [(0, T * 16)]
    # existing outputs are kept unless --overwrite
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    code, out = cli("score", str(video), "--run", str(run), "--out", str(tmp_path), "--threshold", "0.9")
    assert code == 2 and "already exist" in out and "--overwrite" in out
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    code, out = cli("score", str(video), "--run", str(run), "--out", str(tmp_path), "--threshold", "2", "--overwrite")
    assert code != 0  # --threshold is checked before anything is replaced
    code, out = cli(
        "score", str(video), "--run", str(run), "--out", str(tmp_path), "--threshold", "0.9999", "--overwrite"
    )
    assert code == 0, out
    assert json.loads((tmp_path / f"{video.stem}.scores.json").read_text())["threshold"] == 0.9999


def test_score_errors(scored_run, tmp_path, cli):
    root, run, video, _ = scored_run
    code, out = cli("score", str(tmp_path / "none.mp4"), "--run", str(run))
    assert code == 2 and "video not found" in out
    code, out = cli("score", str(video), "--run", str(tmp_path))
    assert code == 2 and "not a finished run directory" in out
    code, out = cli("score", str(video), "--run", str(run), "--select", "best-on-test")
    assert code == 2 and "no 'best-on-test' model" in out
    code, out = cli("score", str(tmp_path), "--run", str(run))
    assert code == 2 and "is a folder; give one video file" in out
    (tmp_path / "f").write_text("x")
    code, out = cli("score", str(video), "--run", str(run), "--out", str(tmp_path / "f"))
    assert code == 2 and "--out" in out and "is a file, not a folder" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]  # nothing written


def test_a_broken_video_says_why_and_decord_stays_off_the_terminal(scored_run, tmp_path, cli, capfd):
    from dsan_toolkit.testing import make_truncated

    root, run, video, _ = scored_run
    cut = make_truncated(video, tmp_path / "cut.mp4", 0.5)
    code, out = cli("score", str(cut), "--run", str(run))
    flat = " ".join(out.split())
    assert code == 2 and "unreadable (Invalid data found when processing input)" in flat, out
    assert "ERROR opening" not in capfd.readouterr().err  # decord logs it to fd 2 on its own


def test_intervals_from_scores():
    s = np.array([0.1, 0.6, 0.7, 0.2, 0.9, 0.95, 0.99, 0.1])
    assert find_intervals(s, 0.5) == [(1, 3), (4, 7)]
    assert find_intervals(s, 0.5, min_snippets=3) == [(4, 7)]
    assert find_intervals(s, 1.0) == []
    probs = np.zeros((8, 3))
    probs[:, 0] = 0.5
    probs[1:3, 1] = 0.4
    probs[4:7, 2] = 0.45
    probs[4:7, 1] = 0.05
    ivs = describe_intervals(s, probs, ("N", "A", "B"), threshold=0.5, fps=16.0, snippet_len=16, num_frames=120)
    assert [(i.start_frame, i.end_frame) for i in ivs] == [(16, 48), (64, 112)]
    assert ivs[0].classes[0][0] == "A" and ivs[1].classes[0] == ("B", pytest.approx(0.45))
    assert ivs[1].start_s == pytest.approx(4.0) and ivs[1].peak == pytest.approx(0.99)
    text = frame_table(s, None, None, ("N",), fps=16.0, snippet_len=16, num_frames=120)
    lines = text.splitlines()
    assert lines[0] == "frame,time_s,snippet,score" and len(lines) == 1 + 120
