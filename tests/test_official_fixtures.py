"""Our DSANet and VadCLIP against the official code's own outputs, on every run (no checkout needed).

``tests/fixtures/official/<method>-<dataset>/`` holds what the official code computed
(``scripts/make_official_fixtures.py``, run by hand against checkouts of lessiYin/DSANet and
nwpu-zxr/VadCLIP): test scores, class probabilities, the losses of one training step, the
ground truth and the metrics. The inputs are regenerated here from the recorded seed
(:mod:`dsan_toolkit.testing.seeded`) and their digests checked, then our model is built from the
official-format state dict through the official key map (:func:`load_official_state`) and must
reproduce every number.

Tolerances: per-snippet outputs within 2e-6 absolute (float32: CPU element-wise ops differ by an
ulp with batching, our text tower runs a shorter context; observed up to 4e-7); losses within a
relative 2e-6 (observed up to 2.3e-7);
the ground truth exactly; metrics exactly when computed from the official outputs (identical
inputs), and within 1e-5 from ours (scores that differ by float32 rounding can swap ranks:
VadCLIP's second score spans a narrow range with random weights).
"""

from __future__ import annotations

import ast
import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dsan_toolkit import keys
from dsan_toolkit.config import sha256_file
from dsan_toolkit.eval import DetectionMapConfig, frame_gt
from dsan_toolkit.eval.detection_map import detection_ground_truth, resolve_normal_class
from dsan_toolkit.eval.metrics import evaluate_predictions
from dsan_toolkit.manifest import Manifest
from dsan_toolkit.manifest.builtin import load_builtin_manifest
from dsan_toolkit.manifest.schema import Segment, VideoRecord
from dsan_toolkit.models import TrainBatch, get_method, labels_from_codes, resample_uniform
from dsan_toolkit.models.official import load_official_state
from dsan_toolkit.testing.seeded import GENERATOR_VERSION, arrays_digest, seeded_features, seeded_state
from dsan_toolkit.train.predictions import predict_testset
from dsan_toolkit.train.testset import TestSet

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "official"
SCRIPT = ROOT / "scripts" / "make_official_fixtures.py"
CONFIGS = ("dsanet-ucf", "dsanet-xd", "vadclip-ucf", "vadclip-xd")
SCORE_ATOL = 2e-6
LOSS_RTOL = 2e-6
OUR_METRIC_ATOL = 1e-5


def script_version() -> int:
    """``SCRIPT_VERSION`` of the fixture script, read without importing it."""
    for node in ast.parse(SCRIPT.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "SCRIPT_VERSION" for t in node.targets):
            return int(ast.literal_eval(node.value))
    raise AssertionError(f"{SCRIPT} defines no SCRIPT_VERSION")


@dataclass
class Case:
    """One configuration: the fixture, the regenerated inputs' digests and our outputs on them."""

    name: str
    meta: dict[str, Any]
    official: dict[str, np.ndarray]
    manifest: Manifest
    state_digest: str = ""
    inputs_digest: str = ""
    train_feats: np.ndarray | None = None
    train_lengths: np.ndarray | None = None
    train_labels: np.ndarray | None = None
    losses: dict[str, float] = field(default_factory=dict)
    preds: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # video id -> scores / align / probs


