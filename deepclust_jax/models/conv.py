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

The slow part is the kernel gradient: lax's own forward convolution, and the
input gradient of a stride-1 one written as a forward convolution, run fast
inside the scan (faster than the stacked windows, which are never stored).
So a stride-1 convolution without input dilation keeps lax's value and input
gradient and takes only its kernel gradient as a matmul of the windows
(:func:`lax_conv_shifted_kernel_grad`): NMM-EM's two-fold MNIST step, 0.72 ->
0.52 s of process CPU per scanned step, max-pooling included
(:func:`max_pool`, whose gradient XLA:CPU's ``select_and_scatter`` made slow).

:func:`conv_general_dilated` is a drop-in for ``lax.conv_general_dilated``
that picks these forms on CPU; pass it to ``flax.linen.Conv`` (its
``conv_general_dilated`` attribute). A transposed convolution is the same
call with ``input_dilation`` (``nn.Conv(..., input_dilation=s)`` equals
``nn.ConvTranspose(..., strides=s)`` with the same explicit padding and
kernel), so one function serves every convolution of the library's models.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax import lax

_NHWC = ("NHWC", "HWIO", "NHWC")


def _check(lhs, rhs, dimension_numbers, feature_group_count, rhs_dilation) -> None:
  """Refuses what :func:`shifted_conv` does not compute."""
  if lhs.ndim != 4 or rhs.ndim != 4:
    raise ValueError(f"shifted_conv takes 2-D convolutions (NHWC input, HWIO kernel), "
                     f"got input {lhs.shape} and kernel {rhs.shape}")
  if dimension_numbers is not None and (
      lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
      != lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)):
    raise ValueError(f"shifted_conv takes NHWC / HWIO / NHWC, got {dimension_numbers}")
  if feature_group_count != 1 or any(d != 1 for d in (rhs_dilation or ())):
    raise ValueError("shifted_conv supports neither feature groups nor kernel dilation")


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
  _check(lhs, rhs, dimension_numbers, feature_group_count, rhs_dilation)
  patches = jnp.concatenate(_tap_windows(lhs, rhs.shape[:2], window_strides, padding,
                                         lhs_dilation), axis=-1)
  return jnp.matmul(patches, rhs.reshape(-1, rhs.shape[-1]), precision=precision,
                    preferred_element_type=preferred_element_type)


def _tap_windows(lhs: jax.Array, window: Sequence[int], window_strides: Sequence[int],
                 padding: str | Sequence[tuple[int, int]],
                 lhs_dilation: Sequence[int] | None) -> list[jax.Array]:
  """The strided input windows of every kernel tap, row-major, each (B, H_out, W_out, C)."""
  lhs_dilation = tuple(lhs_dilation or (1, 1))
  if isinstance(padding, str):
    dilated = [(n - 1) * d + 1 for n, d in zip(lhs.shape[1:3], lhs_dilation)]
    padding = lax.padtype_to_pads(dilated, window, window_strides, padding)
  x = lax.pad(lhs, jnp.zeros((), lhs.dtype),
              [(0, 0, 0), *((lo, hi, d - 1) for (lo, hi), d in zip(padding, lhs_dilation)),
               (0, 0, 0)])
  out_shape = [(n - k) // s + 1 for n, k, s in zip(x.shape[1:3], window, window_strides)]
  if min(out_shape) < 1:
    raise ValueError(f"kernel {tuple(window)} does not fit the padded input {x.shape[1:3]}")

  def window_at(a: int, b: int) -> jax.Array:
    start = (0, a, b, 0)
    limit = (x.shape[0], *(o + (n - 1) * s + 1 for o, n, s in
                           zip((a, b), out_shape, window_strides)), x.shape[3])
    return lax.slice(x, start, limit, (1, *window_strides, 1))

  return [window_at(a, b) for a in range(window[0]) for b in range(window[1])]


def lax_conv_shifted_kernel_grad(lhs: jax.Array, rhs: jax.Array,
                                 window_strides: Sequence[int],
                                 padding: str | Sequence[tuple[int, int]],
                                 lhs_dilation: Sequence[int] | None = None,
                                 rhs_dilation: Sequence[int] | None = None,
                                 dimension_numbers=None, feature_group_count: int = 1,
                                 precision=None, preferred_element_type=None) -> jax.Array:
  """A stride-1 ``lax.conv_general_dilated`` whose kernel gradient is a matmul of its windows.

  The value is lax's, and so is the input gradient, written as the 'full'
  convolution of the output gradient with the flipped kernel: XLA:CPU runs
  both fast inside a scan, faster than :func:`shifted_conv`'s stacked windows
  (which need not be stored). The kernel gradient, the convolution XLA:CPU
  runs slowly inside a scan, is the input's tap windows times the output
  gradient, as in :func:`shifted_conv`, but with the windows stacked
  channel-major, (taps x C_in, B x H x W): a plain matmul, where the
  channel-last windows would make XLA transpose the output gradient first (up
  to 37 ms a step for NMM-EM's first layer). Same function, same gradients;
  takes :func:`shifted_conv`'s arguments, with unit strides and no input
  dilation.

  Example:
    >>> x = jax.random.normal(jax.random.key(0), (2, 6, 6, 3))
    >>> k = jax.random.normal(jax.random.key(1), (3, 3, 3, 4))
    >>> def grads(conv):
    ...   loss = lambda x, k: jnp.sum(conv(x, k, (1, 1), "SAME", dimension_numbers=_NHWC) ** 2)
    ...   return jax.grad(loss, (0, 1))(x, k)
    >>> ours, ref = grads(lax_conv_shifted_kernel_grad), grads(lax.conv_general_dilated)
    >>> all(bool(jnp.allclose(a, b, rtol=1e-4, atol=1e-3)) for a, b in zip(ours, ref))
    True
  """
  _check(lhs, rhs, dimension_numbers, feature_group_count, rhs_dilation)
  if any(s != 1 for s in window_strides) or any(d != 1 for d in lhs_dilation or ()):
    raise ValueError(f"lax_conv_shifted_kernel_grad takes unit strides and no input "
                     f"dilation, got {window_strides} and {lhs_dilation}")
  window = rhs.shape[:2]
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs.shape[1:3], window, window_strides, padding)
  padding = [tuple(p) for p in padding]
  options = {"precision": precision, "preferred_element_type": preferred_element_type}
  forward = per_kernel(lambda x, w: lax.conv_general_dilated(
      x, w, window_strides, padding, dimension_numbers=_NHWC, **options))

  @jax.custom_vjp
  def conv(x, w):
    return forward(x, w)

  def conv_fwd(x, w):
    return conv(x, w), (x, w)

  def conv_bwd(residuals, g):
    x, w = residuals
    # An explicit flip and transpose: lax's own transpose rule keeps the kernel
    # as is, with swapped dimension numbers, which XLA:CPU runs 2x slower.
    flipped = jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2)
    full = [(k - 1 - lo, k - 1 - hi) for k, (lo, hi) in zip(window, padding)]
    dx = per_kernel(lambda g, w: lax.conv_general_dilated(
        g, w, (1, 1), full, dimension_numbers=_NHWC, **options))(g, flipped).astype(x.dtype)
    windows = _channel_major_windows(x, window, padding)
    dw = jnp.matmul(windows, g.reshape(-1, g.shape[-1]), **options)
    return dx, dw.reshape(w.shape).astype(w.dtype)

  conv.defvjp(conv_fwd, conv_bwd)
  return conv(lhs, rhs)


