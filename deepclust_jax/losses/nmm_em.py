"""Losses of the neural mixture model trained by batch-wise EM (NMM-EM).

Tissera et al. (2022), "Neural Mixture Models with Expectation-Maximization for
End-to-end Deep Clustering", Neurocomputing; sections 5 to 7 and Algorithm 1.

A network maps each ``x_i`` of a batch of ``n`` to K relevance scores ``a``
(n, K). They are normalised per cluster over the batch, ``a*`` (the unnumbered
display of section 5, between eqs. 2 and 3); the cluster likelihood is
``h = sigmoid(a* / temperature)`` and the E-step posterior ``p =
softmax(a*)``. The paper names the temperature ``gamma``; here ``gamma`` means
responsibilities, so it is ``temperature``. ``a_star_tr`` is the normalised
relevance of the transformed images ``x_tr = T(x)``, row ``i`` of it belonging
to row ``i`` of ``a_star``.

Unlike the CM losses, these are MEANS over the batch: eq. (6) carries the
``1/n``. All functions are pure and jit- and vmap-compatible; the keyword
``train`` is static under ``jax.jit``. Results take the dtype of the inputs.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

# PyTorch's BatchNorm1d default (its momentum=0.1 weights the NEW batch): the
# paper describes the normalisation as batch normalisation without the affine
# map, and it evolves with the network, so the running statistics should follow
# it within ~10 steps rather than flax's ~100 (momentum 0.99).
MOMENTUM = 0.9
# The usual batch-normalisation epsilon; it only shrinks |a*|, so the bound of
# section 5 still holds.
EPS = 1e-5
# The paper's gamma for batch size 128 (sections 5 and 8).
TEMPERATURE = 5.0


def init_running_stats(num_clusters: int, dtype=jnp.float32) -> tuple[chex.Array, chex.Array]:
  """Running mean 0 and variance 1 per cluster, as batch normalisation starts.

  Example:
    >>> mean, var = init_running_stats(3)
    >>> mean.tolist(), var.tolist()
    ([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
  """
  return jnp.zeros((num_clusters,), dtype), jnp.ones((num_clusters,), dtype)


def normalize_relevance(
    a: chex.Array,
    running_mean: chex.Array,
    running_var: chex.Array,
    *,
    train: bool,
    momentum: float = MOMENTUM,
    eps: float = EPS,
) -> tuple[chex.Array, tuple[chex.Array, chex.Array]]:
  r"""``a*_{ij} = (a_{ij} - \mu_j) / \sqrt{\sigma_j^2 + \epsilon}``, (n, K); no affine map.

  Section 5's unnumbered display: ``\mu_j = (1/n) \sum_i a_{ij}``,
  ``\sigma_j^2 = (1/n) \sum_i (a_{ij} - \mu_j)^2``, the BIASED (population)
  variance, as the paper writes it (and as batch normalisation does). Hence
  ``\sum_i a*_{ij} = 0``, ``(1/n) \sum_i a*_{ij}^2 = 1`` for ``eps = 0``, and
  ``|a*_{ij}| <= \sqrt{n - 1}`` (Samuelson's inequality; 11.27 for n = 128),
  attained when one sample stands apart from n - 1 equal ones. Section 5 quotes
  ``(n - 1) / \sqrt{n}`` (11.23), the bound for the SAMPLE standard deviation
  (denominator n - 1) of its reference [26]; the two differ by the factor
  ``\sqrt{n / (n - 1)}``, 1.004 for n = 128, immaterial to the choice of the
  temperature. ``eps`` only shrinks ``|a*|``.

  With ``train=True`` the batch statistics normalise ``a`` (gradients flow
  through them, as in batch normalisation) and the running ones move towards
  them: ``new = momentum * running + (1 - momentum) * batch``, the batch
  variance being the biased one too, so inference on a batch drawn like the
  training batches normalises it alike. With ``train=False`` the running
  statistics normalise ``a`` and are returned unchanged, so any batch size
  works, 1 included (section 8.1: "using a running mean and a running standard
  deviation ... enables inference with different batch sizes").

  Returns:
    ``(a_star, (new_mean, new_var))``.

  Example:
    >>> mean, var = init_running_stats(2)
    >>> a = jnp.array([[1.0, 0.0], [3.0, 0.0], [5.0, 3.0]])
    >>> a_star, (mean, var) = normalize_relevance(a, mean, var, train=True, eps=0.0)
    >>> print(jnp.round(a_star, 4))
    [[-1.2247 -0.7071]
     [ 0.     -0.7071]
     [ 1.2247  1.4142]]
    >>> [round(m, 4) for m in mean.tolist()], [round(v, 4) for v in var.tolist()]
    ([0.3, 0.1], [1.1667, 1.1])
    >>> a_one, _ = normalize_relevance(a[:1], mean, var, train=False, eps=0.0)
    >>> [round(v, 4) for v in a_one[0].tolist()]  # (1 - 0.3) / sqrt(1.1667), ...
    [0.6481, -0.0953]
  """
  if train:
    mean = jnp.mean(a, axis=0)
    var = jnp.var(a, axis=0)
    # The running statistics are a record, not part of the differentiated graph.
    new_mean = momentum * running_mean + (1.0 - momentum) * jax.lax.stop_gradient(mean)
    new_var = momentum * running_var + (1.0 - momentum) * jax.lax.stop_gradient(var)
  else:
    mean, var = running_mean, running_var
    new_mean, new_var = running_mean, running_var
  a_star = (a - mean) * jax.lax.rsqrt(var + eps)
  return a_star, (new_mean, new_var)


def cluster_likelihood(a_star: chex.Array, temperature: float = TEMPERATURE) -> chex.Array:
  r"""``h_j(x_i) = sigmoid(a*_{ij} / \gamma)``, (n, K): the cluster distributions.

  Section 5's ``h_{\theta_s, \theta_j}(x_i)``, approximating ``f(x | Z = j,
  \theta)``; ``temperature`` is the paper's ``\gamma > 1`` (5 for batch
  size 128). Since ``a*`` has zero batch mean and ``a*/\gamma`` stays in the
  sigmoid's near-linear region, the batch mean of each column is close to 0.5,
  eq. (3), whence a common integral ``0.5 V`` for every cluster, eqs. (4)-(5).

  Example:
    >>> h = cluster_likelihood(jnp.array([[-5.0, 0.0, 5.0]]))
    >>> [round(v, 4) for v in h[0].tolist()]
    [0.2689, 0.5, 0.7311]
  """
  return jax.nn.sigmoid(a_star / temperature)


def posterior(a_star: chex.Array) -> chex.Array:
  r"""``p_{ij} = e^{a*_{ij}} / \sum_k e^{a*_{ik}}``, (n, K): the E-step posterior.

  Section 6: with the uniform prior ``1/K`` the posterior is ``h_j /
  \sum_k h_k``, which the paper replaces "for the ease of numerical
  optimization" by the softmax of ``a*`` itself, WITHOUT the temperature.

  Example:
    >>> p = posterior(jnp.array([[0.0, jnp.log(3.0)]]))
    >>> [round(v, 4) for v in p[0].tolist()]
    [0.25, 0.75]
  """
  return jax.nn.softmax(a_star, axis=-1)


def expected_log_likelihood(
    p: chex.Array,
    a_star: chex.Array,
    temperature: float = TEMPERATURE,
) -> chex.Array:
  r"""``(1/n) \sum_i \sum_j p_{ij} \log sigmoid(a*_{ij} / \gamma)``, a scalar.

  The batch form of the EM objective, eq. (1) divided by ``n``: ``Q(\theta |
  \theta^t) / n`` with ``f(x, z | \theta) = h_z(x)`` (the constant prior
  ``1/K`` dropped, section 6). Differentiable in both arguments; the losses
  below hold ``p`` constant. ``log sigmoid`` is computed stably.

  Example:
    >>> p = jnp.array([[1.0, 0.0], [0.5, 0.5]])
    >>> a_star = jnp.array([[5.0, -5.0], [0.0, 0.0]])
    >>> round(float(expected_log_likelihood(p, a_star)), 4)  # (log .7311 + log .5) / 2
    -0.5032
  """
  return jnp.sum(p * jax.nn.log_sigmoid(a_star / temperature)) / a_star.shape[0]


def em_loss(
    a_star: chex.Array,
    a_star_tr: chex.Array | None = None,
    *,
    temperature: float = TEMPERATURE,
) -> tuple[chex.Array, dict[str, chex.Array]]:
  r"""The EM loss: eq. (6), or eq. (7) given the transformed view ``a_star_tr``.

  Eq. (6): ``L = -(1/n) \sum_i \sum_j p_{ij} \log sigmoid(a*_{ij} / \gamma)``.
  Eq. (7): ``L = -(1/n) \sum_i \sum_j p_{ij} [\log sigmoid(a*_{ij} / \gamma)
  + \log sigmoid(a^{tr*}_{ij} / \gamma)]``.

  In both, ``p = softmax(a*)`` is the posterior of the ORIGINAL images, held
  constant by ``jax.lax.stop_gradient``: it is the E-step's ``p(z | x,
  \theta^t)`` and the gradient step is the M-step ("Keeping p_ij s constant,
  we backpropagate this loss", section 6). The transformed images' likelihood
  is weighted by the original's posterior (section 7). Normalise each view
  with its own batch (Algorithm 1: "Similarly a^tr*").

  Returns:
    ``(loss, terms)``, ``terms["em"]`` the original's term of the loss and,
    given ``a_star_tr``, ``terms["em_tr"]`` the transformed view's; ``loss ==
    sum(terms.values())``.

  Example:
    >>> a_star = jnp.array([[1.0, -1.0], [-1.0, 1.0]])
    >>> loss, terms = em_loss(a_star)
    >>> round(float(loss), 4), sorted(terms)
    (0.622, ['em'])
    >>> loss, terms = em_loss(a_star, jnp.zeros((2, 2)))  # log 2 for the 2nd term
    >>> {name: round(float(value), 4) for name, value in terms.items()}
    {'em': 0.622, 'em_tr': 0.6931}
  """
  p = jax.lax.stop_gradient(posterior(a_star))
  terms = {"em": -expected_log_likelihood(p, a_star, temperature)}
  if a_star_tr is not None:
    terms["em_tr"] = -expected_log_likelihood(p, a_star_tr, temperature)
  return sum(terms.values()), terms


def consistency_loss(a_star: chex.Array, a_star_tr: chex.Array) -> chex.Array:
  r"""``(1/n) \sum_i KL(p_i || q_i) = (1/n) \sum_i \sum_j p_{ij} \log(p_{ij} / q_{ij})``.

  Eq. (8), averaged over the batch (the paper writes it per image; we take the
  mean, like eq. (6)). ``p_i = softmax(a*_i)`` is the posterior of the
  original, held constant by ``jax.lax.stop_gradient`` as a soft label;
  ``q_i = softmax(a^{tr*}_i)`` that of the transformed image. In Algorithm 1
  both are computed afresh with the parameters the EM step just updated.
  Evaluated with ``log_softmax``, so a vanishing ``p_{ij}`` or ``q_{ij}``
  cannot produce ``0 log 0`` or ``log 0``.

  Example:
    >>> a_star = jnp.array([[0.0, 0.0]])
    >>> float(consistency_loss(a_star, a_star))
    0.0
    >>> round(float(consistency_loss(a_star, jnp.array([[0.0, jnp.log(3.0)]]))), 4)
    0.1438
  """
  log_p = jax.lax.stop_gradient(jax.nn.log_softmax(a_star, axis=-1))
  log_q = jax.nn.log_softmax(a_star_tr, axis=-1)
  return jnp.sum(jnp.exp(log_p) * (log_p - log_q)) / a_star.shape[0]
