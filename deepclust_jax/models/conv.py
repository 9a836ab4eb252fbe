"""Convolutions as shifted matrix products, for XLA:CPU inside a scanned epoch.

XLA:CPU runs the gradient of ``lax.conv_general_dilated`` far slower inside a
``while`` loop (the engine's scanned epoch) than outside one (jax issue 12868).
Measured on 2 loaded cores with jax 0.10.2: NMM-EM's C32 M C64 M F128 CNN,
batch 256, 12-20 s per scanned step against 0.5-2 s jitted alone; EDGaM's
Fashion-MNIST auto-encoder (Table 1), batch 256, 7.5 s per scanned step
against 1.0 s jitted alone. Written as one matrix product of the stacked
strided input windows (im2col) with the kernel reshaped to (taps x C_in, C_out),
the same function runs at the jitted-alone speed or faster inside the scan
(0.8 s per step of EDGaM's auto-encoder, same machine and load).

:func:`conv_general_dilated` is a drop-in for ``lax.conv_general_dilated``
that picks the shifted form on CPU; pass it to ``flax.linen.Conv`` (its
``conv_general_dilated`` attribute). A transposed convolution is the same
call with ``input_dilation`` (``nn.Conv(..., input_dilation=s)`` equals
``nn.ConvTranspose(..., strides=s)`` with the same explicit padding and
kernel), so one function serves every convolution of the library's models.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

_NHWC = ("NHWC", "HWIO", "NHWC")


def shifted_conv(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int],
                 padding: str | Sequence[tuple[int, int]],
                 lhs_dilation: Sequence[int] | None = None,
                 rhs_dilation: Sequence[int] | None = None,
                 dimension_numbers=None, feature_group_count: int = 1,
                 precision=None, preferred_element_type=None) -> jax.Array:
  """``lax.conv_general_dilated`` for 2-D NHWC inputs and HWIO kernels, as one matmul.

  ``out[:, i, j] = sum_{a, b} x_p[:, s_h i + a, s_w j + b] @ rhs[a, b]``, where
  ``x_p`` is ``lhs`` with ``lhs_dilation - 1`` zeros between its pixels and
  ``padding`` around them (one ``lax.pad``), computed as the windows of all
  taps stacked on the channel axis times the flattened kernel. Kernel
  dilation and feature groups are not supported.

  Example:
    >>> x = jax.random.normal(jax.random.key(0), (2, 7, 7, 3))
    >>> k = jax.random.normal(jax.random.key(1), (3, 3, 3, 4))
    >>> args = (x, k, (2, 2), [(1, 2), (1, 2)])
    >>> ref = lax.conv_general_dilated(*args, lhs_dilation=(2, 2), dimension_numbers=_NHWC)
    >>> bool(jnp.allclose(shifted_conv(*args, lhs_dilation=(2, 2)), ref, atol=1e-4))
    True
  """
  if lhs.ndim != 4 or rhs.ndim != 4:
    raise ValueError(f"shifted_conv takes 2-D convolutions (NHWC input, HWIO kernel), "
                     f"got input {lhs.shape} and kernel {rhs.shape}")
  if dimension_numbers is not None and (
      lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
      != lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)):
    raise ValueError(f"shifted_conv takes NHWC / HWIO / NHWC, got {dimension_numbers}")
  if feature_group_count != 1 or any(d != 1 for d in (rhs_dilation or ())):
    raise ValueError("shifted_conv supports neither feature groups nor kernel dilation")
  lhs_dilation = tuple(lhs_dilation or (1, 1))
  window = rhs.shape[:2]
  if isinstance(padding, str):
    dilated = [(n - 1) * d + 1 for n, d in zip(lhs.shape[1:3], lhs_dilation)]
    padding = lax.padtype_to_pads(dilated, window, window_strides, padding)
  x = lax.pad(lhs, jnp.zeros((), lhs.dtype),
              [(0, 0, 0), *((lo, hi, d - 1) for (lo, hi), d in zip(padding, lhs_dilation)),
               (0, 0, 0)])
  out_shape = [(n - k) // s + 1 for n, k, s in zip(x.shape[1:3], window, window_strides)]
  if min(out_shape) < 1:
    raise ValueError(f"kernel {window} does not fit the padded input {x.shape[1:3]}")

  def window_at(a: int, b: int) -> jax.Array:
    start = (0, a, b, 0)
    limit = (x.shape[0], *(o + (n - 1) * s + 1 for o, n, s in
                           zip((a, b), out_shape, window_strides)), x.shape[3])
    return lax.slice(x, start, limit, (1, *window_strides, 1))

  patches = jnp.concatenate([window_at(a, b) for a in range(window[0])
                             for b in range(window[1])], axis=-1)
  return jnp.matmul(patches, rhs.reshape(-1, rhs.shape[-1]), precision=precision,
                    preferred_element_type=preferred_element_type)


def conv_general_dilated(*args, **kwargs) -> jax.Array:
  """``lax.conv_general_dilated``, as :func:`shifted_conv` on CPU (see the module docstring).

  Example:
    >>> import flax.linen as nn
    >>> conv = nn.Conv(4, (3, 3), strides=2, conv_general_dilated=conv_general_dilated)
    >>> conv.init_with_output(jax.random.key(0), jnp.ones((1, 6, 6, 2)))[0].shape
    (1, 3, 3, 4)
  """
  if jax.default_backend() == "cpu":
    return shifted_conv(*args, **kwargs)
  return lax.conv_general_dilated(*args, **kwargs)
