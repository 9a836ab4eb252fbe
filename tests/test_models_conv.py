"""Shifted-matmul convolutions: the same function and gradient as lax's, on every layer we use."""

from __future__ import annotations

import doctest

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from deepclust_jax.models import conv
from deepclust_jax.models.conv import lax_conv_shifted_kernel_grad, max_pool, shifted_conv

NHWC = ("NHWC", "HWIO", "NHWC")

# (input side, kernel, window strides, padding, input dilation): the layers of
# NMM-EM's CNNs ('SAME') and EDGaM's auto-encoder (stride-2 convolutions,
# transposed ones as dilated inputs with asymmetric padding), plus odd sides.
CASES = [
    (8, 3, (1, 1), "SAME", (1, 1)),
    (7, 3, (1, 1), "VALID", (1, 1)),
    (28, 3, (2, 2), [(1, 1), (1, 1)], (1, 1)),
    (7, 3, (1, 1), [(1, 1), (1, 1)], (2, 2)),
    (14, 3, (1, 1), [(1, 2), (1, 2)], (2, 2)),
    (27, 3, (1, 1), [(2, 2), (2, 2)], (1, 1)),
    (9, 3, (2, 1), [(0, 1), (1, 0)], (1, 2)),
    (6, 2, (2, 2), "SAME", (1, 1)),
]


@pytest.mark.parametrize("side,k,strides,padding,dilation", CASES)
def test_shifted_conv_equals_lax_with_its_gradients(side, k, strides, padding, dilation):
  x = jax.random.normal(jax.random.key(0), (2, side, side + 1, 3))
  w = jax.random.normal(jax.random.key(1), (k, k, 3, 4))

  def run(fn):
    def f(x, w):
      return fn(x, w, strides, padding, lhs_dilation=dilation, dimension_numbers=NHWC)
    out, vjp = jax.vjp(f, x, w)
    cotangent = jax.random.normal(jax.random.key(2), out.shape)
    return out, *vjp(cotangent)

  for ours, ref in zip(run(shifted_conv), run(lax.conv_general_dilated)):
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)


# The stride-1 layers, which conv_general_dilated runs as lax_conv_shifted_kernel_grad
# on CPU: 'SAME', 'VALID', explicit and asymmetric paddings, one wider than the kernel.
STRIDE_1 = [(8, "SAME"), (7, "VALID"), (9, [(1, 2), (0, 1)]), (6, [(2, 2), (2, 2)])]


@pytest.mark.parametrize("side,padding", STRIDE_1)
def test_stride_1_conv_equals_lax_with_its_gradients(side, padding):
  x = jax.random.normal(jax.random.key(0), (2, side, side + 1, 3))
  w = jax.random.normal(jax.random.key(1), (3, 3, 3, 4))

  def run(fn):
    out, vjp = jax.vjp(lambda x, w: fn(x, w, (1, 1), padding, dimension_numbers=NHWC), x, w)
    return out, *vjp(jax.random.normal(jax.random.key(2), out.shape))

  for ours, ref in zip(run(lax_conv_shifted_kernel_grad), run(lax.conv_general_dilated)):
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("batched", [(0, 0), (0, None), (None, 0)])
def test_stride_1_conv_under_vmap_equals_each_run_alone(batched):
  # The engine's runs: per-run kernels (mapped one by one), or a shared kernel
  # or shared images; the value and both gradients must be each run's own.
  runs = 3
  x = jax.random.normal(jax.random.key(0), (runs, 2, 6, 5, 3))
  w = jax.random.normal(jax.random.key(1), (runs, 3, 3, 3, 4))
  x_in, w_in = (x if batched[0] == 0 else x[0]), (w if batched[1] == 0 else w[0])

  def loss(x, w):
    out = lax_conv_shifted_kernel_grad(x, w, (1, 1), "SAME", dimension_numbers=NHWC)
    return jnp.sum(jnp.sin(out)), out

  def ref(x, w):
    out = lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=NHWC)
    return jnp.sum(jnp.sin(out)), out

  grads = jax.jit(jax.vmap(jax.grad(loss, (0, 1), has_aux=True), batched))(x_in, w_in)
  for r in range(runs):
    expected = jax.grad(ref, (0, 1), has_aux=True)(x[r] if batched[0] == 0 else x[0],
                                                   w[r] if batched[1] == 0 else w[0])
    for ours, theirs in zip(jax.tree.leaves(grads), jax.tree.leaves(expected)):
      np.testing.assert_allclose(ours[r], theirs, rtol=1e-4, atol=1e-4)


