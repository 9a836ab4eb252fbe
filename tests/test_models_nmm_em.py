"""NMM-EM relevance networks: Table 2's CNNs and the 2-D experiment's MLP."""

from __future__ import annotations

import doctest

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deepclust_jax.models import nmm_em
from deepclust_jax.models.conv import max_pool
from deepclust_jax.models.nmm_em import RelevanceNet, parse_architecture, relevance_net


def count_params(net: RelevanceNet, shape: tuple[int, ...]) -> int:
  """Parameter count from shapes alone: nothing is compiled or allocated."""
  variables = jax.eval_shape(net.init, jax.random.key(0), jnp.zeros(shape))
  return sum(leaf.size for leaf in jax.tree.leaves(variables))


# (network, Sobel input shape, K, Table 2's count). The table rounds to 0.1M.
TABLE_2 = [
    ("mnist", (1, 28, 28, 2), 10, 0.8e6),
    ("cifar", (1, 32, 32, 2), 10, 1.3e6),
    ("stl10", (1, 96, 96, 2), 10, 2.7e6),
]


@pytest.mark.parametrize("name,shape,k,paper", TABLE_2, ids=[t[0] for t in TABLE_2])
def test_parameter_counts_match_table_2(name, shape, k, paper):
  count = count_params(relevance_net(name, k), shape)
  print(f"{name}: {count:,} parameters (Table 2: {paper / 1e6:.1f}M)")
  assert abs(count - paper) <= 0.05e6  # half the table's rounding unit


def test_mnist_net_output_and_batch_independence():
  net = relevance_net("mnist", 10)
  x = jax.random.normal(jax.random.key(0), (2, 28, 28, 2))
  variables = net.init(jax.random.key(1), x)
  assert set(variables) == {"params"}  # no batch statistics
  apply = jax.jit(net.apply)
  a = apply(variables, x)
  assert a.shape == (2, 10) and a.dtype == jnp.float32
  assert np.all(np.isfinite(a)) and np.std(np.asarray(a)) > 0
  # Without batch normalisation a sample's scores ignore the rest of its batch.
  np.testing.assert_allclose(apply(variables, x[1:]), a[1:], rtol=1e-5, atol=1e-6)
  # Table 2's MNIST row, C64 M C128 M C256 F32 F10; poolings have no parameters.
  assert [k for k in variables["params"]] == ["Conv_0", "Conv_1", "Conv_2", "Dense_0",
                                              "relevance"]


def test_mlp_output_and_widths():
  net = relevance_net("mlp", 10)
  x = jax.random.normal(jax.random.key(2), (5, 2))
  params = net.init(jax.random.key(3), x)["params"]
  widths = [params[k]["kernel"].shape for k in ("Dense_0", "Dense_1", "relevance")]
  assert widths == [(2, 32), (32, 32), (32, 10)]  # 2-32-32-10
  assert net.apply({"params": params}, x).shape == (5, 10)


def test_leaky_relu_keeps_a_gradient_on_units_a_relu_net_has_killed():
  x = jax.random.normal(jax.random.key(4), (8, 2))
  params = relevance_net("mlp", 3).init(jax.random.key(5), x)["params"]
  # Push every first-layer unit below zero on this batch: dead ReLUs.
  params = {**params, "Dense_0": {**params["Dense_0"], "bias": jnp.full((32,), -100.0)}}

  def grad_of_first_layer(activation):
    net = RelevanceNet(nmm_em.ARCHITECTURES["mlp"], 3, activation)
    loss = lambda p: jnp.sum(net.apply({"params": p}, x) ** 2)
    return jax.grad(loss)(params)["Dense_0"]["kernel"]

  assert np.all(grad_of_first_layer("relu") == 0)
  assert np.all(np.abs(grad_of_first_layer("leaky_relu")).max(axis=0) > 0)


def test_parse_architecture():
  assert parse_architecture(nmm_em.ARCHITECTURES["cifar"]) == (
      ("C", 64), ("C", 64), ("M", 0), ("C", 128), ("C", 128), ("M", 0), ("C", 256), ("C", 256))
  assert parse_architecture("") == ()
  for bad in ["C64 X", "C", "F0", "M2", "F32 C64", "F32 M"]:
    with pytest.raises(ValueError):
      parse_architecture(bad)
  with pytest.raises(ValueError, match="unknown network"):
    relevance_net("imagenet", 10)


def test_docstring_examples():
  result = doctest.testmod(nmm_em, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.attempted > 0 and result.failed == 0


class LayerByLayerNet(nn.Module):
  """The batch-normalised network as flax's layers in order: Conv, BatchNorm, act, pool."""

  architecture: str
  num_clusters: int
  activation: str

  @nn.compact
  def __call__(self, x, train=False):
    act = nmm_em.ACTIVATIONS[self.activation]
    convs = 0
    for kind, width in parse_architecture(self.architecture):
      if kind == "M":
        x = max_pool(x, (2, 2))
        continue
      if kind == "C":
        x = nn.Conv(width, (3, 3), padding="SAME", use_bias=False, name=f"Conv_{convs}")(x)
        convs += 1
      else:
        x = nn.Dense(width, use_bias=False)(x.reshape(x.shape[0], -1))
      x = act(nn.BatchNorm(use_running_average=not train, **nmm_em.BATCH_NORM)(x))
    return nn.Dense(self.num_clusters, name="relevance")(x.reshape(x.shape[0], -1))


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_pooled_batch_norm_is_batch_norm_then_pooling(activation):
  """Same variables, outputs, running statistics and gradients as the layers in
  flax's order, negative scales (pooling by the minimum) included."""
  architecture = "C8 M C8 M M C4 F6"
  ours = RelevanceNet(architecture, 3, activation, batch_norm=True)
  reference = LayerByLayerNet(architecture, 3, activation)
  x = jax.random.normal(jax.random.key(0), (6, 16, 16, 2))
  variables = ours.init(jax.random.key(1), x)
  assert (jax.tree.structure(variables)
          == jax.tree.structure(reference.init(jax.random.key(1), x)))
  # Scales of both signs and shifts away from zero, as training leaves them.
  leaves, tree = jax.tree.flatten(variables["params"])
  keys = jax.random.split(jax.random.key(2), len(leaves))
  params = jax.tree.unflatten(tree, [leaf + jax.random.normal(k, leaf.shape)
                                     for leaf, k in zip(leaves, keys)])
  variables = {**variables, "params": params}

  def train(params, net):
    a, moved = net.apply({**variables, "params": params}, x, True, mutable=["batch_stats"])
    return jnp.sum(jnp.sin(a)), (a, moved)

  (_, (a, moved)), grads = jax.value_and_grad(train, has_aux=True)(params, ours)
  (_, (a_ref, moved_ref)), grads_ref = jax.value_and_grad(train, has_aux=True)(
      params, reference)
  close = lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-4)
  close(a, a_ref)
  jax.tree.map(close, moved, moved_ref)
  jax.tree.map(close, grads, grads_ref)
  close(ours.apply(variables, x), reference.apply(variables, x))
  assert float(jnp.min(params["BatchNorm_0"]["scale"])) < 0  # the minimum path ran
