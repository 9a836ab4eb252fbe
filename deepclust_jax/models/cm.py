"""The clustering module (CM) of Boubekki et al. (2021), eq. (6).

A one-hidden-layer autoencoder whose code is the responsibilities:
``gamma = softmax(x W_enc + b_enc)`` and ``x_bar = gamma W_dec + b_dec``.
Because each row of ``gamma`` sums to one, ``x_bar = gamma (W_dec + b_dec)``:
the centroids are ``mu = W_dec + b_dec`` (b broadcast over rows), the images
of the canonical basis under the decoder.
"""

from __future__ import annotations

import math
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

glorot = nn.initializers.glorot_uniform()


def glorot_normal_bias(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
  """Keras's ``glorot_normal`` on a bias: truncated normal with variance 1/n.

  The CM authors' code initialises every bias this way (Keras takes
  fan_in = fan_out = n for a 1-D shape). Random biases matter: with zero biases
  a randomly initialised AE-CM starts at uniform responsibilities, a stationary
  point of the sparsity term, and can stay there.
  """
  # 0.8796 is the std of a standard normal truncated to [-2, 2].
  std = math.sqrt(1.0 / shape[-1]) / 0.87962566103423978
  return std * jax.random.truncated_normal(key, -2.0, 2.0, shape, dtype)


class ClusteringModule(nn.Module):
  """CM: softmax encoder, affine decoder (Glorot kernels and biases).

  Attributes:
    num_clusters: K.
    features: d, the width of the reconstructed input.

  Example:
    >>> cm = ClusteringModule(num_clusters=3, features=2)
    >>> params = cm.init(jax.random.key(0), jnp.zeros((1, 2)))["params"]
    >>> gamma, x_bar = cm.apply({"params": params}, jnp.ones((4, 2)))
    >>> gamma.shape, x_bar.shape, centroids(params).shape
    ((4, 3), (4, 2), (3, 2))
  """

  num_clusters: int
  features: int

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    gamma = nn.softmax(nn.Dense(self.num_clusters, kernel_init=glorot,
                                  bias_init=glorot_normal_bias, name="encoder")(x))
    x_bar = nn.Dense(self.features, kernel_init=glorot, bias_init=glorot_normal_bias,
                     name="decoder")(gamma)
    return gamma, x_bar


def centroids(params) -> jax.Array:
  """``mu = W_dec + b_dec``, (K, d), from the CM's parameters."""
  return params["decoder"]["kernel"] + params["decoder"]["bias"]


def params_from_centroids(mu: jax.Array,
                          encoder: Literal["nearest", "pinv"] = "nearest") -> dict:
  """CM parameters whose centroids are ``mu`` (the "p" initialisation).

  The decoder kernel is ``mu`` with a zero bias. The encoder is either

  * ``"nearest"``: logits ``2 x mu^T - ||mu_k||^2``, which differ from
    ``-||x - mu_k||^2`` by a per-row constant: the E-step of the CM's own
    isotropic Gaussian model, so ``argmax gamma`` is the nearest centroid for
    any centroids; or
  * ``"pinv"``: the pseudo-inverse of ``mu`` with a zero bias, as in the
    paper's section 4.2.2 and the authors' code. It reproduces nearest-centroid
    labels only for (near-)orthonormal centroids; k-means centroids of raw
    codes share a large offset and are ill-conditioned, which starts the CM far
    from the k-means partition with saturated responsibilities.

  Example:
    >>> mu = jnp.array([[0.0, 0.0], [4.0, 4.0]])
    >>> params = params_from_centroids(mu)
    >>> gamma, _ = ClusteringModule(2, 2).apply({"params": params}, jnp.array([[3.0, 3.0]]))
    >>> int(gamma.argmax())
    1
  """
  num_clusters, features = mu.shape
  if encoder == "nearest":
    kernel, bias = 2.0 * mu.T, -jnp.sum(jnp.square(mu), axis=-1)
  else:
    kernel, bias = jnp.linalg.pinv(mu), jnp.zeros(num_clusters, mu.dtype)
  return {
      "encoder": {"kernel": kernel, "bias": bias},
      "decoder": {"kernel": mu, "bias": jnp.zeros(features, mu.dtype)},
  }