def per_kernel(conv: Callable[[jax.Array, jax.Array], jax.Array]
               ) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """``conv(x, w)`` (NHWC, HWIO) whose ``vmap`` runs one convolution per kernel.

  Under ``vmap`` with a batched kernel (the engine's runs, each with its own
  parameters) lax folds the runs into feature groups, and XLA:CPU runs that
  grouped convolution 3 to 5 times slower than the runs one after the other
  (NMM-EM's MNIST layers, batch 128, forward and backward, 2 runs inside a
  scan, process CPU: 57, 90 and 100 ms a step against 11, 34 and 34; mapped,
  19, 37 and 33). So a batched kernel maps over the runs (``lax.map``) and
  a shared one takes the runs' images as one larger batch.

  Example:
    >>> conv = per_kernel(lambda x, w: lax.conv_general_dilated(
    ...     x, w, (1, 1), "SAME", dimension_numbers=_NHWC))
    >>> x, w = jnp.ones((2, 1, 4, 4, 1)), jnp.ones((2, 3, 3, 1, 1))
    >>> jax.vmap(conv)(x, w).shape
    (2, 1, 4, 4, 1)
  """
  mapped = jax.custom_batching.custom_vmap(conv)

  @mapped.def_vmap
  def rule(axis_size, in_batched, x, w):
    x_batched, w_batched = in_batched
    if not w_batched:
      out = mapped(x.reshape(-1, *x.shape[2:]), w)
      return out.reshape(axis_size, -1, *out.shape[1:]), True
    if not x_batched:
      x = jnp.broadcast_to(x, (axis_size, *x.shape))
    return lax.map(lambda xw: mapped(*xw), (x, w)), True

  return mapped


