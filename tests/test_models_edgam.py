"""EDGaM auto-encoders (appendix Table 1): shapes, dropout and BatchNorm modes."""

from __future__ import annotations

import doctest

import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deepclust_jax.models import edgam as edgam_module
from deepclust_jax.models.edgam import EDGaMAutoencoder, EDGaMConvAutoencoder

B = 3
# Small widths for the runs that compute; the shape tests use Table 1's.
SMALL_MLP = EDGaMAutoencoder(features=6, hidden=(8, 8, 16))
# Non-square and not a paper size: each side takes its own output paddings.
SMALL_CONV = EDGaMConvAutoencoder(image_shape=(12, 8, 2))


def cheap_variables(model, x: jax.Array, seed: int = 0) -> dict:
  """Variables shaped by ``model.init`` but drawn with numpy: compiling the Glorot and
  truncated-normal initialisers for every shape would dominate this file's run time.

  BatchNorm starts as ``init`` leaves it: running means 0, variances 1.
  """
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)

  def draw(path, leaf):
    name = jax.tree_util.keystr(path)
    if "batch_stats" in name:
      return jnp.full(leaf.shape, 1.0 if name.endswith("['var']") else 0.0, leaf.dtype)
    return jnp.asarray(0.3 * rng.normal(size=leaf.shape), leaf.dtype)

  return jax.tree_util.tree_map_with_path(draw, shapes)


def kernel_shapes(params) -> dict[str, tuple[int, ...]]:
  flat = flax.traverse_util.flatten_dict(params, sep="/")
  return {name[:-len("/kernel")]: leaf.shape for name, leaf in flat.items()
          if name.endswith("/kernel")}


def test_mlp_shapes_are_table_1():
  ae = EDGaMAutoencoder(features=784)
  x = jnp.zeros((B, 784))
  variables = jax.eval_shape(ae.init, jax.random.key(0), x)  # shapes only, no compilation
  assert kernel_shapes(variables["params"]) == {
      "encoder/dense_0": (784, 500), "encoder/dense_1": (500, 500),
      "encoder/dense_2": (500, 2000), "encoder/dense_3": (2000, 10),
      "decoder/dense_0": (10, 2000), "decoder/dense_1": (2000, 500),
      "decoder/dense_2": (500, 500), "decoder/dense_3": (500, 784),
  }
  z, x_rec = jax.eval_shape(ae.apply, variables, x)
  chex.assert_shape([z, x_rec], [(B, 10), (B, 784)])


@pytest.mark.parametrize("image_shape,inner", [((28, 28, 1), 16 * 7 * 7),
                                               ((55, 55, 3), 16 * 14 * 14)],
                         ids=["fashion", "ytf"])
def test_conv_shapes_are_table_1(image_shape, inner):
  ae = EDGaMConvAutoencoder(image_shape=image_shape)
  x = jnp.zeros((B, *image_shape))
  variables = jax.eval_shape(ae.init, jax.random.key(0), x)
  channels = image_shape[-1]
  assert kernel_shapes(variables["params"]) == {
      "convs_0": (3, 3, channels, 16), "convs_1": (3, 3, 16, 32),
      "convs_2": (3, 3, 32, 32), "convs_3": (3, 3, 32, 16),
      "encoder_hidden": (inner, 256), "encoder_out": (256, 10),
      "decoder_hidden": (10, 256), "decoder_inner": (256, inner),
      "deconvs_0": (3, 3, 16, 32), "deconvs_1": (3, 3, 32, 32),
      "deconvs_2": (3, 3, 32, 16), "decoder_out": (3, 3, 16, channels),
  }
  assert len(variables["batch_stats"]) == 7  # BatchNorm after every conv but the last
  z, x_rec = jax.eval_shape(ae.apply, variables, x)
  chex.assert_shape([z, x_rec], [(B, 10), (B, *image_shape)])
  z_hat = jax.ShapeDtypeStruct((B, 10), jnp.float32)
  chex.assert_shape(jax.eval_shape(lambda v, z: ae.apply(v, z, method=ae.decode),
                                   variables, z_hat), (B, *image_shape))


def test_conv_rejects_a_size_table_1_cannot_return():
  x = jnp.zeros((1, 26, 26, 1))  # 26 -> 13 -> 7, but the decoder goes 7 -> 13 or 14 -> 26 + 2
  with pytest.raises(ValueError, match="image_shape"):
    jax.eval_shape(EDGaMConvAutoencoder(image_shape=(26, 26, 1)).init, jax.random.key(0), x)


def test_dropout_only_in_training_with_an_rng():
  x = jax.random.uniform(jax.random.key(1), (B, 6))
  variables = cheap_variables(SMALL_MLP, x)
  encode = lambda x, train, rngs=None: SMALL_MLP.apply(variables, x, train, rngs=rngs,
                                                       method=SMALL_MLP.encode)
  z_eval = encode(x, False)
  np.testing.assert_array_equal(encode(x, False, {"dropout": jax.random.key(2)}), z_eval)
  no_dropout = EDGaMAutoencoder(features=6, hidden=(8, 8, 16), dropout=0.0)
  np.testing.assert_allclose(no_dropout.apply(variables, x, method=no_dropout.encode), z_eval)
  z_a, z_b = (encode(x, True, {"dropout": jax.random.key(seed)}) for seed in (2, 3))
  assert not np.allclose(z_a, z_eval) and not np.allclose(z_a, z_b)
  np.testing.assert_array_equal(encode(x, True, {"dropout": jax.random.key(2)}), z_a)
  with pytest.raises(flax.errors.InvalidRngError):
    encode(x, True)
  # The decoder has no dropout: it needs no rng and ignores `train`.
  x_rec = SMALL_MLP.apply(variables, z_eval, True, method=SMALL_MLP.decode)
  np.testing.assert_array_equal(x_rec, SMALL_MLP.apply(variables, z_eval,
                                                       method=SMALL_MLP.decode))
  assert jnp.all((x_rec > 0) & (x_rec < 1))


def test_batch_norm_updates_its_statistics_only_in_training():
  x = jax.random.uniform(jax.random.key(1), (B, 12, 8, 2))
  variables = cheap_variables(SMALL_CONV, x)
  (z, x_rec), updates = SMALL_CONV.apply(variables, x, True, mutable=["batch_stats"])
  chex.assert_shape([z, x_rec], [(B, 10), (B, 12, 8, 2)])
  changed = jax.tree.map(lambda old, new: not np.allclose(old, new),
                         variables["batch_stats"], updates["batch_stats"])
  assert all(jax.tree.leaves(changed))
  with pytest.raises(flax.errors.ModifyScopeVariableError):
    SMALL_CONV.apply(variables, x, True)  # training must be allowed to write batch_stats
  # Evaluation uses the running statistics: a sample's output ignores the rest of the
  # batch; training normalises with the batch's, so it does not.
  z_eval, _ = SMALL_CONV.apply(variables, x)
  np.testing.assert_allclose(SMALL_CONV.apply(variables, x[:1])[0], z_eval[:1], rtol=1e-5,
                             atol=1e-6)
  (z_one, _), _ = SMALL_CONV.apply(variables, x[:2], True, mutable=["batch_stats"])
  assert not np.allclose(z_one[:1], z[:1])


def test_docstring_examples():
  result = doctest.testmod(edgam_module, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.attempted > 0 and result.failed == 0