def test_nested_vmap_maps_every_kernel():
  x = jax.random.normal(jax.random.key(0), (2, 3, 1, 5, 5, 2))
  w = jax.random.normal(jax.random.key(1), (2, 3, 3, 3, 2, 4))
  fn = lambda x, w: lax_conv_shifted_kernel_grad(x, w, (1, 1), "VALID", dimension_numbers=NHWC)
  ref = lambda x, w: lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=NHWC)
  np.testing.assert_allclose(jax.vmap(jax.vmap(fn))(x, w), jax.vmap(jax.vmap(ref))(x, w),
                             rtol=1e-4, atol=1e-4)


def test_stride_1_conv_refuses_strides_and_input_dilation():
  x, w = jnp.ones((1, 6, 6, 2)), jnp.ones((3, 3, 2, 2))
  for kwargs in ({"window_strides": (2, 2)}, {"window_strides": (1, 1), "lhs_dilation": (2, 2)}):
    with pytest.raises(ValueError, match="unit strides"):
      lax_conv_shifted_kernel_grad(x, w, padding="SAME", **kwargs)


@pytest.mark.parametrize("shape,window", [((2, 8, 8, 3), (2, 2)), ((2, 7, 9, 2), (2, 2)),
                                          ((1, 9, 6, 2), (3, 2))])
def test_max_pool_equals_flax_with_its_gradient_on_ties(shape, window):
  # Rounded values tie often, ReLU zeros too: the gradient must pick the element lax picks.
  x = jnp.round(jax.random.normal(jax.random.key(0), shape) * 2) / 2
  x = jax.nn.relu(x)
  g = jax.random.normal(jax.random.key(1), tuple(
      [shape[0], shape[1] // window[0], shape[2] // window[1], shape[3]]))

  def run(fn):
    out, vjp = jax.vjp(fn, x)
    return out, vjp(g)[0]

  ours = run(lambda x: max_pool(x, window))
  ref = run(lambda x: nn.max_pool(x, window, strides=window))
  for a, b in zip(ours, ref):
    np.testing.assert_array_equal(a, b)


def test_conv_module_with_input_dilation_is_flax_conv_transpose():
  # EDGaM's decoder relies on this: same kernel shape, same function.
  x = jax.random.normal(jax.random.key(0), (2, 7, 7, 16))
  padding = [(1, 2), (1, 2)]
  transpose = nn.ConvTranspose(32, (3, 3), strides=(2, 2), padding=padding)
  dilated = nn.Conv(32, (3, 3), padding=padding, input_dilation=2,
                    conv_general_dilated=conv.conv_general_dilated)
  variables = transpose.init(jax.random.key(1), x)
  np.testing.assert_allclose(dilated.apply(variables, x), transpose.apply(variables, x),
                             rtol=1e-5, atol=1e-5)
  assert dilated.apply(variables, x).shape == (2, 14, 14, 32)


def test_shifted_conv_in_a_scan_has_the_jitted_gradient():
  # The reason it exists: inside lax.scan (the engine's epoch) it must give the same steps.
  xs = jax.random.normal(jax.random.key(0), (3, 2, 6, 6, 2))
  w0 = jax.random.normal(jax.random.key(1), (3, 3, 2, 2)) * 0.3

  def step(fn):
    def body(w, x):
      g = jax.grad(lambda w: jnp.sum(jnp.tanh(fn(x, w, (1, 1), "SAME",
                                                 dimension_numbers=NHWC)) ** 2))(w)
      return w - 0.1 * g, None
    return jax.jit(lambda w: lax.scan(body, w, xs)[0])

  np.testing.assert_allclose(step(shifted_conv)(w0), step(lax.conv_general_dilated)(w0),
                             rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kwargs,match", [
    ({"feature_group_count": 2}, "feature groups"),
    ({"rhs_dilation": (2, 2)}, "kernel dilation"),
    ({"dimension_numbers": ("NCHW", "OIHW", "NCHW")}, "NHWC"),
])
def test_unsupported_arguments_are_named(kwargs, match):
  x, w = jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 2))
  with pytest.raises(ValueError, match=match):
    shifted_conv(x, w, (1, 1), "SAME", **kwargs)


def test_rejects_a_kernel_larger_than_the_input():
  with pytest.raises(ValueError, match="does not fit"):
    shifted_conv(jnp.ones((1, 2, 2, 1)), jnp.ones((3, 3, 1, 1)), (1, 1), "VALID")


def test_docstring_examples():
  result = doctest.testmod(conv, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.attempted > 0 and result.failed == 0
