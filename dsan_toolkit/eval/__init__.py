"""Evaluation metrics as pure functions: frame AUC/AP, alarm rates, per-class AUC, detection mAP,
ground truth, and their video-level bootstrap intervals.

Numbers are identical to the official VadCLIP/DSANet test code on the same predictions
(see ``docs/eval.md`` for the protocol and its options).
"""

from .alarm import false_alarm_rate, tpr_at_fpr
from .bootstrap import Interval, PairedDifference, SeedSummary, bootstrap_metrics, paired_bootstrap, seed_summary
from .classwise import class_frame_auc
from .detection_map import (
    DetectionMapConfig,
    DetectionMapResult,
    fine_grained_map,
    fine_grained_map_arrays,
    installed_float_semantics,
    resolve_normal_class,
)
from .gt import SegmentTable, frame_gt, segment_table, snippet_gt, video_frame_gt
from .metrics import evaluate_predictions, frame_ap, frame_auc
from .protocols import MAP_PROTOCOLS, detection_config_for, list_map_protocols

__all__ = [
    "Interval",
    "PairedDifference",
    "SeedSummary",
    "bootstrap_metrics",
    "paired_bootstrap",
    "seed_summary",
    "MAP_PROTOCOLS",
    "class_frame_auc",
    "detection_config_for",
    "false_alarm_rate",
    "list_map_protocols",
    "tpr_at_fpr",
    "DetectionMapConfig",
    "DetectionMapResult",
    "SegmentTable",
    "evaluate_predictions",
    "fine_grained_map",
    "fine_grained_map_arrays",
    "frame_ap",
    "frame_auc",
    "frame_gt",
    "installed_float_semantics",
    "resolve_normal_class",
    "segment_table",
    "snippet_gt",
    "video_frame_gt",
]
