"""Throughput of `dsan download`'s stages on this machine, against plain baselines.

    python benchmarks/download.py                 # 256 MB archive, 16 members
    python benchmarks/download.py --mb 64 --members 8

A zip of random (incompressible, stored) "videos" is served by a ThreadingHTTPServer on
127.0.0.1. Stages, each timed on the same bytes:

- download: ``fetch_url`` (streamed sha256, fsync, atomic rename) vs a bare
  ``urllib`` read into a file (no hashing) — the overhead of resumable + checksummed;
- download with 3 cuts: the server closes the connection after each third, the client
  resumes with Range (the cost of resumption);
- extract: ``safe_extract`` (check every member, temp folder, rename) vs ``ZipFile.extractall``;
- whole run: ``download_dataset`` (download, verify, extract, place by file name, state).

Prints a markdown table (MB/s, best of ``--repeat``).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import tempfile
import threading
import time
import urllib.request
import zipfile
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from dsan_toolkit.datasets.archives import safe_extract
from dsan_toolkit.datasets.download import DownloadConfig, download_dataset, fetch_url
from dsan_toolkit.datasets.spec import ArchivePart
from dsan_toolkit.manifest import ClassInfo, DatasetInfo, Manifest, VideoRecord


def _make_zip(mb: int, members: int) -> bytes:
    each = mb * (1 << 20) // members
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i in range(members):
            zf.writestr(f"Bench-Part/class{i % 3}/video{i:03d}.mp4", os.urandom(each))
    return buf.getvalue()


class _Handler(BaseHTTPRequestHandler):
    body: bytes = b""
    cuts: list[int] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        body = self.body
        start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        stop = len(body)
        if self.cuts and self.cuts[0] > start:
            stop = self.cuts.pop(0)
        view = memoryview(body)
        for i in range(start, stop, 1 << 20):
            self.wfile.write(view[i : min(i + (1 << 20), stop)])
        if stop < len(body):
            self.close_connection = True


def _best(fn: Callable[[], None], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=256)
    ap.add_argument("--members", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    data = _make_zip(args.mb, args.members)
    size_mb = len(data) / 1e6
    _Handler.body = data
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/bench.zip"
    part = ArchivePart("bench.zip", url=url, size=len(data), sha256=hashlib.sha256(data).hexdigest())
    cfg = DownloadConfig(retries=5, backoff=0.0, timeout=30)
    work = Path(tempfile.mkdtemp(prefix="dsan-bench-dl-"))
    rows: list[tuple[str, float, float | None]] = []
    try:

        def bare() -> None:
            with urllib.request.urlopen(url) as r, open(work / "bare.zip", "wb") as fh:
                shutil.copyfileobj(r, fh, 1 << 20)

        def ours() -> None:
            (work / "ours.zip").unlink(missing_ok=True)
            fetch_url(url, work / "ours.zip", part, config=cfg)

        def cut3() -> None:
            (work / "cut.zip").unlink(missing_ok=True)
            _Handler.cuts = [len(data) // 4, len(data) // 2, 3 * len(data) // 4]
            fetch_url(url, work / "cut.zip", part, config=cfg)

        t_bare, t_ours, t_cut = (_best(f, args.repeat) for f in (bare, ours, cut3))
        rows += [
            ("download (fetch_url: sha256 + fsync + rename)", t_ours, t_bare),
            ("download, cut 3 times and resumed", t_cut, t_bare),
        ]

        def extract_ours() -> None:
            shutil.rmtree(work / "x1", ignore_errors=True)
            safe_extract(work / "ours.zip", work / "x1")

        def extract_plain() -> None:
            shutil.rmtree(work / "x2", ignore_errors=True)
            with zipfile.ZipFile(work / "ours.zip") as zf:
                zf.extractall(work / "x2")

        rows.append(("extract (safe_extract)", _best(extract_ours, args.repeat), _best(extract_plain, args.repeat)))

        info = DatasetInfo("bench", (ClassInfo("N", "normal", "normal", normal=True),), fps=30.0)
        manifest = Manifest(
            info,
            tuple(
                VideoRecord(f"video{i:03d}", f"videos/video{i:03d}.mp4", "train", ("N",)) for i in range(args.members)
            ),
        )

        def whole() -> None:
            shutil.rmtree(work / "root", ignore_errors=True)
            report = download_dataset(manifest, [part], work / "root", config=cfg)
            assert report.ok and not report.missing

        rows.append(
            ("whole run (download_dataset)", _best(whole, args.repeat), t_bare + _best(extract_plain, args.repeat))
        )
    finally:
        httpd.shutdown()
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"archive: {size_mb:.0f} MB zip, {args.members} stored members; best of {args.repeat}; {os.cpu_count()} CPUs\n"
    )
    print("| stage | ours MB/s | baseline MB/s | ours / baseline time |")
    print("| --- | ---: | ---: | ---: |")
    for name, t, base in rows:
        b = f"{size_mb / base:.0f}" if base else "-"
        ratio = f"{t / base:.2f}x" if base else "-"
        print(f"| {name} | {size_mb / t:.0f} | {b} | {ratio} |")


if __name__ == "__main__":
    main()
