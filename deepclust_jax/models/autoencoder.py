"""Fully connected autoencoders: the d-500-500-2000-p network of DEC and its heirs."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from deepclust_jax.models.cm import glorot, glorot_normal_bias


class MLP(nn.Module):
  """Dense layers with LeakyReLU between them and none after the last.

  Glorot-uniform kernels and Glorot-normal biases, as in the CM authors' code.

  Attributes:
    features: widths of the layers, the last one is the output.
    negative_slope: LeakyReLU slope (0.2 in the CM paper).
  """

  features: Sequence[int]
  negative_slope: float = 0.2

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i, width in enumerate(self.features):
      x = nn.Dense(width, kernel_init=glorot, bias_init=glorot_normal_bias,
                   name=f"dense_{i}")(x)
      if i + 1 < len(self.features):
        x = nn.leaky_relu(x, self.negative_slope)
    return x


def quadratic_features(x: jax.Array) -> jax.Array:
  """``(1, x_i, x_i x_j for i <= j)``: the monomials of degree at most 2.

  The CM paper's "quad" layer (appendix 1, the two circles of Fig. 8): an
  encoder that starts with it is a feature map of the polynomial kernel of
  degree 2, so a linear layer after it can separate concentric circles.

  Example:
    >>> quadratic_features(jax.numpy.array([[2.0, 3.0]])).tolist()
    [[1.0, 2.0, 3.0, 4.0, 6.0, 9.0]]
  """
  i, j = jnp.triu_indices(x.shape[-1])
  ones = jnp.ones(x.shape[:-1] + (1,), x.dtype)
  return jnp.concatenate([ones, x, x[..., i] * x[..., j]], axis=-1)


class Autoencoder(nn.Module):
  """``x -> z -> x_bar`` with mirrored encoder and decoder.

  Attributes:
    features: d, input width.
    latent: p, code width.
    hidden: encoder hidden widths; the decoder uses them reversed.
    quadratic: the encoder first maps x to :func:`quadratic_features` (the
      decoder stays a mirror of the dense layers).
    negative_slope: the hidden layers' LeakyReLU slope (0.2 in the CM paper;
      0 is DEC's ReLU).

  Example:
    >>> ae = Autoencoder(features=64, latent=10)
    >>> params = ae.init(jax.random.key(0), jax.numpy.zeros((1, 64)))["params"]
    >>> z, x_bar = ae.apply({"params": params}, jax.numpy.ones((5, 64)))
    >>> z.shape, x_bar.shape
    ((5, 10), (5, 64))
  """

  features: int
  latent: int
  hidden: Sequence[int] = (500, 500, 2000)
  quadratic: bool = False
  negative_slope: float = 0.2

  def setup(self):
    self.encoder = MLP((*self.hidden, self.latent), self.negative_slope)
    self.decoder = MLP((*reversed(self.hidden), self.features), self.negative_slope)

  def encode(self, x: jax.Array) -> jax.Array:
    return self.encoder(quadratic_features(x) if self.quadratic else x)

  def decode(self, z: jax.Array) -> jax.Array:
    return self.decoder(z)

  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    z = self.encode(x)
    return z, self.decode(z)
