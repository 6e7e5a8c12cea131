"""Metric and record key names: one spelling each.

Every producer (evaluation, training, the bench) writes these keys and every consumer (tables,
audits, the CLI) reads them from here; nothing guesses spellings. Metrics of the second
(alignment) branch are the classifier's key with :data:`ALIGN_SUFFIX`.
"""

from __future__ import annotations

# -- metrics (``dsan_toolkit.eval.evaluate_predictions``) -------------------------------------
VIDEOS = "videos"
ANOMALOUS_VIDEOS = "anomalous_videos"
FRAMES = "frames"

AUC = "auc"  # frame-level ROC AUC of the classifier score, fraction in [0, 1]
AP = "ap"  # frame-level average precision, fraction
AUC_ANOMALOUS = "auc_anomalous"  # frame AUC on the anomalous test videos only, fraction
AP_ANOMALOUS = "ap_anomalous"  # frame AP on the anomalous test videos only, fraction
ALIGN_SUFFIX = "_align"


def align(key: str) -> str:
    """The alignment-branch key of a frame metric: ``auc`` -> ``auc_align``."""
    return key + ALIGN_SUFFIX


AUC_ALIGN, AP_ALIGN, AUC_ANOMALOUS_ALIGN = align(AUC), align(AP), align(AUC_ANOMALOUS)
AP_ANOMALOUS_ALIGN = align(AP_ANOMALOUS)
FRAME_METRICS: tuple[str, ...] = (AUC, AP, AUC_ANOMALOUS, AP_ANOMALOUS)

FAR = "far"  # false alarm rate at score > 0.5 on the frames of the normal test videos, fraction
FPR_TARGETS: tuple[float, ...] = (0.01, 0.05)


def tpr_at_fpr(fpr: float) -> str:
    """The key of the true-positive rate at a false-positive rate: ``tpr@fpr0.01``."""
    return f"tpr@fpr{fpr:g}"


TPR_AT_FPR: tuple[str, ...] = tuple(tpr_at_fpr(f) for f in FPR_TARGETS)  # fractions
AUC_MACRO = "auc_macro"  # mean over anomaly classes of the per-class frame AUC, fraction
CLASS_AUC = "class_auc"  # {class code: per-class frame AUC (fraction)}: the one nested metric
ALARM_METRICS: tuple[str, ...] = (FAR, *TPR_AT_FPR)

IOU_THRESHOLDS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5)


def map_at(iou: float) -> str:
    """The key of the detection mAP at one IoU threshold: ``map@0.1`` (``map@0.75``)."""
    return f"map@{iou:g}"


MAP_AT: tuple[str, ...] = tuple(map_at(t) for t in IOU_THRESHOLDS)  # percent, as the official code prints
MAP_MEAN = "map_mean"  # mean over IOU_THRESHOLDS, percent
MAP_NORMAL_CLASS = "map_normal_class"  # the normal-class protocol the mAP was computed with (a label)
MAP_CONFIG_HASH = "map_config_hash"  # hash of the detection-mAP configuration (a label)
MAP_PROTOCOL = "map_protocol"  # the name of the detection-mAP protocol (official, corrected; a label)
FINE_GRAINED: tuple[str, ...] = (*MAP_AT, MAP_MEAN)

# -- uncertainty (``dsan_toolkit.eval.bootstrap``; the ``ci`` block of an evaluation record) --
CI = "ci"  # {n_resamples, seed, level, intervals: {metric: [lo, hi]}}
CI_RESAMPLES = "n_resamples"
CI_SEED = "seed"
CI_LEVEL = "level"
CI_INTERVALS = "intervals"

# the metrics a run can be selected on (``--select best-on-test``: the official rule)
SELECTION_METRICS: tuple[str, ...] = (AUC, AP, AUC_ALIGN, AP_ALIGN)

# -- video-level metrics (weak labels only: the validation split of ``--select best-on-val``) ----
# a video's bag score is the method's own top-k mean of its snippet scores (``Method.bag_topk``)
VIDEO_PREFIX = "video_"


def video(key: str) -> str:
    """The video-level key of a frame metric: ``auc`` -> ``video_auc``, ``ap_align`` -> ``video_ap_align``."""
    return VIDEO_PREFIX + key


VIDEO_AUC, VIDEO_AP, VIDEO_AUC_ALIGN, VIDEO_AP_ALIGN = (video(k) for k in (AUC, AP, AUC_ALIGN, AP_ALIGN))
VIDEO_METRICS: tuple[str, ...] = (VIDEO_AUC, VIDEO_AP, VIDEO_AUC_ALIGN, VIDEO_AP_ALIGN)
# the share of videos whose top-k class (argmax of the per-class bag scores) is one of their
# labels; methods with a class branch only; logged, never selected on
VIDEO_CLASS_ACCURACY = "video_class_accuracy"

# -- records (run directories, evaluation records, bench.json, stores) ------------------------
CONFIG_HASH = "config_hash"
STORE_HASH = "store_hash"  # a feature store's content hash
STORE_CONFIG_HASH = "store_config_hash"  # the hash of the config that made a store (a run's record)
MANIFEST_HASH = "manifest_hash"
PREDICTIONS_SHA256 = "predictions_sha256"
METRICS_SHA256 = "metrics_sha256"  # a run's metrics.json, as a bench records it
ARTIFACTS = "artifacts"  # relative path -> sha256 of every file an audit relies on
RESULTS = "results"  # selection label -> {"metrics", "checkpoint", ...}
SELECTED = "selected"  # the label of the model a run reports
METRICS = "metrics"
CHECKPOINT = "checkpoint"
VAL_SPLIT = "val_split"  # a run config's validation split: {"hash", "fraction", "seed", "size"}
VAL_SPLIT_FILE = "val_split.json"  # the split a best-on-val run used, in its run directory
STORE_ATTR_CONFIG_HASH = "config_hash"  # the store's own attribute holding its config hash


def checkpoint_sha256(label: str) -> str:
    """bench.json's key for the sha256 of a run's checkpoint of selection ``label``."""
    return f"checkpoint_sha256:{label}"


def predictions_sha256(label: str) -> str:
    """bench.json's key for the sha256 of a run's predictions of selection ``label``."""
    return f"{PREDICTIONS_SHA256}:{label}"
