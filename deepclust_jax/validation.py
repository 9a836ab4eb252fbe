"""Checks on user data, made before anything is compiled.

A wrong shape or a NaN found here gets a one-line message; found inside XLA it
would be a stack trace or, worse, silently wrong clusters. Under ``jit`` or
``vmap`` the values of an array are unknown, so only its shape is checked.
"""

from __future__ import annotations

import numbers
from typing import Any

import jax
import numpy as np

from deepclust_jax.errors import InputError


def check_num_clusters(num_clusters: Any, num_samples: int) -> None:
  """Raises :class:`InputError` unless K is an integer with ``2 <= K <= N``."""
  if not isinstance(num_clusters, numbers.Integral) or isinstance(num_clusters, bool):
    raise InputError(f"number of clusters K must be an integer, got {num_clusters!r}")
  if num_clusters < 2:
    raise InputError(f"number of clusters K={num_clusters} must be at least 2")
  if num_clusters > num_samples:
    raise InputError(f"number of clusters K={num_clusters} is larger than the number "
                     f"of samples N={num_samples}")


def check_data(x: Any, num_clusters: int | None = None) -> Any:
  """Returns ``x`` as a floating (N, D) array, or raises :class:`InputError`.

  Integer input is promoted to float32; float64 stays float64. A traced array
  is returned as it is after the shape checks.

  Args:
    x: array-like data, one sample per row.
    num_clusters: K, checked to satisfy ``2 <= K <= N`` when given.

  Example:
    >>> check_data([[0, 1], [1, 0]], num_clusters=2).dtype
    dtype('float32')
  """
  if not isinstance(x, jax.core.Tracer):
    try:
      x = np.asarray(x)
    except Exception as e:  # ragged lists and the like
      raise InputError(f"data cannot be read as an array: {e}") from e
  if x.ndim != 2:
    raise InputError(f"data must be a 2-D array (samples x features), got shape {x.shape}")
  if x.shape[0] == 0 or x.shape[1] == 0:
    raise InputError(f"data is empty: shape {x.shape}")
  if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)
          or x.dtype == np.bool_):
    raise InputError(f"data must be numeric (real numbers), got dtype {x.dtype}")
  if num_clusters is not None:
    check_num_clusters(num_clusters, x.shape[0])
  floating = np.issubdtype(x.dtype, np.floating)
  x = x.astype(np.promote_types(x.dtype, np.float32) if floating else np.float32)
  if isinstance(x, jax.core.Tracer):
    return x
  finite = np.isfinite(x)
  if not finite.all():
    rows = np.flatnonzero(~finite.all(axis=1))
    kind = "NaN" if np.isnan(x[rows[0]]).any() else "Inf"
    raise InputError(f"data contains {kind} values in {rows.size} row(s), first at row "
                     f"{rows[0]}; remove or impute them before clustering")
  compute = jax.dtypes.canonicalize_dtype(x.dtype)  # float32 unless jax_enable_x64
  if compute != x.dtype:
    limit = np.finfo(compute).max
    beyond = np.abs(x) > limit
    if beyond.any():
      rows = np.flatnonzero(beyond.any(axis=1))
      raise InputError(f"data has values beyond {compute}'s range (±{limit:.3g}), in which "
                       f"it is computed: {rows.size} row(s), first at row {rows[0]} "
                       f"({x[rows[0]][beyond[rows[0]]][0]:.3g}); rescale it")
  return x
