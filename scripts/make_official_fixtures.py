"""Golden fixtures from the official DSANet and VadCLIP code, for ``tests/test_official_fixtures.py``.

Run by hand (a checkout of each official repository is needed; nothing of it is committed):

    python scripts/make_official_fixtures.py --dsanet-src official/dsanet/src --vadclip-src official/vadclip/src

For each configuration (dsanet / vadclip x ucf / xd) it builds the official model with the
official option file's defaults (through ``benchmarks/official_harness.py``), gives it seeded
weights, runs the official code on seeded inputs and writes what the official code computes to
``tests/fixtures/official/<method>-<dataset>/``:

- ``outputs.npz`` (plain arrays, no pickles): the per-snippet classifier scores, second scores
  and class probabilities of six test videos (T = 17, 255, 256, 300, 512, 700 snippets) as the
  official ``test()`` computes them (its chunking, its DataLoader), the frame AUC/AP values and
  the fine-grained mAP of that same ``test()``, the ground truth built by VadCLIP's
  ``list/make_gt*.py`` scripts, one training batch as the official Dataset resamples it (its
  lengths, labels and per-snippet checksums) and every named loss term of the official training
  step on it, with the total summed as the official loop sums it;
- ``fixture.json``: this script's version, the official commits, the configuration, the
  environment, the state-dict layout (official key, shape, which keys share one tensor), the
  videos (ids, lengths, labels, segments), the digests of the regenerated weights and inputs,
  and the sha256 of ``outputs.npz``.

The weights (tens of millions of numbers: DSANet UCF has 44 M trainable parameters) and the
snippet features are not stored: :mod:`dsan_toolkit.testing.seeded` regenerates them from the
seed with numpy's PCG64 stream, here and in the test, and the recorded digests prove both sides
used the same ones. The embedded CLIP is a small one read from ``dsan-fixture-clip.json`` (text
tower of width 512 and the real 49,408-token vocabulary, 4 layers; a 1-layer image tower the
methods never run), which the official ``build_model`` accepts as it reads the architecture from
the tensor shapes.

Bump ``SCRIPT_VERSION`` when the fixtures' content or layout changes, and regenerate.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import runpy
import subprocess
import sys
import tempfile
import types
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from official_harness import (  # noqa: E402 - the harness lives in benchmarks/
    build_official,
    import_official,
    official_args,
    official_loss_parts,
    run_official_test,
    unload_official,
)

from dsan_toolkit.config import sha256_file  # noqa: E402
from dsan_toolkit.manifest.builtin import load_builtin_manifest  # noqa: E402
from dsan_toolkit.testing.seeded import GENERATOR_VERSION, arrays_digest, seeded_features, seeded_state  # noqa: E402

SCRIPT_VERSION = 1
OUT_DIR = ROOT / "tests" / "fixtures" / "official"
CLIP_CONFIG_FILE = OUT_DIR / "dsan-fixture-clip.json"
CLIP_MODEL = "dsan-fixture-clip"
OFFICIAL_REPOS = {"dsanet": "lessiYin/DSANet", "vadclip": "nwpu-zxr/VadCLIP"}
DEFAULT_COMMITS = {
    "dsanet": "141740637856f75f5590ffd5fdf54f6a267a5742",
    "vadclip": "f643c9132adcc0ea2aa549568ab30c49a45f0159",
}
SEEDS = {("dsanet", "ucf"): 101, ("dsanet", "xd"): 102, ("vadclip", "ucf"): 201, ("vadclip", "xd"): 202}
FEATURE_DIM = 512
# Narrower spreads for single weights, so that the outputs stay in a useful range with random
# weights: the unnormalised distance graph multiplies the features ~5.5 times per graph layer,
# and a saturated classifier would make the MIL losses hit the BCE clamp (log 0 -> -100).
WEIGHT_SCALES = {"classifier.weight": 0.1}

# Test videos: (id, snippets, class codes, segments (code, start frame, end frame)). The ids follow
# the official naming, which the ground-truth scripts rely on ("Normal" / "_label_A" = normal).
# Segments cover the cases that matter: two per video, one past the video's end (cut in the
# frame ground truth, kept for the mAP), classes of several kinds.
TEST_VIDEOS: dict[str, list[tuple[str, int, list[str], list[tuple[str, int, int]]]]] = {
    "ucf": [
        ("Normal_Videos_901_x264", 17, ["Normal"], []),
        ("Abuse901_x264", 255, ["Abuse"], [("Abuse", 800, 3000)]),
        ("Normal_Videos_902_x264", 256, ["Normal"], []),
        ("Fighting901_x264", 300, ["Fighting"], [("Fighting", 100, 1500), ("Fighting", 2600, 4200)]),
        ("Explosion901_x264", 512, ["Explosion"], [("Explosion", 5000, 8400)]),
        ("Arson901_x264", 700, ["Arson"], [("Arson", 2000, 9000)]),
    ],
    "xd": [
        ("Fixture.A__#00-00-00_00-00-01_label_A", 17, ["A"], []),
        ("Fixture.B__#00-00-00_00-00-16_label_B1-0-0", 255, ["B1"], [("B1", 800, 3000)]),
        ("Fixture.C__#00-00-00_00-00-17_label_A", 256, ["A"], []),
        ("Fixture.D__#00-00-00_00-00-20_label_B2-G-0", 300, ["B2", "G"], [("B2", 100, 1500), ("G", 2600, 4200)]),
        ("Fixture.E__#00-00-00_00-00-34_label_B4-0-0", 512, ["B4"], [("B4", 5000, 8400)]),
        ("Fixture.F__#00-00-00_00-00-46_label_B6-B5-0", 700, ["B6", "B5"], [("B6", 2000, 6000), ("B5", 7000, 9000)]),
    ],
}
# One training batch: UCF pairs a normal half with an anomalous half (in this order); XD is one
# mixed batch with multi-label videos. T > 256 is averaged into 256 bins, T <= 256 zero-padded.
TRAIN_VIDEOS: dict[str, list[tuple[str, int, list[str]]]] = {
    "ucf": [
        ("Normal_Videos_911_x264", 300, ["Normal"]),
        ("Normal_Videos_912_x264", 131, ["Normal"]),
        ("Robbery911_x264", 700, ["Robbery"]),
        ("Shooting911_x264", 60, ["Shooting"]),
    ],
    "xd": [
        ("Fixture.T1__#00-00-00_00-00-20_label_A", 300, ["A"]),
        ("Fixture.T2__#00-00-00_00-00-09_label_B1-B2-0", 131, ["B1", "B2"]),
        ("Fixture.T3__#00-00-00_00-00-46_label_G-0-0", 700, ["G"]),
        ("Fixture.T4__#00-00-00_00-00-04_label_B5-B6-B4", 60, ["B5", "B6", "B4"]),
    ],
}


def label_text(dataset: str, codes: list[str], normal: str) -> str:
    """The label column of the official feature lists: the class (UCF); codes joined by '-' and
    padded with '0' to three (XD), ``A`` for normal videos."""
    if dataset == "ucf":
        return codes[0]
    return normal if codes == [normal] else "-".join(codes + ["0"] * (3 - len(codes)))


def video_features(seed: int, split: str, videos: list[Any]) -> dict[str, np.ndarray]:
    return {f"{split}/{v[0]}": seeded_features(seed, f"{split}/{v[0]}", v[1], FEATURE_DIM) for v in videos}


def clip_template() -> dict[str, tuple[int, ...]]:
    """Keys and shapes of the fixture CLIP's OpenAI-layout state dict (the official ``build_model`` input)."""
    import open_clip

    open_clip.add_model_config(str(CLIP_CONFIG_FILE))
    with torch.random.fork_rng(devices=[]):
        model = open_clip.create_model(CLIP_MODEL, pretrained=None)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def alias_spec(state: dict[str, torch.Tensor]) -> list[tuple[str, list[int], str]]:
    """(key, shape, source): keys holding one shared tensor (DSANet's two CLIP references) get
    the first such key as their source, so they are regenerated equal."""
    first: dict[tuple[int, tuple[int, ...], tuple[int, ...]], str] = {}
    spec = []
    for key, t in state.items():
        ident = (t.data_ptr(), tuple(t.shape), tuple(t.stride()))
        source = first.setdefault(ident, key)
        spec.append((key, list(t.shape), source))
    return spec


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An ``.npz`` with the same bytes for the same arrays: sorted entries, fixed zip timestamps,
    no compression, no pickles."""
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            arr = np.asarray(arrays[name])
            if arr.dtype == object:
                raise TypeError(f"{name}: object arrays are not allowed")
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.require(arr, requirements="C"), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())
    os.replace(tmp, path)


def has_dict(obj: Any) -> bool:
    return isinstance(obj, dict) or (isinstance(obj, (list, tuple)) and any(has_dict(x) for x in obj))


def to_json(obj: Any, indent: int = 0) -> str:
    """Sorted-key JSON, one line per object member or list item; a short list holding no object
    (a shape, a state-dict entry, a segment) stays on one line."""
    pad, inner = " " * indent, " " * (indent + 1)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{inner}{json.dumps(str(k))}: {to_json(obj[k], indent + 1)}" for k in sorted(obj)]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, (list, tuple)):
        if not has_dict(obj) and len(json.dumps(obj)) <= 120:
            return json.dumps(obj, separators=(", ", ": "))
        return "[\n" + ",\n".join(inner + to_json(x, indent + 1) for x in obj) + "\n" + pad + "]"
    return json.dumps(obj)


def write_json(path: Path, obj: Any) -> None:
    path.write_text(to_json(obj) + "\n")


def official_ground_truth(
    list_dir: Path, dataset: str, tmp: Path, feats: dict[str, np.ndarray], normal: str
) -> tuple[np.ndarray, list, list]:
    """Run VadCLIP's ``list/make_gt_{ucf,xd}.py`` and ``list/make_gt_mAP_{ucf,xd}.py`` on lists
    and annotation files written in the official formats; their ``np.save`` calls are captured
    (no file, no pickle). Returns (frame gt, gt segments, gt labels)."""
    (tmp / "list").mkdir(exist_ok=True)
    rows, ann, ann_multi = ["path,label"], [], []
    for vid, _t, codes, segs in TEST_VIDEOS[dataset]:
        path = tmp / "test" / f"{vid}__0.npy"
        path.parent.mkdir(exist_ok=True)
        np.save(path, feats[f"test/{vid}"])
        rows.append(f"{path},{label_text(dataset, codes, normal)}")
        if not segs:
            continue
        if dataset == "ucf":  # Temporal_Anomaly_Annotation.txt: name  class  s1  e1  s2  e2 (double spaces)
            pairs = [x for _, s, e in segs for x in (s, e)] + [-1, -1] * (2 - len(segs))
            ann.append("  ".join([vid, segs[0][0], *map(str, pairs)]) + "  ")
        else:  # annotations.txt: name s1 e1 ...; annotations_multiclasses.txt: name c1 s1 e1 ...
            ann.append(" ".join([vid, *(str(x) for _, s, e in segs for x in (s, e))]))
            ann_multi.append(" ".join([vid, *(str(x) for seg in segs for x in seg)]))
    csv_name = "ucf_CLIP_rgbtest.csv" if dataset == "ucf" else "xd_CLIP_rgbtest.csv"
    (tmp / "list" / csv_name).write_text("\n".join(rows) + "\n")
    if dataset == "ucf":
        (tmp / "list" / "Temporal_Anomaly_Annotation.txt").write_text("\n".join(ann) + "\n")
    else:
        (tmp / "list" / "annotations.txt").write_text("\n".join(ann) + "\n")
        (tmp / "list" / "annotations_multiclasses.txt").write_text("\n".join(ann_multi) + "\n")
    saved: dict[str, Any] = {}
    real_save = np.save
    np.save = lambda file, arr, *a, **k: saved.__setitem__(Path(str(file)).name, arr)  # type: ignore[assignment]
    sys.modules.setdefault("cv2", types.ModuleType("cv2"))  # imported, never used
    cwd = os.getcwd()
    try:
        os.chdir(tmp)
        with contextlib.redirect_stdout(io.StringIO()):
            runpy.run_path(str(list_dir / f"make_gt_{dataset}.py"), run_name="__main__")
            runpy.run_path(str(list_dir / f"make_gt_mAP_{dataset}.py"), run_name="__main__")
    finally:
        os.chdir(cwd)
        np.save = real_save  # type: ignore[assignment]
    suffix = "_ucf" if dataset == "ucf" else ""
    gt = np.asarray(saved["gt_ucf.npy" if dataset == "ucf" else "gt_xd.npy"])
    return gt, saved[f"gt_segment{suffix}.npy"], saved[f"gt_label{suffix}.npy"]


def git_commit(src: Path, default: str) -> str:
    """The commit of the checkout holding ``src`` when it is a git work tree of its own (not a
    folder inside another repository, such as an ignored folder of this one), else ``default``."""
    try:
        top = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True
        )
        if Path(top.stdout.strip()).resolve() != src.resolve().parent:
            return default
        out = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return default


def make_fixture(
    method: str, dataset: str, src: Path, list_dir: Path, commits: dict[str, str], out: Path
) -> dict[str, Any]:
    from torch.utils.data import DataLoader
    from torch.utils.data.dataloader import default_collate

    seed = SEEDS[(method, dataset)]
    info = load_builtin_manifest(dataset).info
    classes = info.classes
    normal = classes[0].code
    prompts = [c.prompt for c in classes]
    label_map = {c.code: c.prompt for c in classes}  # the official train scripts' label_map
    template = clip_template()
    clip_spec = [("clipmodel." + k, list(s), "clipmodel." + k) for k, s in template.items()]
    clip_values = seeded_state(clip_spec, seed)

    def clip_state() -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(clip_values["clipmodel." + k].copy()) for k in template}

    mods = import_official(src, clip_state=clip_state)
    if mods["method"] != method:
        raise SystemExit(f"{src} holds the {mods['method']} code, not {method}")
    args = official_args(mods, dataset)
    model = build_official(mods, args, len(classes))
    spec = alias_spec(model.state_dict())
    values = seeded_state(spec, seed, WEIGHT_SCALES)
    clip_keys = {k for k, _, _ in clip_spec}
    for key, _, source in spec:
        if key in clip_keys and source != key:
            raise RuntimeError(f"unexpected alias order: {key} <- {source}")
    model.load_state_dict({k: torch.from_numpy(v) for k, v in values.items()}, strict=True)
    after = model.state_dict()
    if any(not np.array_equal(after[k].numpy(), values[k]) for k in values):
        raise RuntimeError("the official model does not hold the seeded weights after loading them")
    state_digest = arrays_digest({source: values[source] for _, _, source in spec})  # shared tensors once

    feats = {
        **video_features(seed, "test", TEST_VIDEOS[dataset]),
        **video_features(seed, "train", TRAIN_VIDEOS[dataset]),
    }
    outputs: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        gt, gt_segments, gt_labels = official_ground_truth(list_dir, dataset, tmp, feats, normal)
        ds_mod = mods["dataset"]

        # ---- one training step (the official Dataset's resampling; the official loop's batch assembly)
        train_rows = ["path,label"]
        for vid, _t, codes in TRAIN_VIDEOS[dataset]:
            path = tmp / "train" / f"{vid}__0.npy"
            path.parent.mkdir(exist_ok=True)
            np.save(path, feats[f"train/{vid}"])
            train_rows.append(f"{path},{label_text(dataset, codes, normal)}")
        (tmp / "list" / "train.csv").write_text("\n".join(train_rows) + "\n")
        n = len(TRAIN_VIDEOS[dataset])
        if dataset == "ucf":
            normal_ds = ds_mod.UCFDataset(args.visual_length, str(tmp / "list" / "train.csv"), False, label_map, True)
            anomaly_ds = ds_mod.UCFDataset(args.visual_length, str(tmp / "list" / "train.csv"), False, label_map, False)
            nf, nl, nlen = next(iter(DataLoader(normal_ds, batch_size=len(normal_ds), shuffle=False)))
            af, al, alen = next(iter(DataLoader(anomaly_ds, batch_size=len(anomaly_ds), shuffle=False)))
            visual, texts, lengths = torch.cat([nf, af]), list(nl) + list(al), torch.cat([nlen, alen])
        else:
            train_ds = ds_mod.XDDataset(args.visual_length, str(tmp / "list" / "train.csv"), False, label_map)
            visual, texts, lengths = default_collate([train_ds[i] for i in range(n)])
            texts = list(texts)
        labels = mods["tools"].get_batch_label(texts, prompts, label_map)
        model.train()
        parts = official_loss_parts(mods, args, dataset, model, prompts, visual, labels, lengths)
        for name, value in parts.items():
            outputs[f"loss/{name}"] = np.asarray(value.detach().reshape(()).numpy(), dtype=np.float32)
        outputs["train/lengths"] = lengths.numpy().astype(np.int64)
        outputs["train/labels"] = labels.numpy().astype(np.float32)
        v64 = visual.numpy().astype(np.float64)
        outputs["train/row_sum"] = v64.sum(axis=2)
        outputs["train/row_sumsq"] = (v64 * v64).sum(axis=2)

        # ---- the official test() on the six test videos
        model.eval()
        csv_name = "ucf_CLIP_rgbtest.csv" if dataset == "ucf" else "xd_CLIP_rgbtest.csv"
        test_cls = ds_mod.UCFDataset if dataset == "ucf" else ds_mod.XDDataset
        test_ds = test_cls(args.visual_length, str(tmp / "list" / csv_name), True, label_map)
        loader = DataLoader(test_ds, batch_size=1, shuffle=False)
        res = run_official_test(mods, args, dataset, model, loader, prompts, gt, gt_segments, gt_labels)
    if not res["exact_float32"]:
        raise RuntimeError("the official test passed scores that are not float32 values")
    returned = res["returned"]
    expected_second = res["ap2"] if (method, dataset) == ("vadclip", "xd") else res["ap1"]
    if float(returned[0]) != res["auc1"] or float(returned[1]) != expected_second:
        raise RuntimeError(f"test() returned {returned}, the captured metrics differ")
    lengths_t = np.array([v[1] for v in TEST_VIDEOS[dataset]], dtype=np.int64)
    if res["prob1"].size != lengths_t.sum() or [p.shape[0] for p in res["class_probs"]] != lengths_t.tolist():
        raise RuntimeError("the official test() did not return one value per snippet")
    outputs["test/num_snippets"] = lengths_t
    outputs["test/scores"] = res["prob1"]
    outputs["test/align_scores"] = res["prob2"]
    outputs["test/class_probs"] = np.concatenate(res["class_probs"]).astype(np.float32)
    for k in ("auc1", "ap1", "auc2", "ap2"):
        outputs[f"metric/{k}"] = np.float64(res[k])
    outputs["metric/map"] = np.array(res["map"], dtype=np.float64)
    outputs["metric/iou"] = np.array(res["iou"], dtype=np.float64)
    outputs["gt/frames"] = gt.astype(np.uint8)
    if not np.array_equal(outputs["gt/frames"], gt):
        raise RuntimeError("the frame ground truth is not 0/1")
    seg_rows = [
        (i, int(s[0]), int(s[1]), str(lab))
        for i, (segs, labs) in enumerate(zip(gt_segments, gt_labels))
        for s, lab in zip(segs, labs)
    ]
    outputs["gt/segment_video"] = np.array([r[0] for r in seg_rows], dtype=np.int64)
    outputs["gt/segment_start"] = np.array([r[1] for r in seg_rows], dtype=np.int64)
    outputs["gt/segment_end"] = np.array([r[2] for r in seg_rows], dtype=np.int64)
    outputs["gt/segment_label"] = np.array([r[3] for r in seg_rows], dtype="<U16")

    out.mkdir(parents=True, exist_ok=True)
    write_npz(out / "outputs.npz", outputs)
    env = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    for pkg in ("sklearn", "scipy", "pandas", "open_clip"):
        env[pkg] = __import__(pkg).__version__
    meta = {
        "script": "scripts/make_official_fixtures.py",
        "script_version": SCRIPT_VERSION,
        "generator_version": GENERATOR_VERSION,
        "method": method,
        "dataset": dataset,
        "seed": seed,
        "official": {
            "repo": OFFICIAL_REPOS[method],
            "commit": commits[method],
            "option_file": f"src/{dataset}_option.py",
            "args": {k: v for k, v in sorted(vars(args).items())},
        },
        "ground_truth": {
            "repo": OFFICIAL_REPOS["vadclip"],
            "commit": commits["vadclip"],
            "scripts": [f"list/make_gt_{dataset}.py", f"list/make_gt_mAP_{dataset}.py"],
        },
        "clip": {
            "model": CLIP_MODEL,
            "config_file": "../" + CLIP_CONFIG_FILE.name,
            "config_sha256": sha256_file(CLIP_CONFIG_FILE),
        },
        "label_map": label_map,
        "environment": env,
        "state": {
            "num_keys": len(spec),
            "num_values": int(sum(np.prod(s) for k, s, source in spec if k == source)),
            "digest": state_digest,
            "scales": WEIGHT_SCALES,
            "spec": [[k, s, source] for k, s, source in spec],
        },
        "inputs": {
            "feature_dim": FEATURE_DIM,
            "digest": arrays_digest(feats),
            "test": [
                {
                    "id": v,
                    "num_snippets": t,
                    "labels": c,
                    "label_text": label_text(dataset, c, normal),
                    "segments": [list(s) for s in segs],
                }
                for v, t, c, segs in TEST_VIDEOS[dataset]
            ],
            "train": [
                {"id": v, "num_snippets": t, "labels": c, "label_text": label_text(dataset, c, normal)}
                for v, t, c in TRAIN_VIDEOS[dataset]
            ],
        },
        "files": {"outputs.npz": sha256_file(out / "outputs.npz")},
    }
    write_json(out / "fixture.json", meta)
    unload_official()
    return {
        "config": f"{method}-{dataset}",
        "loss": float(parts["total"].detach().sum()),
        "auc1": res["auc1"],
        "map": res["map"],
        "bytes": (out / "outputs.npz").stat().st_size + (out / "fixture.json").stat().st_size,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dsanet-src", type=Path, required=True, help="src/ of a lessiYin/DSANet checkout")
    ap.add_argument(
        "--vadclip-src",
        type=Path,
        required=True,
        help="src/ of a nwpu-zxr/VadCLIP checkout (its list/ scripts make the ground truth)",
    )
    ap.add_argument(
        "--dsanet-commit",
        default=None,
        help=f"recorded commit when src is not a git checkout (default {DEFAULT_COMMITS['dsanet'][:7]})",
    )
    ap.add_argument("--vadclip-commit", default=None, help=f"likewise (default {DEFAULT_COMMITS['vadclip'][:7]})")
    ap.add_argument(
        "--only", nargs="*", default=None, help="configurations to make, e.g. dsanet-ucf (default: all four)"
    )
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    srcs = {"dsanet": args.dsanet_src.resolve(), "vadclip": args.vadclip_src.resolve()}
    commits = {
        "dsanet": args.dsanet_commit or git_commit(srcs["dsanet"], DEFAULT_COMMITS["dsanet"]),
        "vadclip": args.vadclip_commit or git_commit(srcs["vadclip"], DEFAULT_COMMITS["vadclip"]),
    }
    list_dir = srcs["vadclip"].parent / "list"
    if not (list_dir / "make_gt_ucf.py").is_file():
        raise SystemExit(f"{list_dir} has no make_gt_ucf.py (the VadCLIP checkout's list/ folder is needed)")
    wanted = args.only or [f"{m}-{d}" for m, d in SEEDS]
    for name in wanted:
        method, dataset = name.split("-")
        row = make_fixture(method, dataset, srcs[method], list_dir, commits, args.out / name)
        print(json.dumps(row))


if __name__ == "__main__":
    main()
