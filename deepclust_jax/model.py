"""A trained run, ready to cluster new data: :class:`Model`.

``fit`` hands one on (``report.model``), :func:`deepclust_jax.rundir.load_model`
reads one back from a run directory, and the estimators keep one as
``model_``. Params and state are numpy pytrees, so a Model pickles without
any JAX object.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from deepclust_jax import methods
from deepclust_jax.engine import Method, TrainResult, predict_in_chunks, select_run
from deepclust_jax.errors import InputError, ModelError
from deepclust_jax.validation import check_data


def chosen_run(result: TrainResult) -> int:
  """The run a fit hands on: the selected one, else the first that did not collapse.

  Methods without a selection criterion (k-means) have no selected run; the
  first run whose partition fills every cluster stands for them.
  """
  if result.selected is not None:
    return result.selected
  return select_run(np.zeros(result.labels.shape[0]), result.collapsed)


class Model:
  """One trained run of a method, ready to cluster new data.

  The method is rebuilt from its registry name and config; ``params`` and
  ``state`` are numpy pytrees, so a Model pickles and saves without any JAX
  object. The compiled functions are made on first use.

  Example:
    >>> from deepclust_jax import data, pipeline
    >>> report = pipeline.fit("kmeans", "iris", options={"progress": False})
    >>> report.model.predict(data.load("iris").x[:4]).shape
    (4,)
  """

  def __init__(self, method: str, config: Any, sample_shape: Sequence[int], params: Any,
               state: Any, run: int = 0):
    self.method = method
    self.config = config
    self.sample_shape = tuple(int(s) for s in sample_shape)
    self.params, self.state = jax.device_get((params, state))
    self.run = run
    self._compiled: dict[str, Any] = {}

  @classmethod
  def from_result(cls, method: str, config: Any, sample_shape: Sequence[int],
                  result: TrainResult) -> Model:
    """The :func:`chosen_run` of a training result."""
    run = chosen_run(result)
    params, state = jax.tree.map(lambda a: np.asarray(a)[run], (result.params, result.state))
    return cls(method, config, sample_shape, params, state, run)

  def __getstate__(self) -> dict[str, Any]:
    return {k: v for k, v in self.__dict__.items() if k != "_compiled"}

  def __setstate__(self, saved: dict[str, Any]) -> None:
    self.__dict__.update(saved, _compiled={})

  @property
  def built(self) -> Method:
    """The method's pure pieces (rebuilt, then cached)."""
    if "method" not in self._compiled:
      self._compiled["method"] = methods.get(self.method).build(self.config, self.sample_shape)
    return self._compiled["method"]

  def _rowwise(self, name: str, x: Any) -> np.ndarray:
    """``built.<name>(params, state, x)`` in chunks, compiled once per model."""
    if name not in self._compiled:
      fn = getattr(self.built, name)
      self._compiled[name] = jax.jit(
          lambda params, state, x: predict_in_chunks(fn, params, state, x))
    return np.asarray(self._compiled[name](self.params, self.state, self.check(x)))

  def check(self, x: Any) -> np.ndarray:
    """``x`` checked like training data, and for the width the model was trained on."""
    x = check_data(x)
    width = math.prod(self.sample_shape)
    if x.shape[1] != width:
      raise InputError(f"X has {x.shape[1]} features, but {self.method} is expecting "
                       f"{width} features as input")
    return x

  def predict_proba(self, x: Any) -> np.ndarray:
    """Responsibilities gamma, (n, K), of the rows of ``x``."""
    return self._rowwise("predict", x)

  def predict(self, x: Any) -> np.ndarray:
    """Cluster labels ``argmax gamma``, (n,)."""
    return self.predict_proba(x).argmax(-1)

  @property
  def has_codes(self) -> bool:
    return self.built.encode is not None

  def transform(self, x: Any) -> np.ndarray:
    """The codes z, (n, p), of methods that cluster a learned representation."""
    if not self.has_codes:
      raise ModelError(f"method {self.method!r} has no codes to transform into")
    return self._rowwise("encode", x)

  def decoded_centroids(self) -> np.ndarray | None:
    """The K centres in input space, (K, D), or None if the method has none."""
    fn = self.built.decoded_centroids
    return None if fn is None else np.asarray(jax.jit(fn)(self.params, self.state))
