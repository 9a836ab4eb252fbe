"""The training engine: methods as pure pieces, one loop for all of them."""

from deepclust_jax.engine.method import FitPhase, Method, Phase, SGDPhase
from deepclust_jax.engine.steps import predict_in_chunks, sgd_epoch
from deepclust_jax.engine.loop import TrainOptions, TrainResult, run_keys, train

__all__ = [
    "FitPhase", "Method", "Phase", "SGDPhase", "TrainOptions", "TrainResult",
    "predict_in_chunks", "run_keys", "sgd_epoch", "train",
]