def load_fixture(name: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    folder = FIXTURES / name
    meta = json.loads((folder / "fixture.json").read_text())
    with np.load(folder / "outputs.npz", allow_pickle=False) as z:
        official = {k: z[k] for k in z.files}
    return meta, official


def fixture_manifest(meta: dict[str, Any]) -> Manifest:
    info = load_builtin_manifest(meta["dataset"]).info
    videos = tuple(
        VideoRecord(
            id=v["id"],
            path=f"{v['id']}.mp4",
            split="test",
            labels=tuple(v["labels"]),
            segments=tuple(Segment(start=s, end=e, label=c) for c, s, e in v["segments"]),
        )
        for v in meta["inputs"]["test"]
    )
    return Manifest(info=info, videos=videos)


# torch's in-place initialisers (and the one our DSANet imports by name)
_INITIALISERS = (
    "uniform_",
    "normal_",
    "trunc_normal_",
    "constant_",
    "ones_",
    "zeros_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "orthogonal_",
)


@contextlib.contextmanager
def initialisers_skipped():
    """Build models without drawing their random initial weights. Every parameter is then
    overwritten by the strict load of a complete official state dict, so the initial values never
    matter; drawing them (a CLIP vocabulary, DSANet's truncated normals) would take most of the
    time of this module."""
    import dsan_toolkit.models.dsanet.normality as dsanet_normality

    def keep(tensor, *args, **kwargs):
        return tensor

    with pytest.MonkeyPatch.context() as mp:
        for name in _INITIALISERS:
            mp.setattr(torch.nn.init, name, keep)
        mp.setattr(dsanet_normality, "trunc_normal_", keep)  # imported by name there
        yield


@pytest.fixture(scope="module", params=CONFIGS)
def case(request) -> Case:
    return build_case(request.param)


def build_case(name: str) -> Case:
    """Build our model from the fixture's regenerated official state dict and run it once."""
    meta, official = load_fixture(name)
    method_name, dataset, seed = meta["method"], meta["dataset"], int(meta["seed"])
    c = Case(name=name, meta=meta, official=official, manifest=fixture_manifest(meta))
    import open_clip

    open_clip.add_model_config(str(FIXTURES / Path(meta["clip"]["config_file"]).name))
    spec = [(k, tuple(s), src) for k, s, src in meta["state"]["spec"]]
    values = seeded_state(spec, seed, meta["state"]["scales"])
    c.state_digest = arrays_digest({src: values[src] for _, _, src in spec})  # shared tensors once
    state = {k: torch.from_numpy(v) for k, v in values.items()}
    del values
    with initialisers_skipped():
        loaded = load_official_state(
            method_name, state, preset=dataset, clip_model=meta["clip"]["model"], source=f"fixture {name}"
        )
    del state
    model, method = loaded.model, get_method(method_name)
    dim = int(meta["inputs"]["feature_dim"])
    feats = {
        f"test/{v['id']}": seeded_features(seed, f"test/{v['id']}", v["num_snippets"], dim)
        for v in meta["inputs"]["test"]
    }
    feats.update(
        {
            f"train/{v['id']}": seeded_features(seed, f"train/{v['id']}", v["num_snippets"], dim)
            for v in meta["inputs"]["train"]
        }
    )
    c.inputs_digest = arrays_digest(feats)

    # one training step's losses, on the batch as our data pipeline resamples it
    rows, lengths = zip(
        *(resample_uniform(feats[f"train/{v['id']}"], loaded.preset.visual_length) for v in meta["inputs"]["train"])
    )
    classes = c.manifest.info.classes
    labels = labels_from_codes([v["labels"] for v in meta["inputs"]["train"]], classes)
    batch = TrainBatch(
        feats=torch.from_numpy(np.stack(rows)),
        lengths=torch.tensor(lengths, dtype=torch.long),
        labels=labels,
        anomalous=labels[:, 0] == 0,
    )
    c.train_feats, c.train_lengths, c.train_labels = batch.feats.numpy(), batch.lengths.numpy(), labels.numpy()
    model.train()
    with torch.no_grad():
        _, c.losses = method.loss(model, batch, loaded.preset)

    # the test videos through our evaluation path: the official chunks, all videos' chunks in one batch
    ids = [v["id"] for v in meta["inputs"]["test"]]
    test_rows = [torch.from_numpy(feats[f"test/{i}"]) for i in ids]
    table = torch.cat(test_rows + [torch.zeros(1, dim)])  # the zero sentinel row pads the chunks
    offsets = torch.tensor(np.concatenate([[0], np.cumsum([r.shape[0] for r in test_rows])]), dtype=torch.long)
    test = TestSet(table=table, offsets=offsets, video_ids=ids, crop=0)
    pred = predict_testset(method, model, test, loaded.preset.visual_length)
    for key in ("scores", "align_scores", "class_probs"):
        for vid, arr in pred.per_video(key).items():
            c.preds.setdefault(vid, {})[key] = arr
    return c


def official_per_video(c: Case, key: str) -> dict[str, np.ndarray]:
    t = c.official["test/num_snippets"]
    parts = np.split(c.official[f"test/{key}"], np.cumsum(t)[:-1])
    return {v["id"]: p for v, p in zip(c.meta["inputs"]["test"], parts)}


def test_fixture_files_are_intact_and_current(case: Case):
    folder = FIXTURES / case.name
    for fname, digest in case.meta["files"].items():
        assert sha256_file(folder / fname) == digest, f"{case.name}/{fname} does not match its recorded sha256"
    clip = case.meta["clip"]
    assert sha256_file(FIXTURES / Path(clip["config_file"]).name) == clip["config_sha256"]
    assert case.meta["script_version"] == script_version(), "the fixture script changed: regenerate the fixtures"
    assert case.meta["generator_version"] == GENERATOR_VERSION, "the input generator changed: regenerate the fixtures"
    assert (case.meta["method"], case.meta["dataset"]) == tuple(case.name.split("-"))


def test_regenerated_inputs_are_the_ones_the_official_code_saw(case: Case):
    assert case.state_digest == case.meta["state"]["digest"]
    assert case.inputs_digest == case.meta["inputs"]["digest"]


def test_training_batch_matches_the_official_resampling(case: Case):
    off = case.official
    np.testing.assert_array_equal(case.train_lengths, off["train/lengths"])
    np.testing.assert_array_equal(case.train_labels, off["train/labels"])
    x = case.train_feats.astype(np.float64)
    np.testing.assert_allclose(x.sum(axis=2), off["train/row_sum"], rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose((x * x).sum(axis=2), off["train/row_sumsq"], rtol=1e-6, atol=1e-4)


def test_training_losses_match_the_official_step(case: Case):
    off = {k.removeprefix("loss/"): float(v) for k, v in case.official.items() if k.startswith("loss/")}
    ours = dict(case.losses)
    ours["total"] = ours.pop("loss")
    assert set(ours) == set(off), f"loss terms differ: ours {sorted(ours)}, official {sorted(off)}"
    for name, value in off.items():
        assert ours[name] == pytest.approx(value, rel=LOSS_RTOL, abs=1e-7), (
            f"{case.name} loss {name}: ours {ours[name]!r}, official {value!r}"
        )


@pytest.mark.parametrize("key", ["scores", "align_scores", "class_probs"])
def test_test_outputs_match_the_official_test_loop(case: Case, key: str):
    official = official_per_video(case, key)
    for vid, expected in official.items():
        got = case.preds[vid][key]
        assert got.shape == expected.shape, f"{vid} {key}: shape {got.shape} vs official {expected.shape}"
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=0, atol=SCORE_ATOL, err_msg=f"{case.name} {vid} {key}")


def test_ground_truth_matches_the_official_scripts(case: Case):
    m, off = case.manifest, case.official
    lengths = {v["id"]: v["num_snippets"] for v in case.meta["inputs"]["test"]}
    np.testing.assert_array_equal(frame_gt(m, list(m.videos), lengths), off["gt/frames"].astype(np.float32))
    mode = resolve_normal_class("official", m.name)
    ours = detection_ground_truth(m, list(m.videos), np.array(list(lengths.values())), mode)
    codes = m.class_codes
    # the official UCF lists label normal videos "A", a code outside the UCF class list: no ground truth
    keep = np.isin(off["gt/segment_label"], codes)
    assert mode == ("no-gt" if m.name == "ucf" else "whole-video")
    assert keep.all() == (m.name == "xd")
    np.testing.assert_array_equal(ours.video, off["gt/segment_video"][keep])
    np.testing.assert_array_equal(ours.start, off["gt/segment_start"][keep])
    np.testing.assert_array_equal(ours.end, off["gt/segment_end"][keep])
    np.testing.assert_array_equal(np.array(codes)[ours.label], off["gt/segment_label"][keep])


def metrics_of(case: Case, preds: dict[str, dict[str, np.ndarray]]) -> dict[str, Any]:
    numpy_major = int(case.meta["environment"]["numpy"].split(".")[0])
    config = DetectionMapConfig(float_semantics="numpy2" if numpy_major >= 2 else "numpy1")
    lengths = {v["id"]: v["num_snippets"] for v in case.meta["inputs"]["test"]}
    return evaluate_predictions(
        case.manifest,
        lengths,
        {k: p["scores"] for k, p in preds.items()},
        {k: p["align_scores"] for k, p in preds.items()},
        {k: p["class_probs"] for k, p in preds.items()},
        detection=config,
    )


def official_metrics(case: Case) -> dict[str, float]:
    off = case.official
    out = {
        keys.AUC: float(off["metric/auc1"]),
        keys.AP: float(off["metric/ap1"]),
        keys.AUC_ALIGN: float(off["metric/auc2"]),
        keys.AP_ALIGN: float(off["metric/ap2"]),
    }
    total = 0.0
    for iou, value in zip(off["metric/iou"], off["metric/map"]):
        out[keys.map_at(float(iou))] = float(value)
        total += float(value)  # the official test loop adds them one by one
    out[keys.MAP_MEAN] = total / len(off["metric/map"])
    return out


def test_metrics_are_exact_on_the_official_outputs(case: Case):
    """Our metric code on the official code's own outputs gives the official numbers exactly."""
    official_preds = {
        vid: {k: official_per_video(case, k)[vid] for k in ("scores", "align_scores", "class_probs")}
        for vid in case.preds
    }
    ours = metrics_of(case, official_preds)
    for name, value in official_metrics(case).items():
        assert ours[name] == value, f"{case.name} {name}: ours {ours[name]!r}, official {value!r}"


def test_metrics_of_our_outputs_match_the_official_ones(case: Case):
    ours = metrics_of(case, case.preds)
    for name, value in official_metrics(case).items():
        assert ours[name] == pytest.approx(value, abs=OUR_METRIC_ATOL), (
            f"{case.name} {name}: ours {ours[name]!r}, official {value!r}"
        )
