"""Relevance networks of the NMM-EM: the CNNs of Table 2 and the 2-D experiment's MLP.

Tissera et al. (2022), "Neural Mixture Models with Expectation-Maximization for
End-to-end Deep Clustering", Neurocomputing; sections 4, 8.1 and 8.2, Table 2.

A network ``g_theta`` maps ``x`` to K relevance scores ``a`` (B, K), the
pre-activation outputs of its last, fully connected layer, one neuron per
cluster (section 4); :mod:`deepclust_jax.losses.nmm_em` normalises them.
Architectures are written in Table 2's notation: ``Cn`` a convolution with n
filters, ``M`` a max-pooling, ``Fn`` a fully connected layer of n units; the
final ``F(K)`` is added from ``num_clusters``.

What Table 2 leaves open, and how we fill it: 3x3 convolutions with 'SAME'
padding and stride 1, 2x2 max-pooling with stride 2, ReLU (or leaky ReLU,
``activation``) after every layer but the last, biases everywhere, flax's default initialisers. These choices
reproduce the table's parameter counts for 2-plane Sobel inputs (MNIST 28x28:
0.77M for "0.8M"; CIFAR 32x32 with K = 10: 1.31M for "1.3M"; STL10 at its
full 96x96: 2.69M for "2.7M"); 5x5 kernels or 'VALID' padding would not (MNIST:
1.43M, 0.44M). The paper mentions no batch normalisation inside the networks,
so ``batch_norm=False`` is the literal Table 2 network: a sample's scores do
not depend on the rest of its batch. ``batch_norm=True`` (the presets) adds it
after every hidden layer, as in the networks of IIC (Ji et al. 2019), whose
grayscale-plus-Sobel input the paper adopts: with the literal network the KL
step kills every unit of the last hidden layer (``docs/methods.md#nmm-em``).

On CPU the convolutions' kernel gradients run as shifted matrix products
(:func:`deepclust_jax.models.conv.conv_general_dilated`), which XLA:CPU runs
far faster inside the engine's scanned epoch, and the max-pooling is a
reshape and a max (:func:`deepclust_jax.models.conv.max_pool`); the
parameters, the function and the gradient (the first maximum of a window
takes it) are those of ``nn.Conv`` and ``nn.max_pool`` either way. A
batch-normalised convolution followed by a pooling pools first
(:class:`PooledBatchNorm`, ``nn.BatchNorm``'s variables and function).
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from deepclust_jax.models.conv import conv_general_dilated, max_pool

# Table 2 without the final F(K); "mlp" is section 8.1's 2-32-32-10 perceptron.
ARCHITECTURES = {
    "mnist": "C64 M C128 M C256 F32",
    "cifar": "C64 C64 M C128 C128 M C256 C256",
    "stl10": "C64 C64 M C128 C128 M C256 C256 M C256 C256",
    "mlp": "F32 F32",
}

# The hidden layers' nonlinearity. Table 2 names none; "relu" is ours and the
# default, "leaky_relu" (slope 0.01) keeps a gradient on every unit.
ACTIVATIONS = {"relu": nn.relu, "leaky_relu": nn.leaky_relu}

# PyTorch's BatchNorm defaults in flax's terms (momentum on the old average).
BATCH_NORM = {"momentum": 0.9, "epsilon": 1e-5}


def parse_architecture(architecture: str) -> tuple[tuple[str, int], ...]:
  """Table 2's notation as ``(kind, width)`` pairs, kind one of "C", "M", "F".

  Convolutions and poolings must come before the first fully connected layer.

  Example:
    >>> parse_architecture("C64 M F32")
    (('C', 64), ('M', 0), ('F', 32))
  """
  layers = []
  for token in architecture.split():
    kind, width = token[0], token[1:]
    if token == "M":
      layers.append(("M", 0))
    elif kind in "CF" and width.isdigit() and int(width) > 0:
      layers.append((kind, int(width)))
    else:
      raise ValueError(f"unknown layer {token!r} in {architecture!r}; "
                       "expected Cn, M or Fn with n > 0")
    if kind in "CM" and any(k == "F" for k, _ in layers[:-1]):
      raise ValueError(f"{token!r} after a fully connected layer in {architecture!r}")
  return tuple(layers)


class PooledBatchNorm(nn.Module):
  """``max_pool(act(BatchNorm(x)))`` over ``window`` s, computed pooling first.

  Per channel, batch normalisation is ``a x + b`` with ``a = scale /
  sqrt(var + eps)`` and ``b = bias - a mean``; for a nondecreasing ``act``
  (ReLU, leaky ReLU) the window's maximum of ``act(a x + b)`` is
  ``act(|a| max(s x) + b)`` with ``s`` the sign of ``a``. So the pooling reads
  ``x`` once and the normalisation and activation run on a quarter of the
  values: forward and backward of a 128x28x28x64 batch, 43 against 77 ms of
  process CPU (2 cores, inside a scan). The statistics, running averages,
  parameters and their names are ``nn.BatchNorm``'s (momentum 0.9 on the old
  average, fast variance), so its variables serve either form; the gradient
  is the same (ties aside: with ``scale = 0`` the window's first maximum of
  ``x`` takes it rather than its first element).

  Example:
    >>> x = jax.random.normal(jax.random.key(0), (2, 4, 4, 3))
    >>> pooled = PooledBatchNorm(nn.relu, (2, 2))
    >>> variables = pooled.init(jax.random.key(1), x)
    >>> reference = max_pool(nn.relu(nn.BatchNorm(use_running_average=True).apply(
    ...     variables, x)), (2, 2))
    >>> bool(jnp.allclose(pooled.apply(variables, x), reference, atol=1e-5))
    True
  """

  act: Callable[[jax.Array], jax.Array]
  window: tuple[int, int]
  momentum: float = 0.9
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    channels = (x.shape[-1],)
    ra_mean = self.variable("batch_stats", "mean", jnp.zeros, channels, jnp.float32)
    ra_var = self.variable("batch_stats", "var", jnp.ones, channels, jnp.float32)
    scale = self.param("scale", nn.initializers.ones, channels, jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, channels, jnp.float32)
    if train:
      axes = tuple(range(x.ndim - 1))
      mean = jnp.mean(x, axes)
      var = jnp.maximum(jnp.mean(x * x, axes) - mean * mean, 0.0)
      if not self.is_initializing():
        ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
        ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    else:
      mean, var = ra_mean.value, ra_var.value
    a = scale * jax.lax.rsqrt(var + self.epsilon)
    sign = jnp.where(a < 0, -1.0, 1.0).astype(x.dtype)
    return self.act(jnp.abs(a) * max_pool(sign * x, self.window) + (bias - a * mean))


class RelevanceNet(nn.Module):
  """``a = g_theta(x)``: Table 2's layers, then a linear layer of ``num_clusters`` units.

  Images enter as (B, H, W, C) (for NMM-EM, C = 2 Sobel planes), vectors as
  (B, d); the input is flattened before the first fully connected layer.

  Attributes:
    architecture: the hidden layers in Table 2's notation, e.g.
      ``ARCHITECTURES["mnist"]``.
    num_clusters: K, the number of relevance scores.
    activation: a name of ``ACTIVATIONS``, applied after every hidden layer.
    batch_norm: batch normalisation (PyTorch's defaults: affine, momentum 0.1
      on the new batch, eps 1e-5) between every hidden layer, the last one
      included, and its activation; those layers then have no bias (the
      normalisation's shift replaces it): Conv(bias=False)-BatchNorm-ReLU.
      Its running statistics are the ``batch_stats`` collection:
      called with ``train=True`` (apply with ``mutable=["batch_stats"]``) the
      layers use the batch's statistics and move the running ones, otherwise
      they use the running ones, so a sample's scores ignore its batch.

  The last hidden layer's activations are sown as ``intermediates`` /
  ``last_hidden`` (apply with ``mutable=["intermediates"]`` to read them):
  the NMM-EM's live-unit diagnostic.

  Example:
    >>> net = RelevanceNet("C8 M F16", num_clusters=3)
    >>> x = jax.numpy.ones((5, 8, 8, 2))
    >>> params = net.init(jax.random.key(0), x)["params"]
    >>> net.apply({"params": params}, x).shape
    (5, 3)
  """

  architecture: str
  num_clusters: int
  activation: str = "relu"
  batch_norm: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    activation = ACTIVATIONS[self.activation]
    norms = 0

    def act(h, pool):
      """The layer's normalisation, activation and the pooling that follows, if any."""
      nonlocal norms
      if self.batch_norm:
        norms += 1  # named as flax names them, whichever form
        if pool:
          return PooledBatchNorm(activation, (2, 2), **BATCH_NORM,
                                 name=f"BatchNorm_{norms - 1}")(h, train)
        h = nn.BatchNorm(use_running_average=not train, **BATCH_NORM,
                         name=f"BatchNorm_{norms - 1}")(h)
      h = activation(h)
      return max_pool(h, (2, 2)) if pool else h

    layers = parse_architecture(self.architecture)
    # The poolings that directly follow a convolution are taken with it.
    fused = {i + 1 for i, (kind, _) in enumerate(layers[:-1])
             if kind == "C" and layers[i + 1][0] == "M"}
    convs = 0
    for i, (kind, width) in enumerate(layers):
      if kind == "C":
        x = act(nn.Conv(width, (3, 3), padding="SAME", use_bias=not self.batch_norm,
                        name=f"Conv_{convs}",
                        conv_general_dilated=conv_general_dilated)(x), i + 1 in fused)
        convs += 1
      elif kind == "M":
        if i not in fused:
          x = max_pool(x, (2, 2))
      else:
        x = act(nn.Dense(width, use_bias=not self.batch_norm)(x.reshape(x.shape[0], -1)),
                False)
    self.sow("intermediates", "last_hidden", x)
    return nn.Dense(self.num_clusters, name="relevance")(x.reshape(x.shape[0], -1))


def relevance_net(name: str, num_clusters: int) -> RelevanceNet:
  """The network of Table 2 for ``name`` ("mnist", "cifar", "stl10") or the "mlp".

  CIFAR-100 uses the "cifar" network with its 20 super-classes as clusters.

  Example:
    >>> net = relevance_net("mlp", 10)  # 2-32-32-10, section 8.1
    >>> params = net.init(jax.random.key(0), jax.numpy.ones((1, 2)))["params"]
    >>> sum(p.size for p in jax.tree.leaves(params))  # 3 * 32 + 33 * 32 + 33 * 10
    1482
  """
  if name not in ARCHITECTURES:
    raise ValueError(f"unknown network {name!r}; choose from {sorted(ARCHITECTURES)}")
  return RelevanceNet(ARCHITECTURES[name], num_clusters)
