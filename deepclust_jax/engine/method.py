"""How a clustering method is described to the engine: pure pieces, no loops.

A :class:`Method` is an ``init`` function, an ordered tuple of phases and a
``predict`` function. The engine (:mod:`deepclust_jax.engine.loop`) runs the
phases in order, for many seeds at once under ``vmap``; a method file never
writes a training loop.

Every run carries two pytrees: ``params``, which gradients move, and
``state``, which they do not (running statistics, BatchNorm statistics, a
neighbour graph). Both have fixed shapes from ``init``; both are vmapped over
runs, checkpointed and restored exactly, and both reach every function below.

Data is a mapping of per-sample arrays with a leading axis N: ``{"x": x}``,
plus whatever a method adds (k-means labels, neighbour indices). ``x`` is
(N, D); image methods reshape it with the per-sample ``shape`` that ``build``
receives.

Two kinds of phase cover every method of the library:

* :class:`SGDPhase`: epochs of mini-batch steps, each epoch one compiled
  ``lax.scan``. A step builds the batch (``batch``; by default every data
  array gathered at the step's indices) and applies its :class:`Update` s in
  order, each a gradient step on its own loss with its own optimiser, the
  later ones seeing the parameters the earlier ones produced.
* :class:`FitPhase`: one full-data, non-gradient update of params and state,
  e.g. EM for a GMM or k-means on the codes to initialise the centroids.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Union

import jax
import optax

Params = Any
State = Any
Data = Mapping[str, jax.Array]
Batch = Any
Terms = Mapping[str, jax.Array]
LossFn = Callable[[Params, State, Batch, jax.Array], tuple[jax.Array, tuple[Terms, State]]]
BatchFn = Callable[[jax.Array, Data, State, jax.Array], Batch]
FitFn = Callable[[Params, State, Data, jax.Array], tuple[Params, State, Terms]]
PredictFn = Callable[[Params, State, jax.Array], jax.Array]
CriteriaFn = Callable[[Params, State, jax.Array, jax.Array], Terms]
EncodeFn = Callable[[Params, State, jax.Array], jax.Array]
CentroidsFn = Callable[[Params, State], jax.Array]
LabelSignalsFn = Callable[[Params, State, jax.Array], dict[str, jax.Array]]
DiagnosticsFn = Callable[[Params, State, jax.Array], dict[str, jax.Array]]
Optimizer = Union[optax.GradientTransformation, Callable[[int], optax.GradientTransformation]]


def gather(idx: jax.Array, data: Data, state: State, key: jax.Array) -> Batch:
  """The default batch: every data array at the step's indices."""
  del state, key
  return {name: array[idx] for name, array in data.items()}


def stateless(loss: Callable[[Params, Batch, jax.Array], tuple[jax.Array, Terms]]) -> LossFn:
  """Adapts ``loss(params, batch, key) -> (loss, terms)`` to a :data:`LossFn`.

  For losses that neither read nor write the run's state.
  """

  def full(params, state, batch, key):
    value, terms = loss(params, batch, key)
    return value, (terms, state)

  return full


@dataclasses.dataclass(frozen=True)
class Update:
  """One gradient step on a batch.

  Attributes:
    loss: ``loss(params, state, batch, key) -> (loss, (terms, state))``;
      ``terms`` maps names to scalars that are logged (mean over an epoch's
      steps), the returned state replaces the run's state.
    optimizer: an optax transformation, or a function of the number of steps
      per epoch returning one (for schedules counted in epochs). Its state is
      created at the start of the phase and kept across the phase's epochs.
  """

  loss: LossFn
  optimizer: Optimizer

  def tx(self, steps_per_epoch: int) -> optax.GradientTransformation:
    """The optimiser for epochs of ``steps_per_epoch`` steps."""
    if isinstance(self.optimizer, optax.GradientTransformation):
      return self.optimizer
    return self.optimizer(steps_per_epoch)


