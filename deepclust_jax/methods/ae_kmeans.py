"""AE + k-means (or + GMM): the baseline every deep-clustering paper reports.

Pretrain a dense autoencoder (the shared
:mod:`~deepclust_jax.methods.pretraining`, DEC's recipe by default), then fit
k-means (``mixture="kmeans"``) or a diagonal Gaussian mixture
(``mixture="gmm"``) on its codes. Prediction: the nearest centroid of the
code, or the GMM's posterior. DEC (Xie, Girshick & Farhadi, ICML 2016)
reports this baseline at ACC 87.9 on MNIST with its public recipe (mean of 10
trials); ``experiments/results/pretraining.md`` measures ours.

The autoencoder is AE-CM's (:func:`deepclust_jax.methods.aecm.autoencoder`),
with DEC's ReLU by default, so a run directory of either method can start the
other (``--pretrained RUN_DIR``) when the architectures agree.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp

from deepclust_jax.baselines import gaussian_log_prob, sq_distances
from deepclust_jax.configs import pretraining as pretraining_presets
from deepclust_jax.engine import Method
from deepclust_jax.methods import pretraining, registry
from deepclust_jax.methods.aecm import autoencoder, dense_architecture
from deepclust_jax.methods.common import require


@dataclasses.dataclass(frozen=True)
class AEKMeansConfig(pretraining.PretrainConfig):
  """AE + k-means: the autoencoder and its pretraining, then the mixture start.

  The pretraining and mixture keys are
  :class:`~deepclust_jax.methods.pretraining.PretrainConfig`'s, with DEC's
  recipe as defaults (:data:`~deepclust_jax.configs.pretraining.DEC`), and each
  dataset's best recipe as its preset (:data:`~deepclust_jax.configs.pretraining.BEST`).

  Attributes:
    num_clusters: K; 0 takes the dataset's number of classes.
    latent: p, the code width.
    hidden: encoder hidden widths (the decoder mirrors them).
    activation: "relu" (DEC's) or "leaky_relu" (slope 0.2, AE-CM's).
    quadratic: the encoder starts with the degree-2 monomials of x.
  """

  recipe: pretraining.Recipe = "dec"
  pretrain_epochs: int = 300
  pretrain_lr: float = 1.0
  num_clusters: int = 0
  latent: int = 10
  hidden: tuple[int, ...] = (500, 500, 2000)
  activation: Literal["leaky_relu", "relu"] = "relu"
  quadratic: bool = False

  def validate(self) -> None:
    self.validate_pretraining()
    require(self.latent > 0, f"latent={self.latent} must be positive")

  def network(self) -> dict:
    return dense_architecture(self)


def build(config: AEKMeansConfig, shape: tuple[int, ...]) -> Method:
  """AE + k-means (or GMM) as pure pieces: pretraining phases, then the mixture start.

  Example:
    >>> config = registry.resolve("ae_kmeans", overrides={"num_clusters": 3, "hidden": (8,),
    ...                                                    "pretrain_epochs": 2})
    >>> [phase.name for phase in build(config, (64,)).phases]
    ['pretrain', 'mixture']
  """
  ae, spec = autoencoder(config, shape)
  K = config.num_clusters

  def init(key, data):
    x = data["x"]
    z_shape = (K, config.latent)
    return {"autoencoder": ae.init(key, x[:1])["params"],
            "mixture": {"mu": jnp.zeros(z_shape, x.dtype), "var": jnp.ones(z_shape, x.dtype),
                        "weights": jnp.full((K,), 1.0 / K, x.dtype)}}, None

  def encode(params, state, x):
    del state
    return ae.apply({"params": params["autoencoder"]}, x, method=type(ae).encode)

  def wire(params, state, start):
    return {**params, "mixture": {"mu": start.mu, "var": start.var,
                                  "weights": start.weights}}, state

  def predict(params, state, x):
    z, mixture = encode(params, state, x), params["mixture"]
    if config.mixture == "kmeans":
      return jax.nn.one_hot(jnp.argmin(sq_distances(z, mixture["mu"]), axis=1), K, dtype=z.dtype)
    log_prob = gaussian_log_prob(z, mixture["mu"], mixture["var"], "diag")
    return jax.nn.softmax(jnp.log(mixture["weights"]) + log_prob, axis=1)

  phases = (*pretraining.phases(spec, config),
            pretraining.start_phase(encode, config, K, wire))
  # k-means' ACC on the codes at every scoring epoch of pretraining.
  return Method("ae_kmeans", K, pretraining.init(spec, config, init), phases, predict,
                encode=encode, autoencoder=spec.group,
                label_signals=pretraining.kmeans_on_codes(encode, K))


registry.register(registry.MethodSpec(
    "ae_kmeans", AEKMeansConfig, build,
    pretraining_presets.with_best({}, tuple(pretraining_presets.BEST)),
    "AE + k-means (or a diagonal GMM, mixture=gmm) on the codes of a pretrained autoencoder"))
