"""CM: the clustering module trained by SGD on the negated Q-function.

Boubekki et al. (2021), section 4.1: a softmax encoder and an affine decoder
whose loss, eq. (7), is minus the Q-function of an isotropic GMM with a
Dirichlet prior (Theorem 1). Training ends with the averaging epoch; the run
with the lowest L_sp = E2 + E3 is the selected one (section 5.2.4).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import jax

from deepclust_jax import losses
from deepclust_jax.baselines import kmeans_plusplus, lloyd
from deepclust_jax.configs import paper
from deepclust_jax.engine import Method, SGDPhase, Update, stateless
from deepclust_jax.methods import registry
from deepclust_jax.methods.common import optimizer, require, scaled_sgd
from deepclust_jax.models import ClusteringModule, centroids, params_from_centroids


@dataclasses.dataclass(frozen=True)
class CMConfig:
  """Hyper-parameters of the CM (defaults: section 5.2 and Table 12).

  Attributes:
    num_clusters: K; 0 takes the dataset's number of classes.
    init: "r" Glorot-uniform weights; "p" k-means++ seeding and one Lloyd step,
      decoder = centroids, encoder from them by ``centroid_encoder``.
    centroid_encoder: how init "p" sets the encoder from the centroids:
      "pinv" (the paper's pseudo-inverse) or "nearest" (the E-step of the CM's
      isotropic model, exact nearest-centroid labels); see
      :func:`~deepclust_jax.models.params_from_centroids`.
    alpha: Dirichlet concentration (symmetric: alpha for every cluster).
    prior: "symmetric", or "sorted" for alpha * frequencies paired after
      sorting (the paper's asymmetric prior, appendix 2).
    frequencies: cluster frequencies of the sorted prior.
    terms: loss terms to keep (Table 3's ablation drops some).
    batch_size, epochs: mini-batches; one averaging epoch follows if average.
    optimizer, learning_rate, adam_eps: Adam(1e-3, eps=1e-3) in the paper.
    average: run the averaging epoch.
    tol: stop a run once fewer than this fraction of labels change between
      two epochs (the paper's Fig. 8 uses 0.001); 0 trains every epoch.
  """

  num_clusters: int = 0
  init: Literal["r", "p"] = "r"
  centroid_encoder: Literal["nearest", "pinv"] = "pinv"
  alpha: float = 10.0
  prior: Literal["symmetric", "sorted"] = "symmetric"
  frequencies: tuple[float, ...] = ()
  terms: tuple[str, ...] = ("e1", "e2", "e3", "e4")
  batch_size: int = 256
  epochs: int = 150
  optimizer: Literal["adam", "sgd"] = "adam"
  learning_rate: float = 1e-3
  adam_eps: float = 1e-3
  average: bool = True
  tol: float = 0.0

  def validate(self) -> None:
    require(self.alpha > 0, f"alpha={self.alpha} must be positive")
    require(0 <= self.tol < 1, f"tol={self.tol} must be in [0, 1)")
    require(self.batch_size > 0, f"batch_size={self.batch_size} must be positive")
    require(self.epochs >= 0, f"epochs={self.epochs} must be >= 0")
    require(self.learning_rate > 0, f"learning_rate={self.learning_rate} must be positive")
    unknown = set(self.terms) - {"e1", "e2", "e3", "e4"}
    require(not unknown, f"unknown CM loss terms {sorted(unknown)}; use e1,e2,e3,e4")
    require(self.prior == "symmetric" or len(self.frequencies) == self.num_clusters,
            "the sorted prior needs one frequency per cluster (--set frequencies=...)")


def concentration(config) -> jax.Array:
  """The (K,) Dirichlet concentration of a CM or AE-CM config."""
  frequencies = config.frequencies if config.prior == "sorted" else None
  return losses.dirichlet_concentration(config.alpha, config.num_clusters, frequencies)


def sparsity_per_sample(gamma: jax.Array, mu: jax.Array) -> jax.Array:
  """Each sample's share of L_sp = E2 + E3 (both are sums over samples), (n,)."""
  return jax.vmap(lambda g: losses.sparsity_criterion(g[None], mu))(gamma)


def init_from_kmeans(key: jax.Array, x: jax.Array, num_clusters: int,
                     encoder: Literal["nearest", "pinv"] = "pinv") -> dict:
  """CM parameters from k-means++ seeds moved by one Lloyd step (init "p")."""
  mu = lloyd(x, kmeans_plusplus(key, x, num_clusters), num_iters=1).mu
  return params_from_centroids(mu, encoder)


def build(config: CMConfig, shape: tuple[int, ...]) -> Method:
  """The CM as pure pieces for the engine; samples of ``shape`` are flattened."""
  module = ClusteringModule(config.num_clusters, math.prod(shape))
  alpha = concentration(config)
  sort = config.prior == "sorted"

  def init(key, data):
    x = data["x"]
    if config.init == "p":
      return init_from_kmeans(key, x, config.num_clusters, config.centroid_encoder), None
    return module.init(key, x[:1])["params"], None

  def predict(params, state, x):
    del state
    return module.apply({"params": params}, x)[0]

  def loss(params, batch, key):
    del key  # deterministic loss
    x = batch["x"]
    return losses.cm_loss(x, predict(params, None, x), centroids(params), alpha,
                          sort=sort, terms=config.terms)

  def criteria(params, state, x, gamma):
    del state, x
    return {"l_sp": sparsity_per_sample(gamma, centroids(params))}

  tx = optimizer(config.optimizer, config.learning_rate, config.adam_eps)
  train = SGDPhase("train", (Update(stateless(loss), tx),), config.epochs,
                   config.batch_size, average=config.average,
                   stop_below=config.tol or None)
  def decoded_centroids(params, state):
    del state
    return centroids(params)  # the decoder's weights are the centroids, in input space

  return Method("cm", config.num_clusters, init, (train,), predict, criteria,
                select_by="l_sp", decoded_centroids=decoded_centroids)


# Passes over a small table at most; measured in experiments/results/scaled_defaults.md.
MAX_EPOCHS = 500


def scaled(num_samples: int, shape: tuple[int, ...], num_clusters: int,
           explicit) -> dict:
  """Defaults for data without a preset: batch N/25, MNIST's step budget."""
  del shape, num_clusters
  return scaled_sgd(num_samples, explicit, CMConfig.epochs, max_epochs=MAX_EPOCHS)


registry.register(registry.MethodSpec(
    "cm", CMConfig, build, paper.CM,
    "clustering module (Boubekki et al. 2021): SGD on minus the Q-function of an isotropic GMM",
    scaled))
