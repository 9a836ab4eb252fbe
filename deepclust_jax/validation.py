"""Checks on user data, made on the host before anything is compiled.

A wrong shape or a NaN found here gets a one-line message; found inside XLA it
would be a stack trace or, worse, silently wrong clusters.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deepclust_jax.errors import InputError


def check_data(x: Any, num_clusters: int | None = None) -> np.ndarray:
  """Returns ``x`` as a float32 (N, D) array, or raises :class:`InputError`.

  Args:
    x: array-like data, one sample per row.
    num_clusters: K, checked to satisfy ``2 <= K <= N`` when given.

  Example:
    >>> check_data([[0.0, 1.0], [1.0, 0.0]], num_clusters=2).shape
    (2, 2)
  """
  try:
    x = np.asarray(x)
  except Exception as e:  # ragged lists and the like
    raise InputError(f"data cannot be read as an array: {e}") from e
  if x.ndim != 2:
    raise InputError(f"data must be a 2-D array (samples x features), got shape {x.shape}")
  if x.shape[0] == 0 or x.shape[1] == 0:
    raise InputError(f"data is empty: shape {x.shape}")
  if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
    raise InputError(f"data must be numeric, got dtype {x.dtype}")
  x = x.astype(np.float32, copy=False)
  finite = np.isfinite(x)
  if not finite.all():
    rows = np.flatnonzero(~finite.all(axis=1))
    kind = "NaN" if np.isnan(x[rows[0]]).any() else "Inf"
    raise InputError(f"data contains {kind} values in {rows.size} row(s), first at row "
                     f"{rows[0]}; remove or impute them before clustering")
  if num_clusters is not None:
    if num_clusters < 2:
      raise InputError(f"number of clusters K={num_clusters} must be at least 2")
    if num_clusters > x.shape[0]:
      raise InputError(f"number of clusters K={num_clusters} is larger than the number "
                       f"of samples N={x.shape[0]}")
  return x
