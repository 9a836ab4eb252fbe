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
takes it) are those of ``nn.Conv`` and ``nn.max_pool`` either way.
"""

from __future__ import annotations

import flax.linen as nn
import jax

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
    def act(h):
      if self.batch_norm:
        h = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(h)
      return ACTIVATIONS[self.activation](h)

    convs = 0
    for kind, width in parse_architecture(self.architecture):
      if kind == "C":
        x = act(nn.Conv(width, (3, 3), padding="SAME", use_bias=not self.batch_norm,
                        name=f"Conv_{convs}",
                        conv_general_dilated=conv_general_dilated)(x))
        convs += 1
      elif kind == "M":
        x = max_pool(x, (2, 2))
      else:
        x = act(nn.Dense(width, use_bias=not self.batch_norm)(x.reshape(x.shape[0], -1)))
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
