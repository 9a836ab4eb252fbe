"""External clustering scores: ACC, NMI and ARI.

All three are computed from one contingency matrix (classes x clusters), built
with a single ``np.bincount``, so they cost O(N + C K) and never loop over
samples in Python. Label values may be any integers: they are only compared
for equality, so ``[7, 7, -1]`` and ``[0, 0, 1]`` are the same partition.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from scipy.optimize import linear_sum_assignment

from deepclust_jax.errors import InputError

AverageMethod = Literal["arithmetic", "geometric", "min", "max"]


def _as_labels(y: Any, name: str) -> np.ndarray:
  """Returns ``y`` as a 1-D integer array, or raises :class:`InputError`."""
  y = np.asarray(y)
  if y.ndim != 1:
    raise InputError(f"{name} must be a 1-D array of labels, got shape {y.shape}")
  if y.size == 0:
    raise InputError(f"{name} is empty; scores need at least one sample")
  if not (np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_):
    raise InputError(f"{name} must hold integer labels, got dtype {y.dtype}")
  return y


def contingency_matrix(y_true: Any, y_pred: Any) -> np.ndarray:
  """Counts ``n_ij`` of samples in class i and cluster j.

  Rows are the sorted distinct values of ``y_true``, columns those of
  ``y_pred``; classes or clusters that no sample uses get no row or column.

  Args:
    y_true: (N,) integer class labels.
    y_pred: (N,) integer cluster labels.

  Returns:
    (C, K) int64 matrix whose entries sum to N.

  Raises:
    InputError: if the labels are not 1-D integer arrays of one length N >= 1.

  Example:
    >>> contingency_matrix([0, 0, 1], [5, 3, 3])
    array([[1, 1],
           [1, 0]])
  """
  y_true, y_pred = _as_labels(y_true, "y_true"), _as_labels(y_pred, "y_pred")
  if y_true.shape != y_pred.shape:
    raise InputError(f"y_true and y_pred must have the same length, got "
                     f"{y_true.shape[0]} and {y_pred.shape[0]}")
  classes, i = np.unique(y_true, return_inverse=True)
  clusters, j = np.unique(y_pred, return_inverse=True)
  num_clusters = clusters.size
  counts = np.bincount(i * num_clusters + j, minlength=classes.size * num_clusters)
  return counts.reshape(classes.size, num_clusters)


def acc(y_true: Any, y_pred: Any) -> float:
  """Clustering accuracy under the best one-to-one matching of clusters to classes.

  ACC = max_m (1/N) sum_n 1[y_true_n = m(y_pred_n)], over injective maps m
  between clusters and classes, solved as a linear assignment (Hungarian
  algorithm) on the contingency matrix. When the numbers differ, the surplus
  clusters (or classes) stay unmatched and their samples count as errors.

  Reference: Xie, Girshick and Farhadi, "Unsupervised Deep Embedding for
  Clustering Analysis", ICML 2016, eq. (10); Kuhn, "The Hungarian method",
  1955.

  Args:
    y_true: (N,) integer class labels.
    y_pred: (N,) integer cluster labels.

  Returns:
    Accuracy in [0, 1].

  Example:
    >>> acc([0, 0, 1, 1], [1, 1, 0, 0])
    1.0
  """
  return _acc(contingency_matrix(y_true, y_pred))


def _acc(counts: np.ndarray) -> float:
  """ACC from a contingency matrix (see :func:`acc`)."""
  rows, cols = linear_sum_assignment(counts, maximize=True)
  return float(counts[rows, cols].sum() / counts.sum())


def _entropy(counts: np.ndarray) -> float:
  """Shannon entropy (nats) of the distribution proportional to ``counts``."""
  p = counts[counts > 0] / counts.sum()
  return float(-np.sum(p * np.log(p)))


# The normalisations of NMI, named as in scikit-learn's ``average_method``.
_MEANS = {
    "arithmetic": lambda a, b: (a + b) / 2,
    "geometric": lambda a, b: float(np.sqrt(a * b)),
    "min": min,
    "max": max,
}


def nmi(y_true: Any, y_pred: Any, average_method: AverageMethod = "arithmetic") -> float:
  """Normalized mutual information between classes and clusters.

  NMI = I(Y; C) / mean(H(Y), H(C)), with I(Y; C) = sum_ij p_ij
  log(p_ij / (p_i p_j)) from the contingency matrix and ``mean`` the
  arithmetic, geometric, min or max of the two entropies. As in scikit-learn,
  two single-cluster labelings score 1 and otherwise zero mutual information
  scores 0.

  Reference: Strehl and Ghosh, "Cluster Ensembles", JMLR 2002 (geometric);
  Vinh, Epps and Bailey, JMLR 2010, for the other normalisations.

  Args:
    y_true: (N,) integer class labels.
    y_pred: (N,) integer cluster labels.
    average_method: how H(Y) and H(C) are averaged.

  Returns:
    NMI in [0, 1].

  Example:
    >>> round(nmi([0, 0, 1, 1], [1, 1, 0, 0]), 6)
    1.0
  """
  if average_method not in _MEANS:
    raise InputError(f"unknown average_method {average_method!r}; use one of "
                     f"{', '.join(map(repr, _MEANS))}")
  return _nmi(contingency_matrix(y_true, y_pred), average_method)


def _nmi(counts: np.ndarray, average_method: AverageMethod) -> float:
  """NMI from a contingency matrix (see :func:`nmi`)."""
  if counts.shape == (1, 1):
    return 1.0
  n = counts.sum()
  rows, cols = counts.sum(axis=1), counts.sum(axis=0)
  i, j = np.nonzero(counts)
  n_ij = counts[i, j].astype(np.float64)
  mi = np.sum(n_ij / n * (np.log(n_ij) + np.log(n) - np.log(rows[i]) - np.log(cols[j])))
  h_true, h_pred = _entropy(rows), _entropy(cols)
  # 0 <= I <= min(H); rounding can step outside, e.g. I = 1e-17 for one class.
  mi = min(max(float(mi), 0.0), h_true, h_pred)
  if mi == 0.0:
    return 0.0
  return mi / _MEANS[average_method](h_true, h_pred)


def ari(y_true: Any, y_pred: Any) -> float:
  """Adjusted Rand index: the Rand index corrected for chance.

  With a_i, b_j the row and column sums of the contingency matrix n_ij and
  comb2(m) = m (m - 1) / 2,
  ARI = (sum_ij comb2(n_ij) - E) / ((sum_i comb2(a_i) + sum_j comb2(b_j)) / 2 - E),
  E = sum_i comb2(a_i) sum_j comb2(b_j) / comb2(N). The denominator is zero
  only when both labelings are the same trivial partition (one cluster, or
  all singletons), which scores 1.

  Reference: Hubert and Arabie, "Comparing partitions", Journal of
  Classification, 1985.

  Args:
    y_true: (N,) integer class labels.
    y_pred: (N,) integer cluster labels.

  Returns:
    ARI, at most 1; about 0 for random labels, can be negative.

  Example:
    >>> ari([0, 0, 1, 1], [1, 1, 0, 0])
    1.0
  """
  return _ari(contingency_matrix(y_true, y_pred))


def _comb2(m: np.ndarray) -> float:
  """Sum of m (m - 1) / 2 over the entries, in float64 (exact below 2**53)."""
  m = np.asarray(m, dtype=np.float64)
  return float(np.sum(m * (m - 1) / 2))


def _ari(counts: np.ndarray) -> float:
  """ARI from a contingency matrix (see :func:`ari`)."""
  index = _comb2(counts)
  sum_rows, sum_cols = _comb2(counts.sum(axis=1)), _comb2(counts.sum(axis=0))
  total = _comb2(counts.sum())
  expected = sum_rows * sum_cols / total if total > 0 else 0.0
  max_index = (sum_rows + sum_cols) / 2
  if max_index == expected:
    return 1.0
  return (index - expected) / (max_index - expected)


def evaluate(y_true: Any, y_pred: Any) -> dict[str, float]:
  """ACC, NMI (arithmetic) and ARI of a clustering, as Python floats.

  Args:
    y_true: (N,) integer class labels.
    y_pred: (N,) integer cluster labels.

  Returns:
    ``{"acc": ..., "nmi": ..., "ari": ...}``.

  Example:
    >>> {k: round(v, 3) for k, v in evaluate([0, 0, 1, 1], [0, 0, 0, 1]).items()}
    {'acc': 0.75, 'nmi': 0.344, 'ari': 0.0}
  """
  return from_contingency(contingency_matrix(y_true, y_pred))


def from_contingency(counts: Any) -> dict[str, float]:
  """ACC, NMI (arithmetic) and ARI from a (classes, clusters) count matrix.

  Rows and columns without samples are ignored, so a table counted on the
  device over all K clusters and C classes gives the same scores as
  :func:`evaluate` on the labels.

  Example:
    >>> {k: round(v, 3) for k, v in from_contingency([[2, 0, 0], [1, 1, 0]]).items()}
    {'acc': 0.75, 'nmi': 0.344, 'ari': 0.0}
  """
  counts = np.asarray(counts)
  counts = counts[counts.sum(axis=1) > 0][:, counts.sum(axis=0) > 0]
  return {"acc": _acc(counts), "nmi": _nmi(counts, "arithmetic"), "ari": _ari(counts)}
