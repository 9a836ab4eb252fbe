"""The classic baselines as engine methods: k-means, GMM and iGMM.

Each is a single :class:`~deepclust_jax.engine.FitPhase` wrapping the jitted
baselines of :mod:`deepclust_jax.baselines`, so they share the CLI, the
vmapped runs over seeds and the run directory with the deep methods.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import jax
import jax.numpy as jnp

from deepclust_jax.baselines import gaussian_log_prob, gmm, kmeans, sq_distances
from deepclust_jax.engine import FitPhase, Method
from deepclust_jax.methods import registry
from deepclust_jax.methods.common import require


@dataclasses.dataclass(frozen=True)
class KMeansConfig:
  """k-means: ``n_init`` k-means++ seedings refined by Lloyd, best inertia kept."""

  num_clusters: int = 0
  n_init: int = 10
  num_iters: int = 100
  tol: float = 1e-4

  def validate(self) -> None:
    require(self.n_init >= 1 and self.num_iters >= 0 and self.tol >= 0,
            "n_init >= 1, num_iters >= 0 and tol >= 0 are required")


@dataclasses.dataclass(frozen=True)
class GMMConfig:
  """Gaussian mixture by EM; ``uniform_weights`` fixes the weights to 1/K."""

  num_clusters: int = 0
  covariance: Literal["full", "diag", "spherical"] = "full"
  init: Literal["kmeans", "kmeans++"] = "kmeans"
  num_iters: int = 100
  tol: float = 1e-3
  reg_covar: float = 1e-6
  uniform_weights: bool = False

  def validate(self) -> None:
    require(self.num_iters >= 0 and self.tol >= 0 and self.reg_covar >= 0,
            "num_iters, tol and reg_covar must be >= 0")


@dataclasses.dataclass(frozen=True)
class IGMMConfig(GMMConfig):
  """The CM paper's iGMM: spherical covariances, weights fixed to 1/K."""

  covariance: Literal["full", "diag", "spherical"] = "spherical"
  uniform_weights: bool = True


def build_kmeans(config: KMeansConfig, shape: tuple[int, ...]) -> Method:
  K = config.num_clusters

  def init(key, data):
    del key
    return {"mu": jnp.zeros((K, math.prod(shape)), data["x"].dtype)}, None

  def fit(params, state, data, key):
    del params
    result = kmeans(key, data["x"], K, n_init=config.n_init, num_iters=config.num_iters,
                    tol=config.tol)
    return {"mu": result.mu}, state, {"inertia": result.inertia}

  def predict(params, state, x):
    del state
    return jax.nn.one_hot(jnp.argmin(sq_distances(x, params["mu"]), axis=1), K)

  return Method("kmeans", K, init, (FitPhase("lloyd", fit),), predict)


def build_gmm(config: GMMConfig, shape: tuple[int, ...], name: str = "gmm") -> Method:
  K = config.num_clusters
  num_features = math.prod(shape)
  cov_shape = {"full": (K, num_features, num_features), "diag": (K, num_features),
               "spherical": (K,)}[config.covariance]

  def init(key, data):
    del key
    dtype = data["x"].dtype
    return {"weights": jnp.full((K,), 1.0 / K, dtype),
            "mu": jnp.zeros((K, num_features), dtype),
            "covariances": jnp.ones(cov_shape, dtype)}, None

  def fit(params, state, data, key):
    del params
    result = gmm(key, data["x"], K, covariance=config.covariance, num_iters=config.num_iters,
                 tol=config.tol, reg_covar=config.reg_covar,
                 uniform_weights=config.uniform_weights, init=config.init)
    return ({"weights": result.weights, "mu": result.mu, "covariances": result.covariances},
            state, {"log_likelihood": result.log_likelihood})

  def predict(params, state, x):
    del state
    log_prob = gaussian_log_prob(x, params["mu"], params["covariances"], config.covariance)
    return jax.nn.softmax(jnp.log(params["weights"]) + log_prob, axis=1)

  return Method(name, K, init, (FitPhase("em", fit),), predict)


registry.register(registry.MethodSpec(
    "kmeans", KMeansConfig, build_kmeans, {},
    "k-means: greedy k-means++ seeding and Lloyd iterations, n_init restarts"))
registry.register(registry.MethodSpec(
    "gmm", GMMConfig, build_gmm, {},
    "Gaussian mixture by EM (full, diag or spherical covariance)"))
registry.register(registry.MethodSpec(
    "igmm", IGMMConfig, lambda config, shape: build_gmm(config, shape, "igmm"), {},
    "isotropic GMM with uniform weights (the CM paper's iGMM baseline)"))
