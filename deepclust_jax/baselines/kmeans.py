"""k-means: greedy k-means++ seeding and Lloyd's algorithm, in JAX.

Every function is jittable (``K``, ``n_init``, ``num_iters`` static) and
vmappable over PRNG keys. The public functions check their inputs in Python
first (:func:`check_inputs`) and then call a jitted core, so a bad array gets a
one-line :class:`~deepclust_jax.errors.InputError` instead of an XLA trace.

Memory stays O(N K) beyond the data: distances come from the matmul form
``||x||^2 - 2 x mu^T + ||mu||^2`` (:func:`sq_distances`), never from an
(N, K, d) difference tensor.
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from deepclust_jax.errors import ConfigError, InputError
from deepclust_jax.validation import check_data, check_num_clusters

# Distances subtract large, nearly equal terms; TF32 or bf16 matmuls (the GPU
# and TPU defaults) would lose most of the digits of the difference.
MATMUL_PRECISION = jax.lax.Precision.HIGHEST


@flax.struct.dataclass
class KMeansResult:
  """The outcome of k-means.

  Attributes:
    mu: (K, d) centroids.
    labels: (N,) index of each sample's nearest centroid in ``mu``.
    inertia: sum over samples of the squared distance to the nearest centroid.
    n_iter: Lloyd iterations run (fewer than ``num_iters`` after convergence).
  """

  mu: jax.Array
  labels: jax.Array
  inertia: jax.Array
  n_iter: jax.Array


def check_inputs(x: Any, K: int | None = None) -> jax.Array:
  """Checks data (and K) before any tracing; returns ``x`` as a float array.

  Checks: ``x`` is a numeric (N, d) array with N, d >= 1 and finite values;
  ``K`` is an integer with 2 <= K <= N. Integer and low-precision inputs are
  promoted to at least float32. Under ``jit`` or ``vmap`` the values of ``x``
  are unknown until run time, so there only the shape and K are checked.

  Args:
    x: (N, d) data.
    K: number of clusters, or None to skip the K checks (e.g. to predict).

  Returns:
    ``x`` as a jax array of a floating dtype.

  Raises:
    InputError: naming the first problem found.

  Example:
    >>> check_inputs([[0, 1], [1, 0], [2, 2]], K=2).dtype
    dtype('float32')
  """
  return jnp.asarray(check_data(x, K))


def _check_centroids(mu: Any, num_features: int) -> jax.Array:
  """Returns ``mu`` as an array after checking it is (K, num_features)."""
  mu = jnp.asarray(mu)
  if mu.ndim != 2 or mu.shape[1] != num_features or mu.shape[0] == 0:
    raise InputError(f"centroids must have shape (K, {num_features}) to match the data, "
                     f"got {mu.shape}")
  return mu


def check_count(name: str, value: Any, minimum: int) -> None:
  """Raises :class:`ConfigError` unless ``value`` is an integer >= ``minimum``.

  Example:
    >>> check_count("num_iters", 10, minimum=0)
  """
  if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
    raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_nonnegative(name: str, value: Any) -> None:
  """Raises :class:`ConfigError` if ``value`` is a number that is negative or NaN.

  Traced values (under ``jit``) pass unchecked.

  Example:
    >>> check_nonnegative("tol", 1e-4)
  """
  if isinstance(value, numbers.Real) and not value >= 0:  # NaN fails too
    raise ConfigError(f"{name} must be >= 0, got {value!r}")


def sq_distances(x: jax.Array, mu: jax.Array, precision: jax.Array | None = None,
                 x_sq: jax.Array | None = None) -> jax.Array:
  """Squared (optionally precision-weighted) distances between samples and centroids.

  D_nk = sum_j p_kj (x_nj - mu_kj)^2 = (x^2) p^T - 2 x (p mu)^T + sum_j p_kj mu_kj^2,
  so one (N, d) x (d, K) matmul (two with ``precision``) replaces an
  (N, K, d) tensor of differences. Without ``precision`` (p = 1) this is the
  squared Euclidean distance ||x_n||^2 - 2 x_n . mu_k + ||mu_k||^2; with the
  inverse variances of a diagonal Gaussian it is its Mahalanobis distance.
  Rounding can make the difference slightly negative, so it is clipped at 0.

  Args:
    x: (N, d) samples.
    mu: (K, d) centroids.
    precision: optional (K, d) positive weights p_kj.
    x_sq: optional (N,) precomputed ||x_n||^2 (without ``precision`` only), to
      hoist it out of loops.

  Returns:
    (N, K) distances.

  Example:
    >>> sq_distances(jnp.array([[0.0, 0.0], [3.0, 4.0]]), jnp.array([[0.0, 0.0]]))
    Array([[ 0.],
           [25.]], dtype=float32)
  """
  if precision is None:
    x_term = (jnp.sum(x * x, axis=-1) if x_sq is None else x_sq)[:, None]
    weighted_mu = mu
  else:
    x_term = jnp.matmul(x * x, precision.T, precision=MATMUL_PRECISION)
    weighted_mu = precision * mu
  cross = jnp.matmul(x, weighted_mu.T, precision=MATMUL_PRECISION)
  return jnp.maximum(x_term - 2 * cross + jnp.sum(mu * weighted_mu, axis=-1), 0)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _kmeans_plusplus(key: jax.Array, x: jax.Array, K: int, n_local_trials: int) -> jax.Array:
  """Core of :func:`kmeans_plusplus` on checked inputs."""
  num_samples = x.shape[0]
  x_sq = jnp.sum(x * x, axis=1)
  key, first_key = jax.random.split(key)
  first = jax.random.randint(first_key, (), 0, num_samples)
  mu = jnp.zeros((K, x.shape[1]), x.dtype).at[0].set(x[first])
  # D(x)^2 to the nearest seed. A chosen point is set to exactly 0 (the matmul
  # form leaves rounding noise) so that it can never be drawn again.
  closest = sq_distances(x, x[first][None], x_sq=x_sq)[:, 0].at[first].set(0)

  def add_seed(k, carry):
    mu, closest, key = carry
    key, draw_key = jax.random.split(key)
    # D^2 sampling: P(n) proportional to closest_n, via the Gumbel-max trick.
    candidates = jax.random.categorical(draw_key, jnp.log(closest), shape=(n_local_trials,))
    trial = jnp.minimum(closest[:, None], sq_distances(x, x[candidates], x_sq=x_sq))
    best = jnp.argmin(trial.sum(axis=0))  # the candidate that lowers the potential most
    chosen = candidates[best]
    return mu.at[k].set(x[chosen]), trial[:, best].at[chosen].set(0), key

  mu, _, _ = jax.lax.fori_loop(1, K, add_seed, (mu, closest, key))
  return mu


def kmeans_plusplus(key: jax.Array, x: Any, K: int,
                    n_local_trials: int | None = None) -> jax.Array:
  """Greedy k-means++ seeding: K distinct data points spread over the data.

  The first seed is uniform over the samples. Each next seed: draw
  ``n_local_trials`` candidates with probability D(x)^2 / sum D^2 (D = distance
  to the nearest seed so far) and keep the candidate that minimises the
  potential sum_n min(D(x_n)^2, ||x_n - c||^2). With one trial this is plain
  k-means++; the greedy variant with 2 + floor(log K) trials is what
  scikit-learn uses. Cost O(N K d n_local_trials) time, O(N n_local_trials)
  memory. Seeds are distinct rows of ``x`` unless ``x`` has fewer than K
  distinct rows.

  Reference: Arthur and Vassilvitskii, "k-means++: The advantages of careful
  seeding", SODA 2007 (greedy variant in section 6).

  Args:
    key: PRNG key.
    x: (N, d) data.
    K: number of seeds (static under jit).
    n_local_trials: candidates per step (static); default 2 + floor(log K).

  Returns:
    (K, d) seeds, rows of ``x``.

  Raises:
    InputError: bad data or K (see :func:`check_inputs`).

  Example:
    >>> x = jnp.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
    >>> kmeans_plusplus(jax.random.key(0), x, 2).shape
    (2, 2)
  """
  x = check_inputs(x, K)
  if n_local_trials is None:
    n_local_trials = 2 + int(math.log(K))
  check_count("n_local_trials", n_local_trials, minimum=1)
  return _kmeans_plusplus(key, x, K, n_local_trials)


@functools.partial(jax.jit, static_argnums=(2,))
def _lloyd(x: jax.Array, mu: jax.Array, num_iters: int, tol: jax.Array) -> KMeansResult:
  """Core of :func:`lloyd` on checked inputs."""
  K = mu.shape[0]
  x_sq = jnp.sum(x * x, axis=1)
  # scikit-learn's scale-free tolerance: tol times the mean feature variance.
  tol = tol * jnp.mean(jnp.var(x, axis=0))

  def assign(mu):
    d2 = sq_distances(x, mu, x_sq=x_sq)
    labels = jnp.argmin(d2, axis=1)
    return labels, jnp.take_along_axis(d2, labels[:, None], axis=1)[:, 0]

  def step(state):
    mu, _, it = state
    labels, nearest = assign(mu)
    one_hot = jax.nn.one_hot(labels, K, dtype=x.dtype)
    counts = one_hot.sum(axis=0)
    # Per-cluster sums as a matmul: much faster than a scatter-add of N rows
    # (segment_sum) on CPU, GPU and TPU alike. The (d, N) x (N, K) order runs
    # about 1.7x faster on XLA:CPU than (K, N) x (N, d) at MNIST size.
    sums = jnp.matmul(x.T, one_hot, precision=MATMUL_PRECISION).T
    # An empty cluster moves to the sample farthest from its centroid (the
    # j-th empty cluster to the j-th farthest sample), as scikit-learn does.
    empty = counts == 0
    farthest = jax.lax.top_k(nearest, K)[1]
    reseeded = x[farthest[jnp.cumsum(empty) - 1]]
    new_mu = jnp.where(empty[:, None], reseeded, sums / jnp.maximum(counts, 1)[:, None])
    return new_mu, jnp.sum(jnp.square(new_mu - mu)), it + 1

  def not_done(state):
    _, shift, it = state
    return (it < num_iters) & (shift > tol)

  init = (mu.astype(x.dtype), jnp.array(jnp.inf, x.dtype), jnp.array(0, jnp.int32))
  mu, _, n_iter = jax.lax.while_loop(not_done, step, init)
  labels, nearest = assign(mu)
  return KMeansResult(mu=mu, labels=labels, inertia=nearest.sum(), n_iter=n_iter)


def lloyd(x: Any, mu: Any, num_iters: int = 100, tol: float = 1e-4) -> KMeansResult:
  """Lloyd's algorithm from given centroids.

  Repeats: assign each sample to its nearest centroid,
  labels_n = argmin_k ||x_n - mu_k||^2; move each centroid to the mean of its
  samples. Stops after ``num_iters`` steps or once the centroids move less
  than ``tol`` in total squared distance, relative to the mean feature
  variance (as scikit-learn does; ``tol=0`` runs until nothing changes). An
  empty cluster's centroid is re-seeded at the sample farthest from its own
  centroid. The returned labels and inertia are those of the returned
  centroids.

  Reference: Lloyd, "Least squares quantization in PCM", IEEE Trans.
  Information Theory, 1982.

  Args:
    x: (N, d) data.
    mu: (K, d) initial centroids, e.g. from :func:`kmeans_plusplus`.
    num_iters: maximum number of update steps (static); 1 gives exactly one
      assignment and one update, 0 only assigns.
    tol: relative tolerance on the centroid shift.

  Returns:
    :class:`KMeansResult`.

  Raises:
    InputError: bad data, or centroids whose shape does not fit the data.

  Example:
    >>> x = jnp.array([[0.0, 0.0], [0.0, 1.0], [5.0, 5.0], [5.0, 6.0]])
    >>> lloyd(x, x[jnp.array([0, 2])]).mu
    Array([[0. , 0.5],
           [5. , 5.5]], dtype=float32)
  """
  x = check_inputs(x)
  mu = _check_centroids(mu, x.shape[1])
  check_num_clusters(mu.shape[0], x.shape[0])
  check_count("num_iters", num_iters, minimum=0)
  check_nonnegative("tol", tol)
  return _lloyd(x, mu, num_iters, tol)


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _kmeans(key: jax.Array, x: jax.Array, K: int, n_init: int, num_iters: int,
            tol: jax.Array) -> KMeansResult:
  """Core of :func:`kmeans` on checked inputs."""
  n_local_trials = 2 + int(math.log(K))
  seeds = jax.vmap(lambda k: _kmeans_plusplus(k, x, K, n_local_trials))(
      jax.random.split(key, n_init))
  runs = jax.vmap(lambda mu: _lloyd(x, mu, num_iters, tol))(seeds)
  best = jnp.argmin(runs.inertia)
  return jax.tree.map(lambda a: a[best], runs)


def kmeans(key: jax.Array, x: Any, K: int, *, n_init: int = 10, num_iters: int = 100,
           tol: float = 1e-4) -> KMeansResult:
  """k-means: ``n_init`` k-means++ seedings, each refined by Lloyd; keeps the best.

  Minimises the inertia sum_n min_k ||x_n - mu_k||^2. The ``n_init`` runs are
  vmapped, so they share each distance matmul; the run with the lowest
  inertia is returned. Same defaults as scikit-learn's ``KMeans`` with
  ``n_init=10``.

  References: Lloyd 1982; Arthur and Vassilvitskii 2007 (see
  :func:`lloyd` and :func:`kmeans_plusplus`).

  Args:
    key: PRNG key.
    x: (N, d) data.
    K: number of clusters (static under jit).
    n_init: number of seedings (static).
    num_iters: maximum Lloyd steps per seeding (static).
    tol: relative tolerance on the centroid shift (see :func:`lloyd`).

  Returns:
    :class:`KMeansResult` of the best run.

  Raises:
    InputError: bad data or K (see :func:`check_inputs`).
    ConfigError: ``n_init < 1``, ``num_iters < 0`` or ``tol < 0``.

  Example:
    >>> x = jnp.array([[0.0, 0.0], [0.0, 1.0], [5.0, 5.0], [5.0, 6.0]])
    >>> result = kmeans(jax.random.key(0), x, 2)
    >>> float(result.inertia)
    1.0
  """
  x = check_inputs(x, K)
  check_count("n_init", n_init, minimum=1)
  check_count("num_iters", num_iters, minimum=0)
  check_nonnegative("tol", tol)
  return _kmeans(key, x, K, n_init, num_iters, tol)


def kmeans_predict(mu: Any, x: Any) -> jax.Array:
  """Index of the nearest centroid for each sample: argmin_k ||x_n - mu_k||^2.

  Args:
    mu: (K, d) centroids, e.g. ``kmeans(...).mu``.
    x: (N, d) samples; any N >= 1.

  Returns:
    (N,) int32 labels.

  Example:
    >>> mu = jnp.array([[0.0, 0.0], [5.0, 5.0]])
    >>> kmeans_predict(mu, jnp.array([[4.0, 4.0], [1.0, 0.0]]))
    Array([1, 0], dtype=int32)
  """
  x = check_inputs(x)
  mu = _check_centroids(mu, x.shape[1])
  return jnp.argmin(sq_distances(x, mu), axis=1)