def _channel_major_windows(x: jax.Array, window: Sequence[int],
                           padding: Sequence[tuple[int, int]]) -> jax.Array:
  """The stride-1 tap windows of NHWC ``x``, (taps x C, B x H_out x W_out), taps row-major.

  Stacked in two passes, the row shifts of the padded channel-major input
  then the column shifts of those: XLA:CPU fuses neither stack with its
  slices, and two stacks of 3 move less than one of 9 slices copied apart
  (NMM-EM's MNIST kernel gradients, 21.6 -> 19.5 and 26.2 -> 23.4 ms of
  process CPU a call on 2 cores).

  Example:
    >>> x = jnp.arange(8.0).reshape(1, 2, 2, 2)
    >>> _channel_major_windows(x, (1, 2), [(0, 0), (0, 1)]).tolist()
    [[0.0, 2.0, 4.0, 6.0], [1.0, 3.0, 5.0, 7.0], [2.0, 0.0, 6.0, 0.0], [3.0, 0.0, 7.0, 0.0]]
  """
  (kh, kw), c = window, x.shape[3]
  x = lax.pad(x.transpose(3, 0, 1, 2), jnp.zeros((), x.dtype),
              [(0, 0, 0), (0, 0, 0), *((lo, hi, 0) for lo, hi in padding)])
  h, w = x.shape[2] - kh + 1, x.shape[3] - kw + 1
  if min(h, w) < 1:
    raise ValueError(f"kernel {tuple(window)} does not fit the padded input {x.shape[2:]}")
  rows = jnp.stack([x[:, :, a:a + h] for a in range(kh)])
  windows = jnp.stack([rows[..., b:b + w] for b in range(kw)], axis=1)
  return windows.reshape(kh * kw * c, -1)


def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int],
                         padding: str | Sequence[tuple[int, int]], *args,
                         lhs_dilation: Sequence[int] | None = None, **kwargs) -> jax.Array:
  """``lax.conv_general_dilated``, CPU-fast inside a scan (see the module docstring).

  On CPU a stride-1 convolution without input dilation is
  :func:`lax_conv_shifted_kernel_grad`, any other :func:`shifted_conv`.

  Example:
    >>> import flax.linen as nn
    >>> conv = nn.Conv(4, (3, 3), strides=2, conv_general_dilated=conv_general_dilated)
    >>> conv.init_with_output(jax.random.key(0), jnp.ones((1, 6, 6, 2)))[0].shape
    (1, 3, 3, 4)
  """
  if jax.default_backend() != "cpu":
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, *args,
                                    lhs_dilation=lhs_dilation, **kwargs)
  # The input gradient of a strided or input-dilated convolution is an
  # input-dilated or strided one, not measured fast inside a scan: kept as matmuls.
  if all(s == 1 for s in window_strides) and all(d == 1 for d in lhs_dilation or ()):
    return lax_conv_shifted_kernel_grad(lhs, rhs, window_strides, padding, *args,
                                        lhs_dilation=lhs_dilation, **kwargs)
  return shifted_conv(lhs, rhs, window_strides, padding, *args, lhs_dilation=lhs_dilation,
                      **kwargs)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def max_pool(x: jax.Array, window: tuple[int, int]) -> jax.Array:
  """``flax.linen.max_pool(x, window, strides=window)`` ('VALID'), gradient included.

  Non-overlapping windows of NHWC images, as a reshape and a max. The gradient
  goes, as lax's ``select_and_scatter_add`` sends it, to the first maximal
  element of each window in row-major order; XLA:CPU runs that scatter some
  six times slower than this function's masks (62 against 11 ms for a
  128x28x28x64 batch, forward and backward, 2 cores). Rows and columns that
  fill no window are dropped, their gradient is zero.

  Example:
    >>> x = jnp.array([[1.0, 3.0, 0.0], [3.0, 2.0, 0.0], [0.0, 0.0, 9.0]])[None, :, :, None]
    >>> max_pool(x, (2, 2))[0, :, :, 0].tolist()
    [[3.0]]
    >>> jax.grad(lambda x: max_pool(x, (2, 2)).sum())(x)[0, :, :, 0].tolist()  # first of the ties
    [[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
  """
  return jnp.max(_pool_windows(x, window), axis=(2, 4))


def _pool_windows(x: jax.Array, window: tuple[int, int]) -> jax.Array:
  """(B, H, W, C) as (B, H // wh, wh, W // ww, ww, C), the remainder dropped."""
  (b, h, w, c), (wh, ww) = x.shape, window
  x = x[:, :h - h % wh, :w - w % ww]
  return x.reshape(b, h // wh, wh, w // ww, ww, c)


def _max_pool_fwd(x, window):
  return max_pool(x, window), x


def _max_pool_bwd(window, x, g):
  (wh, ww), windows = window, _pool_windows(x, window)
  out = jnp.max(windows, axis=(2, 4))
  zero = jnp.zeros((), g.dtype)
  # Walk each window in row-major order; the first element equal to the max takes g.
  taken = jnp.zeros(out.shape, bool)
  rows = []
  for a in range(wh):
    row = []
    for b in range(ww):
      first = (windows[:, :, a, :, b] == out) & ~taken
      taken = taken | first
      row.append(jnp.where(first, g, zero))
    rows.append(jnp.stack(row, axis=3))
  (n, h, w, c), dwindows = x.shape, jnp.stack(rows, axis=2)
  dx = dwindows.reshape(n, h - h % wh, w - w % ww, c)
  return (jnp.pad(dx, ((0, 0), (0, h % wh), (0, w % ww), (0, 0))),)


max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)
