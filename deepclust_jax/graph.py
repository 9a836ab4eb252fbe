"""Nearest-neighbour graphs on the device, without N x N memory.

For DGG (Yang, Cheung, Li & Fang, ICCV 2019; supplement, section 5): the
Siamese network is trained on nearest-neighbour positive pairs in input space
and as many random negative pairs, and each point's neighbourhood ``N_i`` is
then its N_s nearest neighbours in the Siamese embedding.

Shapes: ``x`` (N, d) points, ``nbrs`` (N, k) int32 neighbour indices (nearest
first, never the point itself), ``y`` (N,) labels.
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp


@functools.partial(jax.jit, static_argnames=("k", "block"))
def knn(x: chex.Array, k: int, *, block: int = 1024) -> chex.Array:
  r"""Exact k nearest neighbours of every row of ``x`` among the others, (N, k) int32.

  Squared Euclidean distances ``||a||^2 - 2 a b^T + ||b||^2`` are computed for
  ``block`` rows at a time against all N points (``jax.lax.map`` over row
  blocks, so memory is O(block N), not O(N^2)), the diagonal is masked and
  ``jax.lax.top_k`` keeps the k smallest, nearest first. The product runs at
  the highest matmul precision: TF32 on a GPU would reorder close neighbours.
  The last block is padded with copies of row 0, whose results are dropped.
  Ties are broken towards the smaller index.

  Example:
    >>> x = jnp.array([[0.0], [1.0], [3.0], [7.0]])
    >>> knn(x, 2, block=3).tolist()
    [[1, 2], [0, 2], [1, 0], [2, 1]]
  """
  n = x.shape[0]
  if not 0 < k < n:
    raise ValueError(f"k={k} must be in [1, N - 1] = [1, {n - 1}]")
  block = min(block, n)
  num_blocks = -(-n // block)
  rows = jnp.pad(jnp.arange(n), (0, num_blocks * block - n)).reshape(num_blocks, block)
  squared_norms = jnp.sum(jnp.square(x), axis=-1)

  def nearest(idx: chex.Array) -> chex.Array:
    products = jnp.matmul(x[idx], x.T, precision=jax.lax.Precision.HIGHEST)
    distances = squared_norms[idx, None] - 2.0 * products + squared_norms[None, :]
    distances = jnp.where(idx[:, None] == jnp.arange(n)[None, :], jnp.inf, distances)
    return jax.lax.top_k(-distances, k)[1]

  return jax.lax.map(nearest, rows).reshape(-1, k)[:n].astype(jnp.int32)


def neighbour_purity(nbrs: chex.Array, y: chex.Array) -> chex.Array:
  """Fraction of (point, neighbour) edges whose two ends share a label, a scalar.

  The quality measure of a clustering graph: 1 when no edge crosses classes.

  Example:
    >>> nbrs = jnp.array([[1, 2], [0, 2], [1, 0]])
    >>> round(float(neighbour_purity(nbrs, jnp.array([0, 0, 1]))), 4)  # 2 of 6 edges agree
    0.3333
  """
  return jnp.mean(y[nbrs] == y[:, None])


def contrastive_pairs(
    key: chex.PRNGKey,
    nbrs: chex.Array,
    num_pairs: int,
) -> tuple[chex.Array, chex.Array]:
  r"""Index pairs for the Siamese contrastive loss: ``num_pairs`` positives, as many negatives.

  Positives are (point, neighbour) edges of ``nbrs`` drawn without
  replacement, so ``num_pairs = N k`` takes every edge, the supplement's
  "N_t nearest neighbours for each datapoint"; negatives are uniform random
  pairs of two different points (possibly neighbours, as in the supplement).
  ``num_pairs`` is at most N k.

  Returns:
    ``(pairs, positive)``: (2 num_pairs, 2) int32 indices, positives first, and
    the (2 num_pairs,) boolean labels, for :func:`deepclust_jax.losses.vade.contrastive_loss`.

  Example:
    >>> nbrs = jnp.array([[1], [0], [1]])
    >>> pairs, positive = contrastive_pairs(jax.random.key(0), nbrs, 3)
    >>> pairs.shape, positive.tolist()
    ((6, 2), [True, True, True, False, False, False])
    >>> sorted(pairs[:3].tolist())  # all three edges
    [[0, 1], [1, 0], [2, 1]]
  """
  n, k = nbrs.shape
  key_edges, key_first, key_offset = jax.random.split(key, 3)
  edges = jax.random.choice(key_edges, n * k, (num_pairs,), replace=False)
  positives = jnp.stack([edges // k, nbrs.reshape(-1)[edges]], axis=-1)
  first = jax.random.randint(key_first, (num_pairs,), 0, n)
  # A non-zero offset modulo N never pairs a point with itself.
  second = (first + jax.random.randint(key_offset, (num_pairs,), 1, n)) % n
  pairs = jnp.concatenate([positives, jnp.stack([first, second], axis=-1)]).astype(jnp.int32)
  positive = jnp.arange(2 * num_pairs) < num_pairs
  return pairs, positive
