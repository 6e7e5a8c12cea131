#!/usr/bin/env python3
"""Regenerate the committed built-in manifests from the raw official lists.

Usage: python scripts/build_manifests.py [--raw ../shared/datasets] [--out manifests]

Re-runnable: the output depends only on the raw lists, and a file is rewritten (atomically)
only when its content changes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dsan_toolkit.datasets.registry import get_dataset, list_datasets
from dsan_toolkit.manifest import read_manifest, write_manifest

RAW_FOLDERS = {"ucf": "ucf_crime", "xd": "xd_violence"}


def main() -> None:
    repo = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raw", type=Path, default=repo.parent / "shared" / "datasets")
    ap.add_argument("--out", type=Path, default=repo / "manifests")
    args = ap.parse_args()
    for name in list_datasets():
        manifest = get_dataset(name).build_manifest(args.raw / RAW_FOLDERS[name])
        out = args.out / f"{name}.jsonl"
        if out.is_file() and read_manifest(out).content_hash() == manifest.content_hash():
            print(f"{name}: unchanged ({len(manifest)} videos) {out}")
            continue
        write_manifest(manifest, out)
        print(f"{name}: wrote {len(manifest)} videos to {out}")


if __name__ == "__main__":
    main()
