"""`dsan download`: real archives served by a real HTTP server on 127.0.0.1.

A toy dataset (4 real H.264 videos) is split into a zip part (with an extra top folder and a
README) and a tar.gz part (another layout); the server serves them with Range support and
can inject failures: 5xx answers, responses cut short, Range ignored, HTML pages.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from dsan_toolkit.datasets.archives import ArchiveError, UnsafeArchive, list_members, safe_extract
from dsan_toolkit.datasets.download import (
    DownloadConfig,
    RootLock,
    download_dataset,
    fetch_url,
    read_parts_file,
)
from dsan_toolkit.datasets.spec import ArchivePart
from dsan_toolkit.errors import InputError
from dsan_toolkit.manifest import ClassInfo, DatasetInfo, Manifest, Segment, VideoRecord, write_manifest

FAST = DownloadConfig(retries=3, backoff=0.001, backoff_max=0.01, timeout=5.0, chunk_size=4096)


# -- test data ------------------------------------------------------------------------------
def _h264(n_frames: int, shade: int) -> bytes:
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), (shade + 20 * i) % 256, np.uint8), format="rgb24")
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return buf.getvalue()


def _manifest() -> Manifest:
    info = DatasetInfo(
        name="toy",
        classes=(ClassInfo("N", "normal", "normal", normal=True), ClassInfo("F", "fire", "fire")),
        fps=10.0,
    )
    videos = (
        VideoRecord("n1", "normal/n1.mp4", "train", ("N",)),
        VideoRecord("n2", "normal/n2.mp4", "train", ("N",)),
        VideoRecord("f1", "fire/f1.mp4", "test", ("F",), segments=(Segment(1, 3, "F"),)),
        VideoRecord("f2", "fire/f2.mp4", "test", ("F",), segments=(Segment(0, 2, "F"),)),
    )
    return Manifest(info, videos)


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _tar(members: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@dataclass
class Toy:
    manifest: Manifest
    videos: dict[str, bytes]  # manifest path -> bytes
    archives: dict[str, bytes]  # part name -> bytes

    def parts(self, base_url: str | None, **overrides: dict) -> list[ArchivePart]:
        out = []
        for name, data in self.archives.items():
            p = ArchivePart(
                name=name,
                url=f"{base_url}/files/{name}" if base_url else None,
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
            )
            out.append(replace(p, **overrides.get(name, {})))
        return out


@pytest.fixture(scope="module")
def toy() -> Toy:
    videos = {
        "normal/n1.mp4": _h264(6, 0),
        "normal/n2.mp4": _h264(7, 60),
        "fire/f1.mp4": _h264(5, 120),
        "fire/f2.mp4": _h264(4, 180),
    }
    archives = {
        # an extra top folder, a README, videos in a layout unlike the manifest's
        "toy-part-1.zip": _zip(
            {
                "Toy-Part-1/README.txt": b"toy dataset, part 1\n",
                "Toy-Part-1/Normal/n1.mp4": videos["normal/n1.mp4"],
                "Toy-Part-1/Normal/n2.mp4": videos["normal/n2.mp4"],
            }
        ),
        "toy-part-2.tar.gz": _tar({"videos/f1.mp4": videos["fire/f1.mp4"], "videos/f2.mp4": videos["fire/f2.mp4"]}),
    }
    return Toy(_manifest(), videos, archives)


# -- the HTTP server ------------------------------------------------------------------------
@dataclass
class Server:
    url: str
    files: dict[str, bytes] = field(default_factory=dict)  # URL path -> body
    fail_first: dict[str, int] = field(default_factory=dict)  # path -> number of 503 answers
    truncate_first: dict[str, int] = field(default_factory=dict)  # path -> bytes sent before cutting (once)
    ignore_range: bool = False
    html: set[str] = field(default_factory=set)
    slow: dict[str, float] = field(default_factory=dict)  # path -> seconds slept per 4 KB sent
    log: list[tuple[str, str | None, int]] = field(default_factory=list)  # (path, Range, status)

    def requests(self, path: str) -> list[tuple[str | None, int]]:
        return [(r, s) for p, r, s in self.log if p == path]


class _Handler(BaseHTTPRequestHandler):
    server_state: Server

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None, send: int | None = None) -> None:
        st = self.server.state  # type: ignore[attr-defined]
        st.log.append((self.path, self.headers.get("Range"), status))
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        data = body[:send] if send is not None else body
        delay = st.slow.get(self.path)
        if delay:
            try:
                for i in range(0, len(data), 4096):
                    self.wfile.write(data[i : i + 4096])
                    self.wfile.flush()
                    time.sleep(delay)
            except (BrokenPipeError, ConnectionResetError):  # the client went away
                return
        else:
            self.wfile.write(data)
        if send is not None:
            self.wfile.flush()
            self.close_connection = True

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        st: Server = self.server.state  # type: ignore[attr-defined]
        path = self.path
        if st.fail_first.get(path, 0) > 0:
            st.fail_first[path] -= 1
            return self._answer(503, b"busy")
        if path in st.html:
            return self._answer(200, b"<html>sign in</html>", {"Content-Type": "text/html; charset=utf-8"})
        if path not in st.files:
            return self._answer(404, b"not found")
        body = st.files[path]
        rng = self.headers.get("Range")
        cut = st.truncate_first.pop(path, None)
        if rng and not st.ignore_range:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(body):
                return self._answer(416, b"", {"Content-Range": f"bytes */{len(body)}"})
            headers = {
                "Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}",
                "Content-Type": "application/octet-stream",
            }
            return self._answer(206, body[start:], headers, send=cut)
        return self._answer(200, body, {"Content-Type": "application/octet-stream"}, send=cut)


@pytest.fixture()
def server(toy: Toy):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    state = Server(url=f"http://127.0.0.1:{httpd.server_address[1]}")
    state.files = {f"/files/{n}": b for n, b in toy.archives.items()}
    httpd.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


def _tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _assert_all_placed(root: Path, toy: Toy) -> None:
    for rel, data in toy.videos.items():
        assert (root / rel).read_bytes() == data, rel


# -- full runs ------------------------------------------------------------------------------
def test_cli_downloads_extracts_places_and_second_run_does_nothing(cli, tmp_path, toy, server):
    import decord

    man = tmp_path / "toy.jsonl"
    write_manifest(_manifest(), man)
    parts_json = tmp_path / "parts.json"
    parts_json.write_text(
        json.dumps([{"name": p.name, "url": p.url, "size": p.size, "sha256": p.sha256} for p in toy.parts(server.url)])
    )
    root = tmp_path / "root"
    code, out = cli("download", "--dataset", man, "--parts", parts_json, "--root", root, "--backoff", "0.001")
    assert code == 0, out
    _assert_all_placed(root, toy)
    assert (root / "Toy-Part-1" / "README.txt").read_bytes() == b"toy dataset, part 1\n"  # extras keep their path
    assert not (root / "Toy-Part-1" / "Normal").exists()  # videos moved out, no empty leftovers
    assert "4 of 4 videos" in out
    assert len(decord.VideoReader(str(root / "fire" / "f1.mp4"))) == 5  # a real, decodable video
    assert not list((root / ".dsan-download" / "archives").iterdir())  # archives removed after extraction
    n_requests = len(server.log)

    code, out = cli("download", "--dataset", man, "--parts", parts_json, "--root", root)
    assert code == 0, out
    assert "nothing to do" in out
    assert len(server.log) == n_requests  # not one request more


def test_interrupted_download_is_resumed_with_range(tmp_path, toy, server):
    name = "toy-part-1.zip"
    path = f"/files/{name}"
    size = len(toy.archives[name])
    server.truncate_first[path] = size // 3
    root = tmp_path / "root"
    # First run: no retries, the cut leaves a .part behind and the part is reported.
    report = download_dataset(toy.manifest, toy.parts(server.url), root, config=replace(FAST, retries=0))
    assert not report.ok and [f.part.name for f in report.failures] == [name]
    part_file = root / ".dsan-download" / "archives" / f"{name}.part"
    assert part_file.stat().st_size == size // 3
    assert "connection closed early" in report.manual or "interrupted" in report.manual
    # Second run: asks for the rest only, and finishes.
    report = download_dataset(toy.manifest, toy.parts(server.url), root, config=FAST)
    assert report.ok, report.manual
    assert server.requests(path)[-1] == (f"bytes={size // 3}-", 206)
    assert report.checksums[name] == hashlib.sha256(toy.archives[name]).hexdigest()
    assert not part_file.exists()
    _assert_all_placed(root, toy)


def test_cut_transfer_resumes_within_one_run(tmp_path, toy, server):
    name = "toy-part-2.tar.gz"
    server.truncate_first[f"/files/{name}"] = 100
    report = download_dataset(toy.manifest, toy.parts(server.url), tmp_path / "r", config=FAST)
    assert report.ok, report.manual
    assert [r for r, _ in server.requests(f"/files/{name}")] == [None, "bytes=100-"]


def test_server_that_ignores_range_restarts_from_zero(tmp_path, toy, server):
    name = "toy-part-1.zip"
    server.ignore_range = True
    server.truncate_first[f"/files/{name}"] = 500
    report = download_dataset(toy.manifest, toy.parts(server.url), tmp_path / "r", config=FAST)
    assert report.ok, report.manual
    assert server.requests(f"/files/{name}") == [(None, 200), ("bytes=500-", 200)]
    _assert_all_placed(tmp_path / "r", toy)


def test_server_errors_are_retried_then_given_up(tmp_path, toy, server):
    p1, p2 = (f"/files/{n}" for n in toy.archives)
    server.fail_first[p1] = 2
    report = download_dataset(toy.manifest, toy.parts(server.url), tmp_path / "a", config=FAST)
    assert report.ok
    assert [s for _, s in server.requests(p1)] == [503, 503, 200]

    server.fail_first[p2] = 10
    root = tmp_path / "b"
    seen = len(server.requests(p2))
    report = download_dataset(toy.manifest, toy.parts(server.url), root, config=replace(FAST, retries=2))
    assert [f.part.name for f in report.failures] == ["toy-part-2.tar.gz"]
    assert [s for _, s in server.requests(p2)[seen:]] == [503, 503, 503]
    assert "gave up after 3 attempts" in report.manual and "HTTP 503" in report.manual
    assert report.missing == ["fire/f1.mp4", "fire/f2.mp4"]
    assert not (root / ".dsan-download" / "complete.json").exists()  # not marked done
    # the part that worked is not fetched again once the server recovers
    server.fail_first[p2] = 0
    n1 = len(server.requests(p1))
    report = download_dataset(toy.manifest, toy.parts(server.url), root, config=FAST)
    assert report.ok and report.skipped == ["toy-part-1.zip"] and len(server.requests(p1)) == n1
    _assert_all_placed(root, toy)


def test_fetch_url_backoff_doubles_and_is_capped(tmp_path, toy, server):
    name = "toy-part-1.zip"
    server.fail_first[f"/files/{name}"] = 4
    waits: list[float] = []
    part = toy.parts(server.url)[0]
    cfg = DownloadConfig(retries=4, backoff=0.5, backoff_max=1.5, timeout=5)
    digest = fetch_url(part.url, tmp_path / name, part, config=cfg, sleep=waits.append)
    assert waits == [0.5, 1.0, 1.5, 1.5]
    assert digest == part.sha256 and (tmp_path / name).read_bytes() == toy.archives[name]


def test_wrong_checksum_is_refused_and_the_file_deleted(cli, tmp_path, toy, server):
    bad = {"toy-part-1.zip": {"sha256": "0" * 64}}
    root = tmp_path / "root"
    report = download_dataset(toy.manifest, toy.parts(server.url, **bad), root, config=FAST)
    assert [f.part.name for f in report.failures] == ["toy-part-1.zip"]
    assert "sha256" in report.manual and "deleted" in report.manual
    cache = root / ".dsan-download" / "archives"
    assert not any(p.name.startswith("toy-part-1.zip") for p in cache.iterdir())  # neither file nor .part
    assert not (root / "normal").exists()

    # via the CLI: exit code 1, the manual instructions, no traceback
    parts_json = tmp_path / "parts.json"
    parts_json.write_text(
        json.dumps([{"name": p.name, "url": p.url, "sha256": p.sha256} for p in toy.parts(server.url, **bad)])
    )
    man = tmp_path / "toy.jsonl"
    write_manifest(toy.manifest, man)
    code, out = cli("download", "-d", man, "--parts", parts_json, "--root", tmp_path / "r2", "--retries", "0")
    assert code == 1
    assert "toy-part-1.zip" in out and "--from" in out and "Traceback" not in out


def test_size_mismatch_announced_by_server_is_refused(tmp_path, toy, server):
    parts = toy.parts(server.url, **{"toy-part-2.tar.gz": {"size": 12, "sha256": None}})
    report = download_dataset(toy.manifest, parts, tmp_path / "r", config=FAST)
    assert [f.part.name for f in report.failures] == ["toy-part-2.tar.gz"]
    assert "12 expected" in report.manual


def test_html_answer_is_detected(tmp_path, toy, server):
    server.html.add("/files/toy-part-1.zip")
    report = download_dataset(toy.manifest, toy.parts(server.url), tmp_path / "r", config=FAST)
    assert [f.part.name for f in report.failures] == ["toy-part-1.zip"]
    assert "web page" in report.manual


def test_mirror_then_declared_url(tmp_path, toy, server):
    # The mirror has part 1 only: part 2 comes from its own URL after the mirror's 404.
    server.files["/mirror/toy-part-1.zip"] = toy.archives["toy-part-1.zip"]
    parts = toy.parts(server.url, **{"toy-part-1.zip": {"url": None}})
    report = download_dataset(toy.manifest, parts, tmp_path / "r", mirror=server.url + "/mirror/", config=FAST)
    assert report.ok, report.manual
    assert server.requests("/mirror/toy-part-1.zip") == [(None, 200)]
    assert [s for _, s in server.requests("/mirror/toy-part-2.tar.gz")] == [404]
    assert server.requests("/files/toy-part-2.tar.gz") == [(None, 200)]


def test_from_dir_is_used_in_place_and_never_changed(tmp_path, toy, server):
    src = tmp_path / "zips"
    src.mkdir()
    for name, data in toy.archives.items():
        (src / name).write_bytes(data)
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in src.iterdir()}
    root = tmp_path / "root"
    report = download_dataset(toy.manifest, toy.parts(None), root, source_dir=src, config=FAST)
    assert report.ok and sorted(report.reused) == sorted(toy.archives) and not server.log
    _assert_all_placed(root, toy)
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in src.iterdir()} == before

    # a corrupt file in --from is reported and left alone
    (src / "toy-part-1.zip").write_bytes(b"garbage")
    report = download_dataset(toy.manifest, toy.parts(None), tmp_path / "r2", source_dir=src, config=FAST)
    assert [f.part.name for f in report.failures] == ["toy-part-1.zip"]
    assert "left untouched" in report.manual and (src / "toy-part-1.zip").read_bytes() == b"garbage"


def test_existing_files_are_kept_and_complete_roots_need_nothing(tmp_path, toy, server):
    root = tmp_path / "root"
    (root / "normal").mkdir(parents=True)
    (root / "normal" / "n1.mp4").write_bytes(b"mine")
    report = download_dataset(toy.manifest, toy.parts(server.url), root, config=FAST)
    assert report.ok and report.kept_existing == 1 and report.placed == 3
    assert (root / "normal" / "n1.mp4").read_bytes() == b"mine"

    # a root that already holds every video: no request at all
    other = tmp_path / "manual"
    for rel, data in toy.videos.items():
        (other / rel).parent.mkdir(parents=True, exist_ok=True)
        (other / rel).write_bytes(data)
    n = len(server.log)
    report = download_dataset(toy.manifest, toy.parts(server.url), other, config=FAST)
    assert report.ok and not report.missing and len(server.log) == n
    assert download_dataset(toy.manifest, toy.parts(server.url), other, config=FAST).already_complete


def test_deleted_video_brings_its_part_back(tmp_path, toy, server):
    root = tmp_path / "root"
    assert download_dataset(toy.manifest, toy.parts(server.url), root, config=FAST).ok
    (root / "fire" / "f2.mp4").unlink()
    report = download_dataset(toy.manifest, toy.parts(server.url), root, config=FAST)
    assert report.ok and report.skipped == ["toy-part-1.zip"] and report.fetched == ["toy-part-2.tar.gz"]
    _assert_all_placed(root, toy)


# -- safe extraction ------------------------------------------------------------------------
def _tar_with(info: tarfile.TarInfo, data: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ok = tarfile.TarInfo("fine.txt")
        ok.size = 2
        tf.addfile(ok, io.BytesIO(b"ok"))
        tf.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


def _tarinfo(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, size
    return info


def _zip_symlink() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("fine.txt", b"ok")
        info = zipfile.ZipInfo("link")
        info.create_system = 3
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


MALICIOUS = {
    "zip-parent": ("evil.zip", lambda: _zip({"fine.txt": b"ok", "../escaped.txt": b"x"}), "'..'"),
    "zip-absolute": ("evil.zip", lambda: _zip({"fine.txt": b"ok", "/tmp/abs.txt": b"x"}), "absolute"),
    "zip-backslash": ("evil.zip", lambda: _zip({"fine.txt": b"ok", "a\\..\\..\\escaped.txt": b"x"}), "'..'"),
    "zip-symlink": ("evil.zip", _zip_symlink, "symbolic link"),
    "tar-parent": ("evil.tar", lambda: _tar_with(_tarinfo("a/../../escaped.txt", size=1), b"x"), "'..'"),
    "tar-absolute": ("evil.tar", lambda: _tar_with(_tarinfo("/abs.txt", size=1), b"x"), "absolute"),
    "tar-symlink": ("evil.tar", lambda: _tar_with(_tarinfo("link", tarfile.SYMTYPE, "/etc")), "symbolic link"),
    "tar-hardlink": ("evil.tar", lambda: _tar_with(_tarinfo("hard", tarfile.LNKTYPE, "/etc/passwd")), "hard link"),
    "tar-device": ("evil.tar", lambda: _tar_with(_tarinfo("dev", tarfile.CHRTYPE)), "device"),
    "tar-fifo": ("evil.tar", lambda: _tar_with(_tarinfo("fifo", tarfile.FIFOTYPE)), "FIFO"),
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_malicious_archive_is_refused_whole(tmp_path, case):
    name, build, why = MALICIOUS[case]
    box = tmp_path / "box"
    box.mkdir()
    archive = tmp_path / name
    archive.write_bytes(build())
    with pytest.raises(UnsafeArchive, match=why):
        safe_extract(archive, box / "out")
    assert _tree(tmp_path) == {name}  # nothing written: not in the box, not beside it
    assert not list(box.iterdir())


def test_malicious_archive_served_is_refused_in_a_run(tmp_path, toy, server):
    evil = _zip({"Toy/n1.mp4": toy.videos["normal/n1.mp4"], "../../outside.mp4": b"x"})
    server.files["/files/evil.zip"] = evil
    parts = [ArchivePart("evil.zip", url=f"{server.url}/files/evil.zip")]
    root = tmp_path / "root"
    report = download_dataset(toy.manifest, parts, root, config=FAST)
    assert not report.ok and "refused archive evil.zip" in report.manual
    # no video, nothing outside, the useless download is gone (the released lock file stays)
    assert _tree(tmp_path) == {"root/.dsan-download/lock"}
    # it is reported as refused, with the reason, not as "could not be fetched"
    assert report.failures[0].refused and "could not be fetched" not in report.manual
    assert "were fetched but REFUSED when opened" in report.manual and "../../outside.mp4" in report.manual


def test_refused_archive_cli_message(tmp_path, toy, server, cli):
    import json as _json

    evil = _zip({"Toy/n1.mp4": toy.videos["normal/n1.mp4"], "../../outside.mp4": b"x"})
    server.files["/files/evil.zip"] = evil
    parts_file = tmp_path / "parts.json"
    parts_file.write_text(_json.dumps([{"name": "evil.zip", "url": f"{server.url}/files/evil.zip"}]))
    manifest = tmp_path / "toy.jsonl"
    from dsan_toolkit.manifest import write_manifest

    write_manifest(toy.manifest, manifest)
    code, out = cli(
        "download", "--dataset", manifest, "--parts", parts_file, "--root", tmp_path / "root", "--retries", "0"
    )
    flat = " ".join(out.split())
    assert code == 1 and "Traceback" not in out
    assert "REFUSED when opened" in flat and "1 archive part(s) refused as unsafe or damaged" in flat
    assert "could not be fetched" not in flat


def test_corrupt_and_non_archives(tmp_path, toy):
    data = toy.archives["toy-part-1.zip"]
    broken = tmp_path / "broken.zip"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveError):
        safe_extract(broken, tmp_path / "out")
    page = tmp_path / "page.zip"
    page.write_text("<html>login</html>")
    with pytest.raises(ArchiveError, match="not a"):
        safe_extract(page, tmp_path / "out")
    # bit-flipped member data: caught while extracting, nothing kept
    flipped = bytearray(data)
    flipped[200] ^= 0xFF
    (tmp_path / "flip.zip").write_bytes(bytes(flipped))
    with pytest.raises(ArchiveError):
        safe_extract(tmp_path / "flip.zip", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert _tree(tmp_path) == {"broken.zip", "page.zip", "flip.zip"}


def test_list_members_and_formats_by_content(tmp_path, toy):
    odd = tmp_path / "part-2.bin"  # a tar.gz under a name that says nothing
    odd.write_bytes(toy.archives["toy-part-2.tar.gz"])
    names = [m.name for m in list_members(odd)]
    assert names == ["videos/f1.mp4", "videos/f2.mp4"]
    files = safe_extract(odd, tmp_path / "x")
    assert files == names and (tmp_path / "x/videos/f2.mp4").read_bytes() == toy.videos["fire/f2.mp4"]


# -- inputs, lock, built-in declarations ----------------------------------------------------
def test_bad_inputs_get_clear_errors(cli, tmp_path, toy):
    man = tmp_path / "toy.jsonl"
    write_manifest(toy.manifest, man)
    good = tmp_path / "parts.json"
    good.write_text(json.dumps([{"name": "a.zip"}]))
    cases = [
        (["-d", "nope", "--root", tmp_path / "r"], "unknown dataset"),
        (["-d", man, "--root", tmp_path / "r"], "--parts"),
        (["-d", "ucf", "--root", tmp_path / "r", "--mirror", "ftp://x"], "--mirror"),
        (["-d", "ucf", "--root", tmp_path / "r", "--from", tmp_path / "none"], "--from folder not found"),
        (["-d", "ucf", "--root", tmp_path / "r", "--from", man], "--from is a file, not a folder"),
        (["-d", man, "--parts", tmp_path / "missing.json", "--root", tmp_path / "r"], "parts file not found"),
        (["-d", man, "--parts", man, "--root", tmp_path / "r"], "cannot read parts file"),
        (["-d", man, "--parts", good, "--root", man], "is a file"),
    ]
    for args, message in cases:
        code, out = cli("download", *args)
        assert code == 2, (args, out)
        assert message in out and "Traceback" not in out, (args, out)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"name": "../x.zip", "sha256": "abc"}, {"name": "y.zip", "colour": 1}]))
    code, out = cli("download", "-d", man, "--parts", bad, "--root", tmp_path / "r")
    assert code == 2 and "plain file name" in out and "64 lowercase hex" in out and "unknown keys" in out
    with pytest.raises(InputError):
        read_parts_file(bad)


def test_builtin_without_sources_prints_what_to_fetch(cli, tmp_path):
    code, out = cli("download", "--dataset", "xd", "--root", tmp_path / "xd")
    assert code == 1
    for name in ("1-1004.zip", "3320-3954.zip", "XD_violence_test_video.zip", "sharepoint.com", "--from"):
        assert name in out, name
    assert "0 of 4754 videos" in out
    code, out = cli("download", "--dataset", "ucf", "--root", tmp_path / "ucf", "--list")
    assert code == 0 and "Anomaly-Videos-Part-4.zip" in out and "(optional)" in out
    assert not (tmp_path / "ucf").exists()  # --list touches nothing


def test_builtin_from_dir_places_videos_at_manifest_paths(tmp_path):
    """A real UCF archive layout (top folders as in the release) ends in the manifest layout."""
    from dsan_toolkit.datasets.registry import get_dataset
    from dsan_toolkit.manifest.builtin import load_builtin_manifest

    m = load_builtin_manifest("ucf")
    parts = [replace(p, url=None) for p in get_dataset("ucf").archives]  # never touch the network
    src = tmp_path / "zips"
    src.mkdir()
    test_normal = [v.path for v in m if v.path.startswith("Testing_Normal_Videos_Anomaly/")]
    (src / "Testing_Normal_Videos.zip").write_bytes(
        _zip({f"Testing_Normal_Videos/{p}": p.encode() for p in test_normal})  # an extra top folder
    )
    root = tmp_path / "ucf"
    report = download_dataset(m, parts, root, source_dir=src, config=FAST)
    assert report.reused == ["Testing_Normal_Videos.zip"] and len(report.failures) == 6
    assert all((root / p).read_bytes() == p.encode() for p in test_normal)
    assert len(report.missing) == len(m) - len(test_normal)


@pytest.mark.integration
def test_lock_keeps_a_second_run_out_and_a_killed_holder_does_not(tmp_path):
    root = tmp_path / "root"
    with RootLock(root) as lock:
        assert lock.owner_path.read_text().split()[:2] == ["process", str(os.getpid())]
        with pytest.raises(InputError, match=rf"another `dsan download` is using .*\(process {os.getpid()} on "):
            RootLock(root).__enter__()
    assert not lock.owner_path.exists()
    # a holder killed with SIGKILL (no cleanup at all): its lock file stays, and keeps nobody out
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from dsan_toolkit.datasets.download import RootLock; "
            "lock = RootLock(sys.argv[1]).__enter__(); print('held', flush=True); time.sleep(60)",
            str(root),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(InputError, match=f"process {holder.pid} on"):
            RootLock(root).__enter__()
    finally:
        holder.kill()
        holder.wait()
    assert (root / ".dsan-download" / "lock.owner").exists()
    with RootLock(root) as lock:
        assert lock.owner_path.read_text().split()[1] == str(os.getpid())


def test_config_is_validated():
    with pytest.raises(InputError):
        DownloadConfig(retries=-1)
    with pytest.raises(InputError):
        DownloadConfig(timeout=0)


def test_whole_part_file_is_finished_on_416(tmp_path, toy, server):
    name = "toy-part-1.zip"
    cache = tmp_path / "r" / ".dsan-download" / "archives"
    cache.mkdir(parents=True)
    (cache / f"{name}.part").write_bytes(toy.archives[name])  # killed just before the rename
    report = download_dataset(toy.manifest, toy.parts(server.url), tmp_path / "r", config=FAST)
    assert report.ok, report.manual
    assert [s for _, s in server.requests(f"/files/{name}")] == [416]


def test_file_mirror_and_missing_file_fails_fast(tmp_path, toy):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "toy-part-1.zip").write_bytes(toy.archives["toy-part-1.zip"])
    report = download_dataset(toy.manifest, toy.parts(None), tmp_path / "r", mirror=mirror.as_uri(), config=FAST)
    assert report.fetched == ["toy-part-1.zip"]
    assert [f.part.name for f in report.failures] == ["toy-part-2.tar.gz"]
    assert "cannot reach" in report.manual and "gave up" not in report.manual  # not retried


def test_file_system_errors_are_user_errors(tmp_path, toy):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(InputError, match="file system error"):
        download_dataset(toy.manifest, toy.parts(None), blocker / "root", config=FAST)


def test_parts_that_are_single_videos(tmp_path, toy, server):
    """A part may be one video file (no archive): it goes straight to its manifest path."""
    server.files["/v/f1.mp4"] = toy.videos["fire/f1.mp4"]
    src = tmp_path / "src"
    src.mkdir()
    (src / "f2.mp4").write_bytes(toy.videos["fire/f2.mp4"])
    parts = [
        toy.parts(server.url)[0],
        ArchivePart("f1.mp4", url=f"{server.url}/v/f1.mp4"),
        ArchivePart("f2.mp4", sha256=hashlib.sha256(toy.videos["fire/f2.mp4"]).hexdigest()),
    ]
    root = tmp_path / "root"
    report = download_dataset(toy.manifest, parts, root, source_dir=src, config=FAST)
    assert report.ok, report.manual
    _assert_all_placed(root, toy)
    assert (src / "f2.mp4").read_bytes() == toy.videos["fire/f2.mp4"]  # copied, not moved


def test_keep_archives_serves_later_runs_without_network(tmp_path, toy, server):
    root = tmp_path / "root"
    cfg = replace(FAST, keep_archives=True)
    assert download_dataset(toy.manifest, toy.parts(server.url), root, config=cfg).ok
    assert sorted(p.name for p in (root / ".dsan-download" / "archives").iterdir()) == sorted(toy.archives)
    marker = json.loads((root / ".dsan-download" / "complete.json").read_text())
    assert marker["config"]["keep_archives"] is True and len(marker["present"]) == 4
    (root / "normal" / "n2.mp4").unlink()
    n = len(server.log)
    report = download_dataset(toy.manifest, toy.parts(server.url), root, config=cfg)
    assert report.ok and report.reused == ["toy-part-1.zip"] and len(server.log) == n
    _assert_all_placed(root, toy)


@pytest.mark.integration
def test_killed_cli_run_resumes_where_it_stopped(tmp_path, toy, server):
    """A real `dsan download` process interrupted with SIGINT mid-transfer: clean exit, lock
    released, partial data kept; the next run asks only for the rest."""
    import signal

    big = _zip(
        {
            "Toy/n1.mp4": toy.videos["normal/n1.mp4"],
            "Toy/n2.mp4": toy.videos["normal/n2.mp4"],
            "Toy/noise.bin": os.urandom(400_000),
        }
    )
    server.files["/files/big.zip"] = big
    server.slow["/files/big.zip"] = 0.01
    parts_json = tmp_path / "parts.json"
    sha = hashlib.sha256(big).hexdigest()
    parts_json.write_text(
        json.dumps([{"name": "big.zip", "url": f"{server.url}/files/big.zip", "size": len(big), "sha256": sha}])
    )
    man = tmp_path / "toy.jsonl"
    write_manifest(toy.manifest.select(["n1", "n2"]), man)
    root = tmp_path / "root"
    cmd = [
        sys.executable,
        "-m",
        "dsan_toolkit.cli.app",
        "download",
        "-d",
        str(man),
        "--parts",
        str(parts_json),
        "--root",
        str(root),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    part_file = root / ".dsan-download" / "archives" / "big.zip.part"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (part_file.exists() and part_file.stat().st_size > 20_000):
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 130, out
    assert "interrupted" in out and "Traceback" not in out
    with RootLock(root):  # released: the next run may take it
        pass
    have = part_file.stat().st_size
    assert 20_000 <= have < len(big)

    server.slow.clear()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert server.requests("/files/big.zip")[-1] == (f"bytes={have}-", 206)
    assert (root / "normal" / "n2.mp4").read_bytes() == toy.videos["normal/n2.mp4"]
