"""The clustering module (CM) of Boubekki et al. (2021), eq. (6).

A one-hidden-layer autoencoder whose code is the responsibilities:
``gamma = softmax(x W_enc + b_enc)`` and ``x_bar = gamma W_dec + b_dec``.
Because each row of ``gamma`` sums to one, ``x_bar = gamma (W_dec + b_dec)``:
the centroids are ``mu = W_dec + b_dec`` (b broadcast over rows), the images
of the canonical basis under the decoder.
"""

from __future__ import annotations

import math

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


def params_from_centroids(mu: jax.Array) -> dict:
  """CM parameters whose centroids are ``mu`` (the paper's "p" initialisation).

  The decoder kernel is ``mu``, the encoder kernel its pseudo-inverse, both
  biases zero, so that encoding a centroid gives (nearly) its one-hot code.
  """
  num_clusters, features = mu.shape
  return {
      "encoder": {"kernel": jnp.linalg.pinv(mu), "bias": jnp.zeros(num_clusters, mu.dtype)},
      "decoder": {"kernel": mu, "bias": jnp.zeros(features, mu.dtype)},
  }
