"""Training and evaluation of the registered methods on feature stores (docs/training.md)."""

from .checkpoint import RunConfig, load_weights, save_weights
from .evaluate import EvalOptions
from .predictions import PredictionSet, predict_testset, read_predictions, write_predictions
from .run import TrainOptions, TrainResult, retrain_from_config, train

__all__ = [
    "EvalOptions",
    "PredictionSet",
    "RunConfig",
    "TrainOptions",
    "TrainResult",
    "load_weights",
    "predict_testset",
    "read_predictions",
    "retrain_from_config",
    "save_weights",
    "train",
    "write_predictions",
]
