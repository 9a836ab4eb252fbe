"""Networks of VaDE (Jiang et al., IJCAI 2017) and DGG (Yang et al., ICCV 2019).

The VAE is DEC's d-500-500-2000-p network with ReLU activations, a mean and a
log-variance head of size p = 10 and a mirrored decoder; the ``gamma`` head is
DGG's single linear layer p -> K on the latent mean; the Siamese network has
the encoder's shape (DGG supplement, section 5). The Gaussian mixture is not a
module: :func:`mixture_params` makes plain arrays that sit in the params
pytree beside the networks' parameters, with the mixing weights as softmax
logits where they are learned (VaDE; ``docs/methods.md#vade-and-dgg``).

Hidden layers are the :class:`~deepclust_jax.models.autoencoder.MLP` with
LeakyReLU slope 0, i.e. ReLU.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from deepclust_jax.losses.vade import VARIANCE_FLOOR
from deepclust_jax.models.autoencoder import MLP, MatmulDtype
from deepclust_jax.models.cm import glorot


def reparameterize(key: jax.Array, z_mean: jax.Array, z_logvar: jax.Array) -> jax.Array:
  r"""One sample ``z = \tilde\mu + \tilde\sigma \epsilon`` of ``q(z|x)``, ``\epsilon \sim N(0, I)``.

  The reparameterisation trick (one sample per point, L = 1 as in VaDE and
  DGG), differentiable in ``z_mean`` and ``z_logvar``.

  Example:
    >>> z = reparameterize(jax.random.key(0), jnp.zeros((2, 3)), jnp.full((2, 3), -jnp.inf))
    >>> z.tolist()  # zero variance: the mean
    [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
  """
  noise = jax.random.normal(key, z_mean.shape, z_mean.dtype)
  return z_mean + jnp.exp(0.5 * z_logvar) * noise


class VAE(nn.Module):
  """Encoder ``x -> (z_mean, z_logvar)`` and decoder ``z -> logits``.

  The decoder's output is the Bernoulli logits of
  :func:`deepclust_jax.losses.vade.bernoulli_log_likelihood`, or the mean of
  :func:`~deepclust_jax.losses.vade.gaussian_log_likelihood` for real-valued
  data. Any leading axes are batch axes (DGG encodes (N, 1 + N_s, d)).

  Attributes:
    features: d, input width.
    latent: p, code width.
    hidden: encoder hidden widths; the decoder uses them reversed.
    matmul_dtype: the dtype of the hidden layers' products' operands
      (:func:`~deepclust_jax.models.autoencoder.dot_general`).

  Example:
    >>> vae = VAE(features=6, latent=2, hidden=(5, 4))
    >>> x = jnp.zeros((3, 6))
    >>> params = vae.init(jax.random.key(0), x, jax.random.key(1))["params"]
    >>> z_mean, z_logvar, z, logits = vae.apply({"params": params}, x, jax.random.key(2))
    >>> z_mean.shape, z_logvar.shape, z.shape, logits.shape
    ((3, 2), (3, 2), (3, 2), (3, 6))
  """

  features: int
  latent: int = 10
  hidden: Sequence[int] = (500, 500, 2000)
  matmul_dtype: MatmulDtype = "float32"

  def setup(self):
    self.encoder = MLP(tuple(self.hidden), 0.0, self.matmul_dtype)
    self.mean_head = nn.Dense(self.latent, kernel_init=glorot)
    self.logvar_head = nn.Dense(self.latent, kernel_init=glorot)
    self.decoder = MLP((*reversed(self.hidden), self.features), 0.0, self.matmul_dtype)

  def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(z_mean, z_logvar)``, the parameters of ``q(z|x)``."""
    h = nn.relu(self.encoder(x))  # the MLP leaves its last layer linear
    return self.mean_head(h), self.logvar_head(h)

  def decode(self, z: jax.Array) -> jax.Array:
    """The decoder's output for codes ``z`` (logits in the Bernoulli case)."""
    return self.decoder(z)

  def __call__(self, x: jax.Array, key: jax.Array
               ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """``(z_mean, z_logvar, z, logits)`` with ``z`` one sample of ``q(z|x)`` drawn with ``key``."""
    z_mean, z_logvar = self.encode(x)
    z = reparameterize(key, z_mean, z_logvar)
    return z_mean, z_logvar, z, self.decode(z)


class GammaHead(nn.Module):
  """DGG's ``q(c|x)``: one linear layer p -> K on the latent mean, then a log-softmax.

  Returns ``log_gamma``, the log-responsibilities, as the losses take them.

  Attributes:
    num_clusters: K.

  Example:
    >>> head = GammaHead(num_clusters=3)
    >>> params = head.init(jax.random.key(0), jnp.zeros((1, 2)))["params"]
    >>> log_gamma = head.apply({"params": params}, jnp.ones((4, 2)))
    >>> log_gamma.shape, jnp.allclose(jnp.exp(log_gamma).sum(-1), 1.0).item()
    ((4, 3), True)
  """

  num_clusters: int

  @nn.compact
  def __call__(self, z_mean: jax.Array) -> jax.Array:
    logits = nn.Dense(self.num_clusters, kernel_init=glorot, name="dense")(z_mean)
    return jax.nn.log_softmax(logits, axis=-1)


class Siamese(nn.Module):
  """DGG's embedding network for the graph: the encoder's shape, d-500-500-2000-p, ReLU.

  Attributes:
    latent: p, embedding width.
    hidden: hidden widths.

  Example:
    >>> net = Siamese(latent=2, hidden=(5, 4))
    >>> params = net.init(jax.random.key(0), jnp.zeros((1, 6)))["params"]
    >>> net.apply({"params": params}, jnp.ones((3, 6))).shape
    (3, 2)
  """

  latent: int = 10
  hidden: Sequence[int] = (500, 500, 2000)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return MLP((*self.hidden, self.latent), negative_slope=0.0, name="mlp")(x)


def mixture_params(mu: jax.Array, var: jax.Array | None = None,
                   weights: jax.Array | None = None, *,
                   raw: bool = False) -> dict[str, jax.Array]:
  """The mixture's parameters: ``"mu"``, ``"logvar"`` (K, p), and ``"logits"`` or ``"pi"`` (K,).

  From a start on the latent means: ``mu`` the means and ``var`` the
  per-cluster, per-dimension variances (1 when ``None``); ``weights`` the
  mixing weights, kept as logits (``log weights``, so a softmax gives them
  back) for a mixture that learns them, as they are (``"pi"``) when ``raw``,
  and left out when ``None``.
  Variances below :data:`~deepclust_jax.losses.vade.VARIANCE_FLOOR` (a
  cluster of one point) are raised to it, and weights to 1e-12 of the mean
  weight (an empty cluster), so every log is finite.

  Example:
    >>> mixture = mixture_params(jnp.zeros((3, 2)), jnp.array([[1.0, 0.0]] * 3))
    >>> mixture["mu"].shape, mixture["logvar"][0].tolist()
    ((3, 2), [0.0, -13.815510749816895])
    >>> logits = mixture_params(jnp.zeros((2, 1)), weights=jnp.array([0.25, 0.75]))["logits"]
    >>> [round(w, 6) for w in jax.nn.softmax(logits).tolist()]
    [0.25, 0.75]
  """
  var = jnp.ones_like(mu) if var is None else jnp.asarray(var, mu.dtype)
  params = {"mu": mu, "logvar": jnp.log(jnp.maximum(var, VARIANCE_FLOOR))}
  if weights is not None:
    weights = jnp.asarray(weights, mu.dtype)
    weights = jnp.maximum(weights, 1e-12 / weights.shape[0])
    if raw:
      params["pi"] = weights
    else:
      params["logits"] = jnp.log(weights)
  return params
