"""How a clustering method is described to the engine: pure pieces, no loops.

A :class:`Method` is an ``init`` function, an ordered tuple of phases and a
``predict`` function. The engine (:mod:`deepclust_jax.engine.loop`) runs the
phases in order, for many seeds at once under ``vmap``; a method file never
writes a training loop.

Two kinds of phase cover every method of the library:

* :class:`SGDPhase`: epochs of mini-batch gradient steps on a loss
  ``loss(params, x_batch, key) -> (scalar, terms)``, each epoch one compiled
  ``lax.scan``. ``average=True`` adds the CM paper's averaging epoch.
* :class:`FitPhase`: one full-batch update ``update(params, x, key) ->
  (params, terms)``, e.g. EM for a GMM or k-means on the codes to initialise
  the centroids.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Union

import jax
import optax

Params = Any
Terms = Mapping[str, jax.Array]
LossFn = Callable[[Params, jax.Array, jax.Array], tuple[jax.Array, Terms]]
UpdateFn = Callable[[Params, jax.Array, jax.Array], tuple[Params, Terms]]


@dataclasses.dataclass(frozen=True)
class SGDPhase:
  """Epochs of mini-batch gradient descent on ``loss``.

  Attributes:
    name: shown in logs and checkpoints.
    loss: ``loss(params, x_batch, key) -> (loss, terms)``; ``terms`` maps names
      to scalars that are logged every epoch (mean over the epoch's steps).
    optimizer: an optax transformation, or a function of the number of steps
      per epoch returning one (for learning-rate schedules counted in epochs).
      Its state is created fresh at the start of the phase.
    epochs: ordinary epochs.
    batch_size: samples per step. The last partial batch of each epoch is
      dropped; the permutation changes every epoch, so every sample is seen.
    average: run one more epoch of ordinary steps and set the parameters to
      the mean of the per-step snapshots (the CM paper's averaging epoch).
  """

  name: str
  loss: LossFn
  optimizer: optax.GradientTransformation | Callable[[int], optax.GradientTransformation]
  epochs: int
  batch_size: int
  average: bool = False

  @property
  def num_epochs(self) -> int:
    return self.epochs + int(self.average)

  def tx(self, steps_per_epoch: int) -> optax.GradientTransformation:
    """The optimiser for epochs of ``steps_per_epoch`` steps."""
    if isinstance(self.optimizer, optax.GradientTransformation):
      return self.optimizer
    return self.optimizer(steps_per_epoch)


@dataclasses.dataclass(frozen=True)
class FitPhase:
  """One full-batch, non-gradient update of the parameters.

  Attributes:
    name: shown in logs and checkpoints.
    update: ``update(params, x, key) -> (params, terms)`` over the whole data.
  """

  name: str
  update: UpdateFn

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
    init: ``init(key, x) -> params`` for one run (x is the whole data set).
    phases: run in order by the engine.
    predict: ``predict(params, x) -> gamma`` of shape (N, K); labels are its
      argmax. Called on chunks of data, so it must be row-wise.
    criteria: optional ``criteria(params, x, gamma) -> terms`` evaluated on the
      whole data after training (e.g. the CM's L_sp for model selection).
    select_by: name of the criterion whose lowest value picks the selected run.
  """

  name: str
  num_clusters: int
  init: Callable[[jax.Array, jax.Array], Params]
  phases: tuple[Phase, ...]
  predict: Callable[[Params, jax.Array], jax.Array]
  criteria: Callable[[Params, jax.Array, jax.Array], Terms] | None = None
  select_by: str | None = None

  @property
  def num_epochs(self) -> int:
    return sum(phase.num_epochs for phase in self.phases)
