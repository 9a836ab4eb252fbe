"""scikit-learn estimators for every method of the registry.

``DeepClusterer(method="aecm", n_clusters=10, alpha=13.0)`` fits any registered
method on an (N, D) array. ``estimators.AECM``, ``estimators.CM``,
``estimators.KMeans``, ... are the same with the method fixed and every field
of the method's config as an explicit keyword argument (what ``get_params``,
``clone`` and grid searches need); they are generated from the registry at
import, and :func:`estimator_class` makes one for a method registered later.

Training is the engine's (:func:`deepclust_jax.engine.train`): ``n_runs``
seeds under ``vmap``, and the run handed on is the one the method's selection
criterion picks (the CM and AE-CM: lowest L_sp = E2 + E3, Boubekki et al.
2021, section 5.2.4), never a collapsed run unless every run collapsed.
``random_state=s`` is the command line's ``--seed s``. Input checks and errors
are the command line's: :class:`~deepclust_jax.errors.InputError` and
:class:`~deepclust_jax.errors.ConfigError`, both ``ValueError`` s.

The scikit-learn checks that do not apply, and why, are listed in
:data:`EXPECTED_FAILED_CHECKS`.

Example:
  >>> import numpy as np
  >>> from deepclust_jax import estimators
  >>> x = np.random.default_rng(0).normal(size=(60, 2)) + np.repeat([[0, 0], [6, 6]], 30, 0)
  >>> est = estimators.KMeans(n_clusters=2, random_state=0).fit(x)
  >>> est.labels_.shape, est.predict(x[:3]).shape, est.predict_proba(x[:3]).shape
  ((60,), (3,), (3, 2))
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.utils import Tags, TransformerTags
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from deepclust_jax import engine, methods
from deepclust_jax.errors import DeepclustError, InputError, unknown
from deepclust_jax.model import Model
from deepclust_jax.pipeline import check_pretrained, data_digest

_K1 = ("fits with n_clusters=1, which is refused (2 <= K <= N is checked before "
       "training, as on the command line: one cluster is no clustering); "
       "tests/test_estimators.py checks the same property with K = 2")
_WORDING = "X is refused as on the command line, but the check wants scikit-learn's wording: "

# scikit-learn's checks (sklearn.utils.estimator_checks) that the estimators fail
# on purpose, with the reason; pass it as ``expected_failed_checks`` to
# ``check_estimator`` or ``parametrize_with_checks``.
EXPECTED_FAILED_CHECKS = {
    "check_dont_overwrite_parameters": _K1,
    "check_methods_subset_invariance": _K1,
    "check_fit2d_1sample": _K1,
    "check_fit2d_1feature": _K1,
    "check_fit2d_predict1d": _K1,
    "check_complex_data": _WORDING + "'Complex data not supported', ours 'data must be "
                          "numeric (real numbers), got dtype complex128'",
    "check_estimators_empty_data_messages": _WORDING + "'0 feature(s) (shape=(12, 0)) while "
                                            "a minimum of 1 is required', ours 'data is "
                                            "empty: shape (12, 0)'",
    "check_estimators_nan_inf": _WORDING + "it looks for a lowercase 'inf', ours says 'data "
                                "contains Inf values' (NaN passes)",
    "check_dtype_object": "object arrays are refused ('data must be numeric'), as on the "
                          "command line; the check wants numbers stored as objects accepted",
}

# Registry names whose class name is not simply the upper-cased name.
_CLASS_NAMES = {"kmeans": "KMeans", "vade": "VaDE", "edgam": "EDGaM", "ae_kmeans": "AEKMeans"}
_CLASSES: dict[str, type] = {}


def _fields(method: str) -> dict[str, Any]:
  """The config fields of ``method`` but K (``n_clusters``), with their defaults."""
  return {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
          for f in dataclasses.fields(methods.get(method).config) if f.name != "num_clusters"}


def _dense(x: Any) -> Any:
  """Refuses sparse matrices with a message that says so (check_data would see a 0-D array)."""
  if scipy.sparse.issparse(x):
    raise InputError("sparse X is not supported; pass a dense array (X.toarray())")
  return x


def _has_codes(estimator: DeepClusterer) -> bool:
  """Whether ``transform`` exists: the method has an ``encode``."""
  if hasattr(estimator, "model_"):
    return estimator.model_.has_codes
  # Unfitted: build for a stand-in shape (building computes nothing).
  try:
    shape = tuple(estimator.sample_shape or (2,))
    return methods.get(estimator.method).build(estimator._config(), shape).encode is not None
  except DeepclustError:
    return False  # an invalid configuration: fit says why


class DeepClusterer(ClusterMixin, BaseEstimator):
  """Any registered clustering method as a scikit-learn estimator.

  Args:
    method: registry name (``deepclust methods`` lists them).
    n_clusters: K.
    n_runs: independent seeds trained together; the method's selection
      criterion picks the run kept (the first non-collapsed run if it has
      none).
    random_state: the seed s, as ``--seed s``: run r uses ``fold_in(key(s), r)``;
      None draws s from numpy's global generator.
    sample_shape: the shape of one sample, e.g. ``(28, 28, 1)`` for image
      methods (rows of X are flattened row-major); None is ``(D,)``.
    pretrained: a run directory (``deepclust fit ... --out DIR``) of an
      autoencoder method fitted on the same X and network: its pretrained
      autoencoders replace this method's pretraining (``--pretrained``).
    verbose: show training's progress bar (phase, loss, time left) and its
      warnings; silent by default, as scikit-learn's estimators are.
    **config: fields of the method's config (``epochs``, ``alpha``, ...).

  Attributes:
    labels_: cluster of each training sample.
    model_: the kept run as a :class:`~deepclust_jax.model.Model`.
    selected_run_: its index among the runs.
    collapsed_runs_: runs that left a cluster empty.
    n_features_in_: D.
  """

  def __init__(self, method: str = "kmeans", n_clusters: int = 8, *, n_runs: int = 1,
               random_state: Any = None, sample_shape: Sequence[int] | None = None,
               pretrained: str | None = None, verbose: bool | int = False, **config: Any):
    self.method = method
    self._assign(n_clusters, n_runs, random_state, sample_shape, pretrained, verbose, config)

  def _assign(self, n_clusters, n_runs, random_state, sample_shape, pretrained, verbose,
              config) -> None:
    self.n_clusters = n_clusters
    self.n_runs = n_runs
    self.random_state = random_state
    self.sample_shape = sample_shape
    self.pretrained = pretrained
    self.verbose = verbose
    # Which attributes are config fields, for get_params of the generic class.
    self._config_keys = tuple(config)
    for key, value in config.items():
      setattr(self, key, value)

  def get_params(self, deep: bool = True) -> dict[str, Any]:
    params = super().get_params(deep)
    params.update({k: getattr(self, k) for k in self._config_keys})
    return params

  def set_params(self, **params: Any) -> DeepClusterer:
    own = set(super().get_params(deep=False))
    if "method" in params and "method" in own:
      self.method = params.pop("method")
    fields = _fields(self.method)
    for key, value in params.items():
      if key not in own and key not in fields:
        raise unknown(f"{self.method} estimator parameter", key, own | set(fields))
      setattr(self, key, value)
      if key in fields and key not in self._config_keys:
        self._config_keys += (key,)
    return self

  def _config(self, num_samples: int | None = None, shape: Any = None) -> Any:
    """The method's config: its defaults (scaled to the data when it is given),
    then the config fields set here."""
    overrides = {k: getattr(self, k) for k in self._config_keys}
    return methods.resolve(self.method, overrides={**overrides,
                                                     "num_clusters": self.n_clusters},
                           num_samples=num_samples, shape=shape)

  def _seed(self) -> int:
    if isinstance(self.random_state, numbers.Integral):
      return int(self.random_state)
    return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

  def fit(self, X: Any, y: Any = None) -> DeepClusterer:
    """Trains ``n_runs`` runs on X, (N, D), and keeps the selected one; y is ignored."""
    del y  # unsupervised; accepted so that Pipelines can pass it
    if (not isinstance(self.n_runs, numbers.Integral) or isinstance(self.n_runs, bool)
        or self.n_runs < 1):
      raise InputError(f"n_runs={self.n_runs!r} must be a positive integer")
    x = engine.as_data(_dense(X))["x"]
    shape = tuple(self.sample_shape) if self.sample_shape is not None else x.shape[1:]
    if math.prod(shape) != x.shape[1]:
      raise InputError(f"sample_shape={shape} does not have the {x.shape[1]} features of X")
    config = self._config(x.shape[0], shape)
    method = methods.get(self.method).build(config, shape)
    if self.pretrained is not None:
      check_pretrained(self.pretrained, method, method=self.method, runs=self.n_runs,
                       network=config.network(), data_sha256=data_digest(np.asarray(x)))
    options = engine.TrainOptions(runs=self.n_runs, seed=self._seed(),
                                  progress=bool(self.verbose))
    result = engine.train(method, x, options=options, pretrained=self.pretrained)
    self.model_ = Model.from_result(self.method, config, shape, result)
    self.selected_run_ = self.model_.run
    self.labels_ = result.labels[self.selected_run_]
    self.collapsed_runs_ = list(result.collapsed)
    self.n_features_in_ = x.shape[1]
    return self

  def predict_proba(self, X: Any) -> np.ndarray:
    """Responsibilities gamma, (n, K)."""
    check_is_fitted(self)
    return self.model_.predict_proba(_dense(X))

  def predict(self, X: Any) -> np.ndarray:
    """Cluster labels, (n,)."""
    return self.predict_proba(X).argmax(-1)

  @available_if(_has_codes)
  def transform(self, X: Any) -> np.ndarray:
    """The codes z, (n, p), of methods that cluster a learned representation."""
    check_is_fitted(self)
    return self.model_.transform(_dense(X))

  @available_if(_has_codes)
  def fit_transform(self, X: Any, y: Any = None) -> np.ndarray:
    """Fits, then returns the codes of X."""
    return self.fit(X, y).transform(X)

  def __sklearn_tags__(self) -> Tags:
    tags = super().__sklearn_tags__()
    if _has_codes(self):
      # float32 X gives float32 codes; float64 X too (JAX computes in float32).
      tags.transformer_tags = TransformerTags(preserves_dtype=["float32"])
    return tags


def estimator_class(name: str) -> type[DeepClusterer]:
  """The estimator class of registered method ``name``, e.g. ``AECM`` for "aecm".

  Its ``__init__`` takes ``n_clusters``, ``n_runs``, ``random_state``,
  ``sample_shape`` and every config field with the config's default, all
  explicit in its signature (scikit-learn reads parameters from there).
  """
  if name in _CLASSES:
    return _CLASSES[name]
  spec = methods.get(name)
  defaults = _fields(name)

  def __init__(self, n_clusters=8, *, n_runs=1, random_state=None, sample_shape=None,
               pretrained=None, verbose=False, **config):
    for key in config:
      if key not in defaults:
        raise unknown(f"{name} config key", key, defaults)
    self._assign(n_clusters, n_runs, random_state, sample_shape, pretrained, verbose,
                 {**defaults, **config})

  own = [p for p in inspect.signature(DeepClusterer.__init__).parameters.values()
         if p.name not in ("method", "config")]
  __init__.__signature__ = inspect.Signature(
      own + [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v)
             for k, v in defaults.items()])
  class_name = _CLASS_NAMES.get(name, name.upper())
  doc = (f"{spec.summary}.\n\nThe {name!r} method as a scikit-learn estimator: "
         f":class:`DeepClusterer` with ``method={name!r}``; the fields of "
         f"``{spec.config.__name__}`` ({', '.join(defaults)}) are keyword arguments.")
  cls = type(class_name, (DeepClusterer,), {
      "__init__": __init__, "__doc__": doc, "__module__": __name__,
      "__qualname__": class_name, "method": name})
  _CLASSES[name] = globals()[class_name] = cls
  return cls


for _name in methods.names():
  estimator_class(_name)

__all__ = ["DeepClusterer", "EXPECTED_FAILED_CHECKS", "estimator_class",
           *(cls.__name__ for cls in _CLASSES.values())]
