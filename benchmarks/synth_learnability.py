"""How visible are the synthetic anomalies to a RANDOM-INIT tiny CLIP (dsan-tiny)?

Renders the default `dsan synth` dataset (no encoding), embeds every 12th frame resized to
224x224 with the random tiny CLIP, and reports frame-level AUCs on the test videos:
- distance of a frame's (unit-norm) feature to the mean of normal training frames;
- a linear probe (standardised logistic regression) trained on training frames.
Usage: python benchmarks/synth_learnability.py [--clip-seed 0] [--step 12]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from dsan_toolkit.clip import TINY_MODEL, create_clip
from dsan_toolkit.datasets.synth import SynthConfig, plan_dataset, render_video


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip-seed", type=int, default=0)
    ap.add_argument("--step", type=int, default=12, help="embed every STEP-th frame")
    args = ap.parse_args()
    cfg = SynthConfig()
    bundle = create_clip(TINY_MODEL, seed=args.clip_seed)
    mean = torch.tensor(bundle.info.mean).view(1, 3, 1, 1)
    std = torch.tensor(bundle.info.std).view(1, 3, 1, 1)
    X: dict[str, list] = {"train": [], "test": []}
    Y: dict[str, list] = {"train": [], "test": []}
    L: dict[str, list] = {"train": [], "test": []}
    for v in plan_dataset(cfg):
        idx = np.arange(0, v.num_frames, args.step)
        x = torch.from_numpy(render_video(cfg, v)[idx]).permute(0, 3, 1, 2).float() / 255.0
        x = torch.nn.functional.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
        with torch.no_grad():
            f = torch.nn.functional.normalize(bundle.model.encode_image((x - mean) / std), dim=-1)
        lab = np.zeros(v.num_frames, int)
        for s, e in v.events:
            lab[s:e] = 1
        X[v.split].append(f.numpy())
        Y[v.split].append(lab[idx])
        L[v.split].append(np.full(len(idx), v.label))
    Xa = {k: np.concatenate(v) for k, v in X.items()}
    Ya = {k: np.concatenate(v) for k, v in Y.items()}
    La = {k: np.concatenate(v) for k, v in L.items()}
    mu = Xa["train"][Ya["train"] == 0].mean(0)
    dist = np.linalg.norm(Xa["test"] - mu, axis=1)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.1)).fit(Xa["train"], Ya["train"])
    lin = probe.decision_function(Xa["test"])
    print(f"tiny CLIP seed {args.clip_seed}, every {args.step}th frame\n")
    print("| test frames | distance-to-normal AUC | linear-probe AUC |")
    print("| --- | ---: | ---: |")
    print(f"| all | {roc_auc_score(Ya['test'], dist):.3f} | {roc_auc_score(Ya['test'], lin):.3f} |")
    for c in cfg.classes:
        sel = ((La["test"] == c) & (Ya["test"] == 1)) | (Ya["test"] == 0)
        print(
            f"| {c} vs normal | {roc_auc_score(Ya['test'][sel], dist[sel]):.3f} | "
            f"{roc_auc_score(Ya['test'][sel], lin[sel]):.3f} |"
        )


if __name__ == "__main__":
    main()
