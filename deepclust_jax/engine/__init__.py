"""The training engine: methods as pure pieces, one loop for all of them."""

from deepclust_jax.engine.method import (Batch, Data, FitPhase, Method, Phase, SGDPhase,
                                         Update, gather, stateless)
from deepclust_jax.engine.steps import (criteria_in_chunks, epoch_batches,
                                        predict_in_chunks, sgd_epoch)
from deepclust_jax.engine.loop import (TrainOptions, TrainResult, as_data, budget,
                                       check_phases, collapsed_runs, diagnostic_warnings,
                                       join_processes, place, run_keys, runs_mesh,
                                       select_run, train, writes)

__all__ = [
    "Batch", "Data", "FitPhase", "Method", "Phase", "SGDPhase", "TrainOptions",
    "TrainResult", "Update", "as_data", "budget", "check_phases", "collapsed_runs",
    "criteria_in_chunks", "diagnostic_warnings", "epoch_batches", "gather", "join_processes",
    "place", "predict_in_chunks", "run_keys", "runs_mesh", "select_run", "sgd_epoch",
    "stateless", "train", "writes",
]
