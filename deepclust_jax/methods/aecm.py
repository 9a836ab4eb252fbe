"""AE-CM: a clustering module nested in a deep autoencoder, trained jointly.

Boubekki et al. (2021), section 4.2: the CM clusters the code z of a
d-500-500-2000-p autoencoder; the loss, eq. (10), adds the autoencoder's
reconstruction and replaces E3 by an orthonormality penalty on the centroids.

Initialisation "r": Glorot weights, joint training only. Initialisation "p"
(section 4.2.2): pretrain the autoencoder on the MSE, k-means on the codes
sets the CM by the pseudo-inverse trick, the CM alone is trained on the
(frozen) codes, then joint training. Every variant ends with the averaging
epoch; runs are ranked by L_sp = E2 + E3 of the CM on the codes.

Where the paper is silent, the defaults follow the authors' public code:
pretraining by SGD with momentum 0.9 and batches of 256 for 100 epochs on
the per-sample MSE summed over the batch (``recipe="sgd"``; pretraining and
the mixture start are the shared :mod:`~deepclust_jax.methods.pretraining`);
k-means with 20 restarts on the codes; 100 epochs of the CM alone; constant
learning rates. That code names two schedules its optimiser parser never
applies; they are opt-in here: ``lr_decay`` (Adam's rate from 1e-3 to 1e-4,
power 0.4, over the joint epochs) and ``pretrain_decay_epochs=33`` (the SGD
rate divided by 10 every 33 epochs). See ``docs/methods.md#ae-cm``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import jax
import jax.numpy as jnp

from deepclust_jax import losses
from deepclust_jax.configs import paper
from deepclust_jax.engine import Method, SGDPhase, Update, stateless
from deepclust_jax.methods import pretraining, registry
from deepclust_jax.methods.cm import concentration, sparsity_per_sample
from deepclust_jax.methods.common import optimizer, polynomial_decay, require, scaled_sgd
from deepclust_jax.models import (Autoencoder, ClusteringModule, centroids,
                                  params_from_centroids)


@dataclasses.dataclass(frozen=True)
class AECMConfig(pretraining.PretrainConfig):
  """Hyper-parameters of the AE-CM (defaults: section 5.3 and Table 13).

  The pretraining and mixture-start keys (``recipe``, ``pretrain_*``,
  ``mixture``, ``mixture_space``, ``kmeans_restarts``) are
  :class:`~deepclust_jax.methods.pretraining.PretrainConfig`'s; init "p" uses
  them, with the authors' SGD protocol as defaults.

  Attributes:
    num_clusters: K; 0 takes the dataset's number of classes.
    init: "r" random or "p" pretrained (see the module docstring).
    latent: p, the code width.
    hidden: encoder hidden widths (the decoder mirrors them).
    activation: the hidden layers' "leaky_relu" (slope 0.2, the paper) or
      "relu" (DEC's).
    quadratic: the encoder starts with the degree-2 monomials of x (the
      paper's "quad" layer for the two circles, appendix 1).
    alpha, prior, frequencies: Dirichlet prior, as for the CM.
    beta: weight of the autoencoder's reconstruction.
    lam: Lagrange multiplier of the orthonormality penalty.
    batch_size, epochs: joint training; one averaging epoch follows.
    learning_rate, adam_eps: Adam(1e-3, eps=1e-3).
    lr_decay: decay the joint learning rate polynomially to 1e-4.
    centroid_encoder: how the CM's encoder is set from the centroids, "pinv"
      (the paper) or "nearest" (see
      :func:`~deepclust_jax.models.params_from_centroids`).
    cm_epochs: epochs of the CM alone on the codes (init "p").
    tol: stop a run's joint training once fewer than this fraction of labels
      change between two epochs (the paper's Fig. 8 uses 0.001); 0 trains
      every epoch.
  """

  recipe: pretraining.Recipe = "sgd"
  pretrain_epochs: int = 100
  pretrain_lr: float = 1e-2
  kmeans_restarts: int = 20
  num_clusters: int = 0
  init: Literal["r", "p"] = "r"
  latent: int = 10
  hidden: tuple[int, ...] = (500, 500, 2000)
  activation: Literal["leaky_relu", "relu"] = "leaky_relu"
  quadratic: bool = False
  alpha: float = 10.0
  prior: Literal["symmetric", "sorted"] = "symmetric"
  frequencies: tuple[float, ...] = ()
  beta: float = 1.0
  lam: float = 1.0
  batch_size: int = 256
  epochs: int = 150
  learning_rate: float = 1e-3
  adam_eps: float = 1e-3
  lr_decay: bool = False
  centroid_encoder: Literal["nearest", "pinv"] = "pinv"
  cm_epochs: int = 100
  tol: float = 0.0

  def validate(self) -> None:
    self.validate_pretraining()
    require(self.latent > 0, f"latent={self.latent} must be positive")
    require(0 <= self.tol < 1, f"tol={self.tol} must be in [0, 1)")
    require(self.alpha > 0, f"alpha={self.alpha} must be positive")
    require(self.beta >= 0 and self.lam >= 0, "beta and lam must be >= 0")
    require(self.batch_size > 0, "batch sizes must be positive")
    require(min(self.epochs, self.cm_epochs) >= 0, "epoch counts must be >= 0")
    require(self.prior == "symmetric" or len(self.frequencies) == self.num_clusters,
            "the sorted prior needs one frequency per cluster (--set frequencies=...)")

  def network(self) -> dict:
    return dense_architecture(self)


SLOPES = {"leaky_relu": 0.2, "relu": 0.0}


def dense_architecture(config) -> dict:
  """What a pretrained dense autoencoder must share to be reused (``--pretrained``)."""
  return {"model": "dense", "hidden": list(config.hidden), "latent": config.latent,
          "activation": config.activation, "quadratic": config.quadratic}


def autoencoder(config, shape: tuple[int, ...]) -> tuple[Autoencoder, pretraining.AutoencoderSpec]:
  """The dense autoencoder of AE-CM and AE + k-means, and how pretraining sees it.

  Its own loss is the authors': the per-sample MSE summed over the batch
  (their TensorFlow code differentiates the vector of per-sample MSEs, i.e.
  their sum, so their SGD rates are for this scale).
  """
  ae = Autoencoder(math.prod(shape), config.latent, config.hidden, config.quadratic,
                   SLOPES[config.activation], config.matmul_dtype)

  def apply(params, state, x, key):
    del key
    return ae.apply({"params": params["autoencoder"]}, x)[1], state

  depth = len(config.hidden) + 1
  layers = {} if config.quadratic else {
      "encoder_layers": pretraining.dense_paths("encoder", depth),
      "decoder_layers": pretraining.dense_paths("decoder", depth)}
  spec = pretraining.AutoencoderSpec(
      "autoencoder", apply, lambda x, x_bar: jnp.sum(jnp.mean(jnp.square(x - x_bar), -1)),
      negative_slope=SLOPES[config.activation], **layers)
  return ae, spec


def build(config: AECMConfig, shape: tuple[int, ...]) -> Method:
  """The AE-CM as pure pieces for the engine; samples of ``shape`` are flattened."""
  ae, spec = autoencoder(config, shape)
  cm = ClusteringModule(config.num_clusters, config.latent)
  alpha = concentration(config)
  sort = config.prior == "sorted"

  def init(key, data):
    x = data["x"]
    ae_key, cm_key = jax.random.split(key)
    return {"autoencoder": ae.init(ae_key, x[:1])["params"],
            "cm": cm.init(cm_key, jnp.zeros((1, config.latent), x.dtype))["params"]}, None

  def encode(params, state, x):
    del state
    return ae.apply({"params": params["autoencoder"]}, x, method=Autoencoder.encode)

  def predict(params, state, x):
    return cm.apply({"params": params["cm"]}, encode(params, state, x))[0]

  def joint_loss(params, batch, key):
    del key
    x = batch["x"]
    z, x_bar = ae.apply({"params": params["autoencoder"]}, x)
    gamma, _ = cm.apply({"params": params["cm"]}, z)
    return losses.aecm_loss(x, x_bar, z, gamma, centroids(params["cm"]), alpha,
                            beta=config.beta, lam=config.lam, sort=sort)

  def cm_loss(params, batch, key):
    del key
    z = jax.lax.stop_gradient(encode(params, None, batch["x"]))
    gamma, _ = cm.apply({"params": params["cm"]}, z)
    return losses.cm_loss(z, gamma, centroids(params["cm"]), alpha, sort=sort)

  def wire_cm(params, state, start):
    return {**params, "cm": params_from_centroids(start.mu, config.centroid_encoder)}, state

  def criteria(params, state, x, gamma):
    return {"l_sp": sparsity_per_sample(gamma, centroids(params["cm"]))}

  def adam(trainable=None):
    return optimizer("adam", config.learning_rate, config.adam_eps, trainable)

  def joint_adam(steps_per_epoch):
    schedule = (polynomial_decay(config.learning_rate, 1e-4, 0.4,
                                 max(config.epochs * steps_per_epoch, 1))
                if config.lr_decay else config.learning_rate)
    return optimizer("adam", schedule, config.adam_eps)

  joint = SGDPhase("joint", (Update(stateless(joint_loss), joint_adam),), config.epochs,
                   config.batch_size, average=True, stop_below=config.tol or None)
  phases = (joint,)
  if config.init == "p":
    phases = (
        *pretraining.phases(spec, config),
        pretraining.start_phase(encode, config, config.num_clusters, wire_cm),
        SGDPhase("cm", (Update(stateless(cm_loss), adam({"cm"})),), config.cm_epochs,
                 config.batch_size),
        joint,
    )

  def decoded_centroids(params, state):
    del state
    return ae.apply({"params": params["autoencoder"]}, centroids(params["cm"]),
                    method=Autoencoder.decode)

  if config.init == "p":
    init = pretraining.init(spec, config, init)
  return Method("aecm", config.num_clusters, init, phases, predict, criteria,
                select_by="l_sp", encode=encode, decoded_centroids=decoded_centroids,
                autoencoder=spec.group if config.init == "p" else None)


# Tables this narrow get the d-2K-d autoencoder of the paper's UCI appendix
# (Table 9), and at most MAX_EPOCHS passes over a small table; both measured in
# experiments/results/scaled_defaults.md.
NARROW = 32
MAX_EPOCHS = 500


def scaled(num_samples: int, shape: tuple[int, ...], num_clusters: int,
           explicit) -> dict:
  """Defaults for data without a preset: batch N/25, MNIST's step budgets per phase."""
  out = scaled_sgd(num_samples, explicit, AECMConfig.epochs, max_epochs=MAX_EPOCHS)
  out |= scaled_sgd(num_samples, explicit, AECMConfig.pretrain_epochs,
                    max_epochs=MAX_EPOCHS, batch_key="pretrain_batch_size",
                    epochs_key="pretrain_epochs")
  # The CM-only phase trains in the joint phase's batches.
  out |= scaled_sgd(num_samples, {**out, **explicit}, AECMConfig.cm_epochs,
                    max_epochs=MAX_EPOCHS, epochs_key="cm_epochs")
  if shape and math.prod(shape) <= NARROW and num_clusters:
    out |= {"hidden": (), "latent": 2 * num_clusters}
  return {k: v for k, v in out.items() if k not in explicit}


registry.register(registry.MethodSpec(
    "aecm", AECMConfig, build, paper.AECM,
    "AE-CM (Boubekki et al. 2021): clustering module trained jointly with a deep autoencoder",
    scaled))
