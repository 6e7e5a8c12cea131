"""Shared fixtures. Test data is generated, never downloaded."""

from __future__ import annotations

import os

import pytest

# Keep test runs on the 2-core CI machine predictable.
os.environ.setdefault("OMP_NUM_THREADS", "2")
# MKL's results differ between instruction sets (AVX2, AVX-512) in the last bits, which is enough
# to flip an entry of VadCLIP's hard-thresholded similarity graph against the golden official
# outputs. COMPATIBLE gives the same bits on every x86 CPU, so golden comparisons and the
# bit-identity tests hold on whichever machine runs them (set before torch is imported).
os.environ.setdefault("MKL_CBWR", "COMPATIBLE")


@pytest.fixture()
def cli(tmp_path, monkeypatch):
    """Run the `dsan` CLI in-process; returns a function giving (exit_code, output)."""
    from typer.testing import CliRunner

    from dsan_toolkit.cli.app import app

    runner = CliRunner()
    monkeypatch.chdir(tmp_path)

    def run(*args: str):
        result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
        return result.exit_code, result.output

    return run


# -- data and runs built once per test run, shared by the modules that only read them ----------
@pytest.fixture(scope="session")
def xd_feature_store(tmp_path_factory):
    """A small synthetic feature store with XD-Violence's class table (16 train, 6 test videos)."""
    from dsan_toolkit.store.synthetic import SynthFeaturesConfig, write_synthetic_feature_store

    path = tmp_path_factory.mktemp("xd-store") / "s.zarr"
    return write_synthetic_feature_store(
        path, SynthFeaturesConfig(num_train=16, num_test=6, crops=1, median_t=48, max_t=96, class_table="xd", seed=3)
    )


@pytest.fixture(scope="session")
def vadclip_xd_run(xd_feature_store, tmp_path_factory):
    """One epoch of vadclip (tiny preset) on :func:`xd_feature_store`. Read it, or copy it before
    changing anything."""
    from dsan_toolkit.train.run import TrainOptions, train

    run = tmp_path_factory.mktemp("xd-run") / "run"
    res = train(
        TrainOptions(
            method="vadclip", features=xd_feature_store, out=run, preset="tiny", seed=0, epochs=1, progress=False
        )
    )
    assert res.finished
    return run


@pytest.fixture(scope="session")
def extracted_world(tmp_path_factory):
    """Real H.264 videos (``SMALL_SYNTH``) extracted twice with the tiny CLIP, as ``a/f.zarr``
    (the demo's config) and ``b/f.zarr`` (``snippet="first"``: another store of the same name),
    and a vadclip run trained on ``a/f.zarr`` given as a relative path, as a user types it.
    Returns ``(root, run, test video, manifest)``. Tests that move or replace a store put it
    back; tests that write into the run remove what they wrote."""
    from pathlib import Path

    from dsan_toolkit.testing import SMALL_SYNTH, extract_tiny, synthetic_dataset
    from dsan_toolkit.train.run import TrainOptions, train

    root = tmp_path_factory.mktemp("extracted")
    data, manifest = synthetic_dataset(root / "data", SMALL_SYNTH)
    extract_tiny(manifest, data, root / "a" / "f.zarr")
    extract_tiny(manifest, data, root / "b" / "f.zarr", snippet="first")
    run = root / "run"
    cwd = os.getcwd()
    os.chdir(root / "a")
    try:
        out = train(
            TrainOptions(
                method="vadclip",
                features=Path("f.zarr"),
                out=run,
                preset="tiny",
                epochs=1,
                progress=False,
                overrides={"batch_size": 2},
            )
        )
    finally:
        os.chdir(cwd)
    assert out.finished
    video = next(data / v.path for v in manifest.videos if v.split == "test" and v.segments)
    return root, run, video, manifest
