"""Gaussian mixture models fitted by EM in the log domain, in JAX.

Covariance types follow scikit-learn's ``GaussianMixture``: "full" (K, d, d),
"diag" (K, d) and "spherical" (K,) variances. EM runs as one ``lax.while_loop``
(jittable, vmappable over keys); the E-step works with log densities and
log-sum-exp, so no responsibility underflows to 0/0 in high dimension.
:func:`igmm` is the isotropic GMM with uniform weights of the CM paper.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Literal

import flax.struct
import jax
import jax.numpy as jnp

from deepclust_jax.baselines.kmeans import (MATMUL_PRECISION, check_count, check_inputs,
                                            check_nonnegative, kmeans, sq_distances)
from deepclust_jax.errors import ConfigError, InputError

Covariance = Literal["full", "diag", "spherical"]
Init = Literal["kmeans", "kmeans++"]


@flax.struct.dataclass
class GMMResult:
  """The outcome of :func:`gmm`.

  Attributes:
    weights: (K,) mixing weights.
    mu: (K, d) means.
    covariances: (K, d, d) for "full", (K, d) variances for "diag", (K,)
      variances for "spherical"; ``reg_covar`` included.
    gamma: (N, K) responsibilities of the final parameters.
    labels: (N,) argmax of ``gamma``.
    log_likelihood: mean over samples of log p(x_n) under the final parameters.
    history: (num_iters,) mean log-likelihood before each M-step (entry 0 is
      the initialisation); NaN for the iterations not run after convergence.
      Never decreases: each EM step cannot lower the likelihood.
    n_iter: EM iterations run.
    covariance: the covariance type (static, not a pytree leaf).
  """

  weights: jax.Array
  mu: jax.Array
  covariances: jax.Array
  gamma: jax.Array
  labels: jax.Array
  log_likelihood: jax.Array
  history: jax.Array
  n_iter: jax.Array
  covariance: str = flax.struct.field(pytree_node=False)


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
  """Raises :class:`ConfigError` unless ``value`` is one of ``choices``."""
  if value not in choices:
    raise ConfigError(f"unknown {name} {value!r}; use one of {', '.join(map(repr, choices))}")


def gaussian_log_prob(x: jax.Array, mu: jax.Array, covariances: jax.Array,
                      covariance: Covariance) -> jax.Array:
  """Log densities of every sample under every Gaussian component.

  log N(x_n | mu_k, S_k) = -(d log(2 pi) + log det S_k
  + (x_n - mu_k)^T S_k^-1 (x_n - mu_k)) / 2. For "full", S_k = L_k L_k^T
  (Cholesky) gives log det S_k = 2 sum_j log L_k,jj and the quadratic form
  ||L_k^-1 (x_n - mu_k)||^2 by a triangular solve; diagonal and spherical
  covariances use the matmul form of :func:`sq_distances`. Memory: O(N K d)
  for "full", O(N K) otherwise.

  Reference: Bishop, "Pattern Recognition and Machine Learning", 2006,
  eq. (2.43).

  Args:
    x: (N, d) samples.
    mu: (K, d) means.
    covariances: (K, d, d), (K, d) or (K,) for "full", "diag", "spherical".
    covariance: the covariance type.

  Returns:
    (N, K) log densities.

  Example:
    >>> gaussian_log_prob(jnp.zeros((1, 2)), jnp.zeros((1, 2)), jnp.ones(1), "spherical")
    Array([[-1.837877]], dtype=float32)
  """
  _check_choice("covariance", covariance, ("full", "diag", "spherical"))
  num_features = x.shape[1]
  if covariance == "full":
    chol = jnp.linalg.cholesky(covariances)

    def whiten(chol_k, mu_k):  # L_k^-1 (x_n - mu_k) for every n, as (d, N)
      return jax.scipy.linalg.solve_triangular(chol_k, (x - mu_k).T, lower=True)

    maha = jnp.sum(jnp.square(jax.vmap(whiten)(chol, mu)), axis=1).T
    log_det = 2 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=1, axis2=2)), axis=1)
  elif covariance == "diag":
    maha = sq_distances(x, mu, precision=1 / covariances)
    log_det = jnp.sum(jnp.log(covariances), axis=1)
  else:
    maha = sq_distances(x, mu) / covariances
    log_det = num_features * jnp.log(covariances)
  return -0.5 * (num_features * math.log(2 * math.pi) + log_det + maha)


@functools.partial(jax.jit, static_argnums=(4,))
def _e_step(x: jax.Array, weights: jax.Array, mu: jax.Array, covariances: jax.Array,
            covariance: Covariance) -> tuple[jax.Array, jax.Array]:
  """E-step: gamma_nk = softmax_k(log w_k + log N(x_n | mu_k, S_k)) and mean log p(x_n)."""
  log_joint = jnp.log(weights) + gaussian_log_prob(x, mu, covariances, covariance)
  log_px = jax.nn.logsumexp(log_joint, axis=1, keepdims=True)
  return jnp.exp(log_joint - log_px), jnp.mean(log_px)


def _m_step(x: jax.Array, gamma: jax.Array, covariance: Covariance, reg_covar: jax.Array,
            uniform_weights: bool) -> tuple[jax.Array, jax.Array, jax.Array]:
  """M-step: weights, means and covariances maximising the expected log-likelihood.

  N_k = sum_n gamma_nk, w_k = N_k / N (or 1/K), mu_k = sum_n gamma_nk x_n / N_k,
  S_k = sum_n gamma_nk (x_n - mu_k)(x_n - mu_k)^T / N_k + reg_covar I (only its
  diagonal, or the mean of that diagonal, for "diag" and "spherical").
  """
  num_samples, num_features = x.shape
  num_clusters = gamma.shape[1]
  # The 10 eps of scikit-learn: a component that lost all its samples keeps
  # finite moments instead of 0 / 0.
  counts = gamma.sum(axis=0) + 10 * jnp.finfo(x.dtype).eps
  if uniform_weights:
    weights = jnp.full((num_clusters,), 1 / num_clusters, x.dtype)
  else:
    weights = counts / num_samples
  mu = jnp.matmul(gamma.T, x, precision=MATMUL_PRECISION) / counts[:, None]
  if covariance == "full":
    diff = x[None] - mu[:, None]  # (K, N, d)
    scatter = jnp.einsum("nk,knd,kne->kde", gamma, diff, diff, precision=MATMUL_PRECISION)
    return weights, mu, scatter / counts[:, None, None] + reg_covar * jnp.eye(num_features)
  # E[x^2] - mu^2 per feature; the caller centres x so that little cancels.
  second_moment = jnp.matmul(gamma.T, x * x, precision=MATMUL_PRECISION) / counts[:, None]
  variances = jnp.maximum(second_moment - mu * mu, 0) + reg_covar
  return weights, mu, variances if covariance == "diag" else variances.mean(axis=1)


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 7, 8))
def _gmm(key: jax.Array, x: jax.Array, K: int, covariance: Covariance, num_iters: int,
         tol: jax.Array, reg_covar: jax.Array, uniform_weights: bool, init: Init) -> GMMResult:
  """Core of :func:`gmm` on checked inputs."""
  # EM on centred data: the moments of the M-step then lose fewer digits.
  center = jnp.mean(x, axis=0)
  x = x - center
  # "kmeans++" = one seeding and 0 Lloyd steps: samples go to their nearest seed.
  n_init, kmeans_iters = (10, 100) if init == "kmeans" else (1, 0)
  start = kmeans(key, x, K, n_init=n_init, num_iters=kmeans_iters)
  m_step = functools.partial(_m_step, x, covariance=covariance, reg_covar=reg_covar,
                             uniform_weights=uniform_weights)
  params = m_step(jax.nn.one_hot(start.labels, K, dtype=x.dtype))

  def step(state):
    params, history, previous, _, it = state
    gamma, log_likelihood = _e_step(x, *params, covariance)
    return (m_step(gamma), history.at[it].set(log_likelihood), log_likelihood,
            log_likelihood - previous, it + 1)

  def not_done(state):
    *_, change, it = state
    return (it < num_iters) & (jnp.abs(change) >= tol)  # NaN stops too

  inf = jnp.array(jnp.inf, x.dtype)
  state = (params, jnp.full((num_iters,), jnp.nan, x.dtype), -inf, inf,
           jnp.array(0, jnp.int32))
  params, history, _, _, n_iter = jax.lax.while_loop(not_done, step, state)
  gamma, log_likelihood = _e_step(x, *params, covariance)
  weights, mu, covariances = params
  return GMMResult(weights=weights, mu=mu + center, covariances=covariances, gamma=gamma,
                   labels=jnp.argmax(gamma, axis=1), log_likelihood=log_likelihood,
                   history=history, n_iter=n_iter, covariance=covariance)


def gmm(key: jax.Array, x: Any, K: int, *, covariance: Covariance = "full",
        num_iters: int = 100, tol: float = 1e-3, reg_covar: float = 1e-6,
        uniform_weights: bool = False, init: Init = "kmeans") -> GMMResult:
  """Gaussian mixture fitted by expectation-maximisation.

  Maximises (1/N) sum_n log sum_k w_k N(x_n | mu_k, S_k). E-step: gamma_nk =
  softmax_k(log w_k + log N(x_n | mu_k, S_k)) by log-sum-exp; M-step:
  N_k = sum_n gamma_nk, w_k = N_k / N, mu_k = sum_n gamma_nk x_n / N_k, S_k =
  the gamma-weighted scatter / N_k + reg_covar I. Stops after ``num_iters``
  iterations or when the mean log-likelihood changes by less than ``tol``
  (scikit-learn's rule). Initialisation: "kmeans" runs :func:`kmeans` (10
  k-means++ restarts; scikit-learn uses one) and starts from its hard
  responsibilities; "kmeans++" assigns each sample to its nearest k-means++
  seed instead. ``uniform_weights=True`` fixes w_k = 1/K.

  Reference: Dempster, Laird and Rubin, JRSS-B 1977; Bishop, "Pattern
  Recognition and Machine Learning", 2006, section 9.2.2.

  Args:
    key: PRNG key (used by the initialisation).
    x: (N, d) data.
    K: number of components (static under jit).
    covariance: "full", "diag" or "spherical" (static).
    num_iters: maximum EM iterations (static).
    tol: tolerance on the change of the mean log-likelihood.
    reg_covar: added to the diagonal of every covariance, so none is singular.
    uniform_weights: keep w_k = 1/K (static).
    init: "kmeans" or "kmeans++" (static).

  Returns:
    :class:`GMMResult`.

  Raises:
    InputError: bad data or K (see :func:`~deepclust_jax.baselines.check_inputs`).
    ConfigError: unknown ``covariance`` or ``init``, negative counts or tolerances.

  Example:
    >>> x = jnp.concatenate([jnp.zeros((5, 2)), jnp.ones((5, 2))])
    >>> x = x + 0.1 * jax.random.normal(jax.random.key(1), x.shape)
    >>> gmm(jax.random.key(0), x, 2, covariance="diag").weights.round(2)
    Array([0.5, 0.5], dtype=float32)
  """
  x = check_inputs(x, K)
  _check_choice("covariance", covariance, ("full", "diag", "spherical"))
  _check_choice("init", init, ("kmeans", "kmeans++"))
  check_count("num_iters", num_iters, minimum=0)
  check_nonnegative("tol", tol)
  check_nonnegative("reg_covar", reg_covar)
  return _gmm(key, x, K, covariance, num_iters, tol, reg_covar, bool(uniform_weights), init)


def igmm(key: jax.Array, x: Any, K: int, *, num_iters: int = 100, tol: float = 1e-3,
         reg_covar: float = 1e-6, init: Init = "kmeans") -> GMMResult:
  """Isotropic GMM with uniform weights: p(x) = (1/K) sum_k N(x | mu_k, s_k^2 I).

  The iGMM baseline of the CM paper, i.e. :func:`gmm` with
  ``covariance="spherical", uniform_weights=True``.

  Reference: Boubekki, Kampffmeyer, Brefeld and Jenssen, "Joint optimization
  of an autoencoder for clustering and embedding", Machine Learning, 2021.

  Args:
    key: PRNG key.
    x: (N, d) data.
    K: number of components (static).
    num_iters, tol, reg_covar, init: as in :func:`gmm`.

  Returns:
    :class:`GMMResult` with (K,) variances.

  Example:
    >>> x = jnp.concatenate([jnp.zeros((5, 2)), jnp.ones((5, 2))])
    >>> x = x + 0.1 * jax.random.normal(jax.random.key(1), x.shape)
    >>> igmm(jax.random.key(0), x, 2).covariances.shape
    (2,)
  """
  return gmm(key, x, K, covariance="spherical", num_iters=num_iters, tol=tol,
             reg_covar=reg_covar, uniform_weights=True, init=init)


def gmm_predict(result: GMMResult, x: Any) -> jax.Array:
  """Responsibilities of new samples under a fitted mixture (the E-step).

  gamma_nk = w_k N(x_n | mu_k, S_k) / sum_j w_j N(x_n | mu_j, S_j), in the log
  domain.

  Args:
    result: a fitted :class:`GMMResult`.
    x: (N, d) samples; any N >= 1.

  Returns:
    (N, K) responsibilities; rows sum to 1.

  Example:
    >>> x = jnp.concatenate([jnp.zeros((5, 2)), jnp.ones((5, 2))])
    >>> x = x + 0.1 * jax.random.normal(jax.random.key(1), x.shape)
    >>> fit = gmm(jax.random.key(0), x, 2, covariance="spherical")
    >>> gmm_predict(fit, x[:3]).shape
    (3, 2)
  """
  x = check_inputs(x)
  if x.shape[1] != result.mu.shape[-1]:
    raise InputError(f"data has {x.shape[1]} features but the mixture was fitted on "
                     f"{result.mu.shape[-1]}")
  return _e_step(x, result.weights, result.mu, result.covariances, result.covariance)[0]
