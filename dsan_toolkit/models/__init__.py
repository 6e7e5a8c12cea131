"""Methods for weakly-supervised video anomaly detection on CLIP feature stores.

``get_method(name)`` -> :class:`~dsan_toolkit.models.api.Method`; see :mod:`.api` for the contract
and :mod:`.sampling` for the official snippet sampling.
"""

from .api import Method, MethodPreset, OptimSpec, Prediction, TrainBatch, class_prompts, labels_from_codes
from .registry import get_method, list_methods, register_method
from .sampling import chunk_lengths, predict_video, resample_uniform, split_chunks

__all__ = [
    "Method",
    "MethodPreset",
    "OptimSpec",
    "Prediction",
    "TrainBatch",
    "class_prompts",
    "labels_from_codes",
    "get_method",
    "list_methods",
    "register_method",
    "chunk_lengths",
    "predict_video",
    "resample_uniform",
    "split_chunks",
]
