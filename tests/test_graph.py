"""Nearest-neighbour graph: blocked exact knn against scikit-learn, purity, contrastive pairs."""

from __future__ import annotations

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from deepclust_jax import graph


def sklearn_knn(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
  """(distances, indices) of the k nearest other points; self is the first of k + 1."""
  distances, indices = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
  assert np.all(indices[:, 0] == np.arange(len(x)))
  return distances[:, 1:], indices[:, 1:]


@pytest.mark.parametrize("n,k,block", [(37, 1, 8), (50, 5, 16), (23, 22, 7), (16, 3, 100)])
def test_knn_matches_sklearn(n, k, block):
  """N not a multiple of the block (padding), k up to N - 1, and one block larger than N."""
  x = np.random.default_rng(n).normal(size=(n, 5))
  with jax.enable_x64(True):
    nbrs = graph.knn(jnp.asarray(x), k, block=block)
  assert nbrs.shape == (n, k) and nbrs.dtype == jnp.int32
  np.testing.assert_array_equal(nbrs, sklearn_knn(x, k)[1])


def test_knn_float32_distances_match_sklearn():
  """In float32 near-ties may swap, so compare the neighbours' distances, not their order."""
  x = np.random.default_rng(0).normal(size=(61, 8)).astype(np.float32)
  nbrs = np.asarray(graph.knn(jnp.asarray(x), 4, block=16))
  expected, _ = sklearn_knn(x.astype(np.float64), 4)
  actual = np.linalg.norm(x[:, None].astype(np.float64) - x[nbrs], axis=-1)
  np.testing.assert_allclose(actual, expected, rtol=1e-5)
  assert np.all(nbrs != np.arange(61)[:, None])


def test_knn_rejects_bad_k():
  for k in (0, 5):
    with pytest.raises(ValueError, match="k="):
      graph.knn(jnp.zeros((5, 2)), k)


def test_neighbour_purity():
  # Two well-separated pairs of points on a line, plus a fifth point near the second pair.
  x = jnp.array([[0.0], [0.1], [10.0], [10.2], [10.5]])
  y = jnp.array([0, 0, 1, 1, 0])
  nbrs = graph.knn(x, 1, block=2)
  assert nbrs.ravel().tolist() == [1, 0, 3, 2, 3]
  np.testing.assert_allclose(graph.neighbour_purity(nbrs, y), 4 / 5)
  np.testing.assert_allclose(graph.neighbour_purity(nbrs, jnp.zeros(5, int)), 1.0)


def test_contrastive_pairs():
  n, k, num_pairs = 40, 3, 50
  nbrs = graph.knn(jnp.asarray(np.random.default_rng(1).normal(size=(n, 4)), jnp.float32), k)
  pairs, positive = graph.contrastive_pairs(jax.random.key(0), nbrs, num_pairs)
  assert pairs.shape == (2 * num_pairs, 2) and pairs.dtype == jnp.int32
  assert positive.shape == (2 * num_pairs,) and positive.dtype == jnp.bool_
  assert positive[:num_pairs].all() and not positive[num_pairs:].any()
  pairs, nbrs = np.asarray(pairs), np.asarray(nbrs)
  assert all(j in nbrs[i] for i, j in pairs[:num_pairs])
  assert len({tuple(p) for p in pairs[:num_pairs]}) == num_pairs  # without replacement
  assert np.all(pairs[num_pairs:, 0] != pairs[num_pairs:, 1])
  assert pairs.min() >= 0 and pairs.max() < n
  # Random negatives are mostly not neighbours; all N k edges are reachable.
  assert np.mean([j in nbrs[i] for i, j in pairs[num_pairs:]]) < 0.5
  every_edge, _ = graph.contrastive_pairs(jax.random.key(1), jnp.asarray(nbrs), n * k)
  assert sorted(map(tuple, np.asarray(every_edge[:n * k]))) == sorted(
      (i, j) for i in range(n) for j in nbrs[i])


def test_docstring_examples():
  result = doctest.testmod(graph, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.attempted > 0 and result.failed == 0
