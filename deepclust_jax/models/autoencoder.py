"""Fully connected autoencoders: the d-500-500-2000-p network of DEC and its heirs."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from deepclust_jax.models.cm import glorot, glorot_normal_bias


MatmulDtype = Literal["float32", "bfloat16", "tf32"]


def _tf32(a: jax.Array) -> jax.Array:
  return lax.reduce_precision(a, exponent_bits=8, mantissa_bits=10)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _tf32_dot(lhs: jax.Array, rhs: jax.Array, dimension_numbers) -> jax.Array:
  """``dot_general`` of TF32-rounded operands, forward and backward, as a GPU computes it."""
  return lax.dot_general(_tf32(lhs), _tf32(rhs), dimension_numbers)


def _tf32_dot_fwd(lhs, rhs, dimension_numbers):
  lhs, rhs = _tf32(lhs), _tf32(rhs)
  return lax.dot_general(lhs, rhs, dimension_numbers), (lhs, rhs)


def _tf32_dot_bwd(dimension_numbers, rounded, g):
  # The backward products round their operands too (the cotangent included);
  # the rounding itself passes the gradient straight through.
  _, vjp = jax.vjp(lambda a, b: lax.dot_general(a, b, dimension_numbers), *rounded)
  return vjp(_tf32(g))


_tf32_dot.defvjp(_tf32_dot_fwd, _tf32_dot_bwd)


@jax.custom_vjp
def _bf16_dense(x: jax.Array, w: jax.Array) -> jax.Array:
  """``x @ w`` of bfloat16 operands, float32 sums; see :func:`dot_general`."""
  return _bf16_dense_fwd(x, w)[0]


def _bf16_dense_fwd(x, w):
  y = lax.dot_general(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16),
                      (((x.ndim - 1,), (0,)), ((), ())), preferred_element_type=jnp.float32)
  return y, (x, w)


def _bf16_dense_bwd(res, g):
  x, w = res
  # The input's gradient ``g @ w.T`` takes bfloat16 operands like the forward
  # product (twice float32's rate on AVX512-BF16); the weight's ``x.T @ g``
  # sums over the batch, where bfloat16 gains nothing, so it stays float32.
  dx = lax.dot_general(g.astype(jnp.bfloat16), w.astype(jnp.bfloat16),
                       (((g.ndim - 1,), (1,)), ((), ())), preferred_element_type=jnp.float32)
  batch = tuple(range(x.ndim - 1))
  dw = lax.dot_general(x, g, ((batch, batch), ((), ())))
  return dx, dw


_bf16_dense.defvjp(_bf16_dense_fwd, _bf16_dense_bwd)


def dot_general(matmul_dtype: MatmulDtype) -> Callable[..., jax.Array]:
  """A ``lax.dot_general`` whose operands are cast to ``matmul_dtype``.

  ``"bfloat16"`` is mixed precision: parameters, activations, gradients and
  the accumulation stay float32; the operands of the forward product and of
  the input-gradient product are rounded to bfloat16 (8 bits of mantissa),
  which CPUs with AVX512-BF16 (or AMX) and accelerators multiply about twice
  as fast. The weight-gradient product, a sum over the batch, keeps float32
  operands: bfloat16 does not speed it up and would round every example's
  share; only nn.Dense's contraction ``x[..., k] @ w[k, n]`` is supported.
  ``"tf32"`` rounds the operands to TensorFloat-32 (float32's exponent, 10
  bits of mantissa) with ``lax.reduce_precision``, still float32 arrays: on a
  CPU it emulates the products NVIDIA GPUs compute for float32 at JAX's
  default precision, to test whether a result that only a GPU gives comes
  from them.

  Example:
    >>> a = jnp.full((2, 3), 1.001)
    >>> dims = (((1,), (0,)), ((), ()))
    >>> exact, mixed = dot_general("float32")(a, a.T, dims), dot_general("bfloat16")(a, a.T, dims)
    >>> round(float(exact[0, 0]), 4), float(mixed[0, 0]), mixed.dtype  # 1.001 rounds to 1
    (3.006, 3.0, dtype('float32'))
    >>> round(float(dot_general("tf32")(a, a.T, dims)[0, 0]), 6)  # 3 (1 + 2^-10)^2
    3.005862
  """
  if matmul_dtype == "float32":
    return lax.dot_general
  if matmul_dtype == "tf32":
    def dot_tf32(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
      del precision, preferred_element_type  # float32 in, float32 accumulation
      return _tf32_dot(lhs, rhs, dimension_numbers)

    return dot_tf32

  def dot_bf16(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    del precision, preferred_element_type  # bfloat16 in, float32 accumulation
    dense = [[lhs.ndim - 1], [0], [], []]  # contracting lhs, rhs; batch lhs, rhs
    if rhs.ndim != 2 or [list(d) for pair in dimension_numbers for d in pair] != dense:
      raise ValueError("matmul_dtype=bfloat16 supports nn.Dense's x[..., k] @ w[k, n] only, "
                       f"got dimension_numbers={dimension_numbers}")
    return _bf16_dense(lhs, rhs)

  return dot_bf16


class MLP(nn.Module):
  """Dense layers with LeakyReLU between them and none after the last.

  Glorot-uniform kernels and Glorot-normal biases, as in the CM authors' code.

  Attributes:
    features: widths of the layers, the last one is the output.
    negative_slope: LeakyReLU slope (0.2 in the CM paper).
    matmul_dtype: the dtype of the products' operands (:func:`dot_general`).
  """

  features: Sequence[int]
  negative_slope: float = 0.2
  matmul_dtype: MatmulDtype = "float32"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i, width in enumerate(self.features):
      x = nn.Dense(width, kernel_init=glorot, bias_init=glorot_normal_bias,
                   dot_general=dot_general(self.matmul_dtype), name=f"dense_{i}")(x)
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
    matmul_dtype: the dtype of the products' operands (:func:`dot_general`).

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
  matmul_dtype: MatmulDtype = "float32"

  def setup(self):
    self.encoder = MLP((*self.hidden, self.latent), self.negative_slope, self.matmul_dtype)
    self.decoder = MLP((*reversed(self.hidden), self.features), self.negative_slope,
                       self.matmul_dtype)

  def encode(self, x: jax.Array) -> jax.Array:
    return self.encoder(quadratic_features(x) if self.quadratic else x)

  def decode(self, z: jax.Array) -> jax.Array:
    return self.decoder(z)

  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    z = self.encode(x)
    return z, self.decode(z)