@dataclasses.dataclass(frozen=True)
class SGDPhase:
  """Epochs of mini-batch gradient steps.

  Attributes:
    name: shown in logs and checkpoints.
    updates: applied in order on every batch. The logged ``"loss"`` is the sum
      of their losses; their terms are logged side by side (names must differ).
    epochs: ordinary epochs.
    batch_size: samples per step. The last partial batch of each epoch is
      dropped; the permutation changes every epoch, so every sample is seen.
    average: run one more epoch of ordinary steps and set the parameters to
      the mean of the per-step snapshots (the CM paper's averaging epoch).
    batch: ``batch(idx, data, state, key) -> batch``, built on the device from
      the step's indices (gathers of side arrays, augmentation); defaults to
      :func:`gather`. Every update of the step sees the same batch.
    stop_below: stop a run's ordinary epochs once fewer than this fraction of
      its labels change between two epochs (the CM paper's Fig. 8 uses 0.001);
      a stopped run keeps its parameters while the others train, and the
      averaging epoch, if any, still runs. ``None`` trains every epoch.
  """

  name: str
  updates: tuple[Update, ...]
  epochs: int
  batch_size: int
  average: bool = False
  batch: BatchFn = gather
  stop_below: float | None = None

  @property
  def num_epochs(self) -> int:
    return self.epochs + int(self.average)


@dataclasses.dataclass(frozen=True)
class FitPhase:
  """One full-data, non-gradient update of params and state.

  Attributes:
    name: shown in logs and checkpoints.
    update: ``update(params, state, data, key) -> (params, state, terms)``; it
      must keep the structure, shapes and dtypes of params and state (checked
      before training).
  """

  name: str
  update: FitFn

  @property
  def num_epochs(self) -> int:
    return 1


Phase = Union[SGDPhase, FitPhase]


@dataclasses.dataclass(frozen=True)
class Method:
  """A clustering method as pure functions of one run.

  Attributes:
    name: registry name.
    num_clusters: K; the engine checks ``2 <= K <= N`` before training.
    init: ``init(key, data) -> (params, state)`` for one run.
    phases: run in order by the engine.
    predict: ``predict(params, state, x) -> gamma`` of shape (n, K); labels are
      its argmax. Called on chunks of rows, so it must be row-wise.
    criteria: optional ``criteria(params, state, x, gamma) -> terms`` giving
      each sample's contribution, (n,) per term; the engine sums them over
      the data in chunks after training (e.g. the CM's L_sp).
    select_by: the criterion whose lowest value picks the selected run among
      the runs whose partition is not degenerate.
    encode: optional ``encode(params, state, x) -> z`` of shape (n, p), the
      codes of methods that cluster a learned representation (row-wise, like
      ``predict``); used by estimators' ``transform`` and the 2-D maps.
    decoded_centroids: optional ``decoded_centroids(params, state) -> (K, D)``,
      the cluster centres mapped back to input space (AE-CM: the decoder
      applied to mu), drawn as images for image datasets.
    label_signals: optional ``label_signals(params, state, x) -> {name:
      labels}``, partitions of all of ``x`` ((n,) int32 each) beside the
      method's own, scored at every scoring epoch against the true labels as
      ``{name}_acc``/``{name}_nmi``/``{name}_ari`` (EDGaM and AE + k-means:
      k-means on the codes, ``kmeans``, the appendix's third tuning signal:
      does training keep the codes clusterable?). Not row-wise: it sees the
      whole data set.
    diagnostics: optional ``diagnostics(params, state, x) -> {name: scalar}``
      of the model's health, computed at every scoring epoch on the data and
      logged in the history (``record["diagnostics"]``).
    warn_below: ``{name: (threshold, hint)}``: a diagnostic below its
      threshold is a warning (progress bar, ``TrainResult.warnings``, the
      run's summary), with the hint saying what it means.
    autoencoder: the params group that the leading phases named
      ``pretrain*`` train (``None``: the method pretrains nothing). The engine
      saves it for every run when those phases end, and can start a run from
      a saved one, skipping them (``train(..., pretrained=...)``).
  """

  name: str
  num_clusters: int
  init: Callable[[jax.Array, Data], tuple[Params, State]]
  phases: tuple[Phase, ...]
  predict: PredictFn
  criteria: CriteriaFn | None = None
  select_by: str | None = None
  encode: EncodeFn | None = None
  decoded_centroids: CentroidsFn | None = None
  label_signals: LabelSignalsFn | None = None
  diagnostics: DiagnosticsFn | None = None
  warn_below: Mapping[str, tuple[float, str]] = dataclasses.field(default_factory=dict)
  autoencoder: str | None = None

  @property
  def pretrain_phases(self) -> int:
    """How many leading phases pretrain the ``autoencoder`` group (0 without one)."""
    if self.autoencoder is None:
      return 0
    count = 0
    while count < len(self.phases) and self.phases[count].name.startswith("pretrain"):
      count += 1
    return count

  @property
  def num_epochs(self) -> int:
    return sum(phase.num_epochs for phase in self.phases)
