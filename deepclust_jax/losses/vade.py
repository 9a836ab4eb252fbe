"""Objectives of VaDE and DGG, Gaussian-mixture variational autoencoders.

Jiang, Zheng, Tan, Tang & Zhou (2017), "Variational Deep Embedding: an
unsupervised and generative approach to clustering", IJCAI, section 3.
Yang, Cheung, Li & Fang (2019), "Deep Clustering by Gaussian Mixture
Variational Autoencoders with Graph Embedding", ICCV. Only its supplement is
available (sections 4 and 5); the DGG objective here is the one the authors'
released code computes, as documented in ``docs/methods.md#vade-and-dgg``.

Generative model: ``c ~ Cat(pi)``, ``z | c ~ N(mu_c, diag sigma_c^2)``,
``x | z`` from a decoder. Mean-field posterior ``q(z, c | x) = q(z | x) q(c | x)``
with ``q(z | x) = N(z_mean, diag exp(z_logvar))`` and ``q(c | x) = gamma``.

Shapes: ``z_mean``, ``z_logvar`` (N, p); ``log_gamma`` (N, K), log q(c|x), e.g.
a ``jax.nn.log_softmax``; ``mu``, ``logvar`` (K, p), the mixture's means and
log-variances; ``log_pi`` (K,), uniform when ``None``. DGG adds a neighbour
axis after the batch axis: (N, 1 + N_s, ...), the anchor first.

Everything is in the log domain, so no ``+1e-10`` is needed anywhere; the only
guard is :data:`VARIANCE_FLOOR` on the mixture's variances. Signs: ELBO terms
are reported as they enter the ELBO (to be maximised) and the loss is MINUS the
batch MEAN of the per-sample ELBO; the mean, as in the authors' Keras and
PyTorch code, keeps the learning rate independent of the batch size. Log-
densities are summed over features and latent dimensions (nats per sample).
All functions are pure, jit- and vmap-compatible.
"""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp

VARIANCE_FLOOR = 1e-6
"""Smallest variance of a mixture component: ``sigma^2 = exp(logvar) + VARIANCE_FLOOR``.

A component whose variance collapsed would have an unbounded density; the floor
is additive (a soft floor) so that the log-variance keeps its gradient.
"""

LOG_2PI = math.log(2.0 * math.pi)


def _floored_logvar(logvar: chex.Array) -> chex.Array:
  return jnp.logaddexp(logvar, math.log(VARIANCE_FLOOR))


def _uniform_if_none(log_pi: chex.Array | None, num_clusters: int, dtype) -> chex.Array:
  if log_pi is None:
    return jnp.full((num_clusters,), -math.log(num_clusters), dtype)
  return jnp.asarray(log_pi, dtype)


def bernoulli_log_likelihood(x: chex.Array, logits: chex.Array) -> chex.Array:
  r"""``\log p(x | z) = \sum_d x_d \log s(l_d) + (1 - x_d) \log(1 - s(l_d))``, ``s`` the sigmoid.

  Minus the binary cross-entropy, from the decoder's logits ``l``, computed
  with ``log_sigmoid`` so that saturated logits stay finite. ``x`` in [0, 1];
  sums over the last axis, broadcasting the others (e.g. ``x[:, None]``
  against the neighbours' decodings of DGG).

  Example:
    >>> x = jnp.array([[1.0, 0.0, 0.5]])
    >>> round(float(bernoulli_log_likelihood(x, jnp.zeros((1, 3)))[0]), 4)  # 3 log(1/2)
    -2.0794
    >>> float(bernoulli_log_likelihood(x[:, :2], jnp.array([[-100.0, 100.0]]))[0])  # not -inf
    -200.0
  """
  return jnp.sum(x * jax.nn.log_sigmoid(logits) + (1.0 - x) * jax.nn.log_sigmoid(-logits),
                 axis=-1)


LOG_FLOOR = -100.0
"""PyTorch's floor on each log-probability of ``binary_cross_entropy``."""


def clamped_bernoulli_log_likelihood(x: chex.Array, logits: chex.Array,
                                     floor: float = LOG_FLOOR) -> chex.Array:
  r"""``\sum_d x_d \max(\log p_d, f) + (1 - x_d) \max(\log(1 - p_d), f)``, ``p = s(l)``.

  The Bernoulli log-likelihood as PyTorch's ``binary_cross_entropy`` computes
  it on a sigmoid output (VaDE-pytorch's reconstruction): the probabilities
  ``p`` are formed first in the logits' dtype, then each log is floored at
  ``f`` = -100. A pixel whose sigmoid rounded to 0 or 1 on the wrong side (in
  float32, ``1 - p`` is 0 from a logit of about 17) costs ``-f`` nats and
  passes NO gradient, where :func:`bernoulli_log_likelihood` keeps pulling it
  back with a gradient of 1 per pixel. Early in VaDE's joint phase, when q's
  variance is wide, that is the difference between ignoring a sample of noise
  and training the decoder on it (``docs/methods.md#vade-and-dgg``).

  Example:
    >>> x = jnp.array([[1.0, 0.0, 0.5]])
    >>> round(float(clamped_bernoulli_log_likelihood(x, jnp.zeros((1, 3)))[0]), 4)
    -2.0794
    >>> logits = jnp.array([[-30.0, 30.0]])  # both saturated on the wrong side
    >>> float(clamped_bernoulli_log_likelihood(x[:, :2], logits)[0])
    -130.0
    >>> jax.grad(lambda l: clamped_bernoulli_log_likelihood(x[:, :2], l).sum())(logits)
    Array([[1., 0.]], dtype=float32)
  """
  def floored_log(q):
    # The inner where keeps log's gradient finite where q rounded to 0.
    positive = q > 0
    return jnp.where(positive, jnp.maximum(jnp.log(jnp.where(positive, q, 1.0)), floor), floor)

  p = jax.nn.sigmoid(logits)
  return jnp.sum(x * floored_log(p) + (1.0 - x) * floored_log(1.0 - p), axis=-1)


def gaussian_log_likelihood(x: chex.Array, mean: chex.Array, scale: float = 1.0) -> chex.Array:
  r"""``\log p(x | z) = \sum_d \log N(x_d; m_d, s^2)``, the decoder output ``m``.

  The Gaussian reconstruction (a scaled squared error plus a constant) for
  real-valued data; ``scale`` ``s`` is a fixed standard deviation. Sums over
  the last axis, broadcasting the others.

  Example:
    >>> x = jnp.array([[0.0, 1.0]])
    >>> round(float(gaussian_log_likelihood(x, x)[0]), 4)  # -log(2 pi)
    -1.8379
    >>> round(float(gaussian_log_likelihood(x, x + 2.0, scale=2.0)[0]), 4)
    -4.2242
  """
  return -0.5 * jnp.sum(LOG_2PI + 2.0 * jnp.log(scale) + jnp.square((x - mean) / scale),
                        axis=-1)


def log_normal(z: chex.Array, mu: chex.Array, logvar: chex.Array) -> chex.Array:
  r"""``\log N(z; \mu_k, diag \sigma_k^2)`` for every component, (..., K).

  ``\sigma_k^2 = \exp(logvar_k) +`` :data:`VARIANCE_FLOOR`. ``z`` (..., p).

  Example:
    >>> mu, logvar = jnp.zeros((2, 1)), jnp.log(jnp.array([[1.0], [4.0]]))
    >>> [round(v, 4) for v in log_normal(jnp.array([2.0]), mu, logvar).tolist()]
    [-2.9189, -2.1121]
  """
  logvar = _floored_logvar(logvar)
  diff = z[..., None, :] - mu
  return -0.5 * jnp.sum(LOG_2PI + logvar + jnp.square(diff) * jnp.exp(-logvar), axis=-1)


def expected_log_normal(
    z_mean: chex.Array,
    z_logvar: chex.Array,
    mu: chex.Array,
    logvar: chex.Array,
) -> chex.Array:
  r"""``E_{q(z|x)}[\log N(z; \mu_k, diag \sigma_k^2)]`` in closed form, (..., K).

  ``-1/2 \sum_d (\log(2 \pi \sigma_{kd}^2) + (\tilde\sigma_d^2 + (\tilde\mu_d -
  \mu_{kd})^2) / \sigma_{kd}^2)`` for ``q(z|x) = N(\tilde\mu, diag \tilde\sigma^2)``
  (VaDE, section 3.2; DGG supplement, section 4.2), i.e. :func:`log_normal` at
  the mean minus ``1/2 \sum_d \tilde\sigma_d^2 / \sigma_{kd}^2``.

  Example:
    >>> mu, logvar = jnp.zeros((2, 1)), jnp.log(jnp.array([[1.0], [4.0]]))
    >>> values = expected_log_normal(jnp.array([2.0]), jnp.log(jnp.array([4.0])), mu, logvar)
    >>> [round(v, 4) for v in values.tolist()]
    [-4.9189, -2.6121]
  """
  ratio = jnp.exp(z_logvar[..., None, :] - _floored_logvar(logvar))
  return log_normal(z_mean, mu, logvar) - 0.5 * jnp.sum(ratio, axis=-1)


def gaussian_entropy(z_logvar: chex.Array) -> chex.Array:
  r"""``H[q(z|x)] = 1/2 \sum_d (1 + \log 2\pi + \log \tilde\sigma_d^2)``, (...,).

  ``-E_q[\log q(z|x)]`` of VaDE's ELBO. VaDE and the DGG code keep only
  ``1/2 \sum_d \log \tilde\sigma_d^2`` (plus the 1 in VaDE): the constant does
  not change gradients, but without it the ELBO is not a bound on ``log p(x)``.

  Example:
    >>> round(float(gaussian_entropy(jnp.zeros(2))), 4)  # 1 + log(2 pi)
    2.8379
  """
  return 0.5 * jnp.sum(1.0 + LOG_2PI + z_logvar, axis=-1)


def categorical_term(log_gamma: chex.Array, log_prior: chex.Array) -> chex.Array:
  r"""``E_{q(c|x)}[\log p(c) / q(c|x)] = \sum_k \gamma_k (\log p_k - \log \gamma_k)``, (...,).

  Minus ``KL(\gamma || p)``: VaDE's ``\sum_c \gamma_c \log(\pi_c / \gamma_c)``
  with ``p = \pi``; DGG's ``\sum_k \gamma_{jk} \log(m_{ik} / \gamma_{jk})`` with
  the neighbourhood prior ``p = m_i``. Both arguments are logs, last axis K;
  ``log_gamma`` must be finite (a ``log_softmax`` of finite logits is).

  Example:
    >>> log_gamma = jnp.log(jnp.array([0.5, 0.5]))
    >>> float(categorical_term(log_gamma, log_gamma))
    0.0
    >>> round(float(categorical_term(log_gamma, jnp.log(jnp.array([0.9, 0.1])))), 4)
    -0.5108
  """
  return jnp.sum(jnp.exp(log_gamma) * (log_prior - log_gamma), axis=-1)


def neighbour_weights(num_neighbours: int, dtype=jnp.float32) -> chex.Array:
  r"""DGG's weights ``(w_ii, w_ij, ...)``: ``1/2`` for the anchor, ``1/(2 N_s)`` per neighbour.

  They sum to 1. With no neighbours the anchor gets weight 1 (VaDE).

  Example:
    >>> neighbour_weights(2).tolist(), neighbour_weights(0).tolist()
    ([0.5, 0.25, 0.25], [1.0])
  """
  if num_neighbours == 0:
    return jnp.ones((1,), dtype)
  return jnp.concatenate([jnp.full((1,), 0.5, dtype),
                          jnp.full((num_neighbours,), 0.5 / num_neighbours, dtype)])


def neighbourhood_log_prior(log_gamma: chex.Array, weights: chex.Array) -> chex.Array:
  r"""``\log m = \log \sum_j w_j \gamma_j``, the weighted average posterior, (..., K).

  ``log_gamma`` (..., J, K) with the neighbour axis second to last, ``weights``
  (J,) on the simplex. A log-sum-exp, so it is exact for tiny ``gamma``.

  Example:
    >>> log_gamma = jnp.log(jnp.array([[1.0, 0.0], [0.0, 1.0]]) * 0.8 + 0.1)
    >>> [round(v, 4) for v in jnp.exp(neighbourhood_log_prior(
    ...     log_gamma, jnp.array([0.75, 0.25]))).tolist()]
    [0.7, 0.3]
  """
  return jax.nn.logsumexp(log_gamma + jnp.log(weights)[:, None], axis=-2)


def weighted_js_divergence(log_gamma: chex.Array, weights: chex.Array) -> chex.Array:
  r"""Weighted Jensen-Shannon divergence ``\sum_j w_j KL(\gamma_j || m)``, (...,).

  ``m = \sum_j w_j \gamma_j`` (:func:`neighbourhood_log_prior`). Equivalently
  ``H(m) - \sum_j w_j H(\gamma_j)``: zero iff all the ``gamma_j`` with positive
  weight agree. ``log_gamma`` (..., J, K), ``weights`` (J,). DGG's categorical
  term is its negative.

  Example:
    >>> log_gamma = jnp.log(jnp.array([[0.9, 0.1], [0.1, 0.9]]))
    >>> round(float(weighted_js_divergence(log_gamma, jnp.array([0.5, 0.5]))), 4)
    0.3681
    >>> round(float(weighted_js_divergence(log_gamma[:1].repeat(2, 0), jnp.array([0.5, 0.5]))), 6)
    0.0
  """
  log_m = neighbourhood_log_prior(log_gamma, weights)
  return -categorical_term(log_gamma, log_m[..., None, :]) @ weights


def dgg_loss(
    log_px_z: chex.Array,
    z_mean: chex.Array,
    z_logvar: chex.Array,
    log_gamma: chex.Array,
    mu: chex.Array,
    logvar: chex.Array,
    *,
    log_prior: chex.Array | None = None,
) -> tuple[chex.Array, dict[str, chex.Array]]:
  r"""DGG's neighbour-substituted ELBO; minus its batch mean.

  Per anchor ``i`` with neighbourhood ``j \in \{i\} \cup N_i`` (index 0 is the
  anchor) and weights :func:`neighbour_weights`, the objective to maximise is
  (``docs/methods.md#vade-and-dgg``, from the authors' code)

    ``L_i = \sum_j w_{ij} [ \log p(x_i | z_j) + \sum_k \gamma_{jk} E_{q(z|x_j)}
    \log N(z; \mu_k, \sigma_k^2) + H[q(z|x_j)] + \sum_k \gamma_{jk} \log(m_{ik} /
    \gamma_{jk}) ]``, ``z_j \sim q(z|x_j)``, ``m_i = \sum_j w_{ij} sg(\gamma_j)``:

  each neighbour's posterior stands in for the anchor's, and the categorical
  part equals minus the weighted Jensen-Shannon divergence of the
  neighbourhood's posteriors (:func:`weighted_js_divergence`). With
  ``log_prior`` given ((K,) or (N, K)) it replaces ``log m_i``: with no
  neighbours and ``log_prior = log pi`` this is VaDE's ELBO (:func:`vade_loss`
  calls this function). The stop-gradient ``sg`` follows the authors' code; for
  ``gamma`` given by a softmax it does not change the gradient, since with or
  without it the derivatives in ``gamma_j`` differ by ``w_j`` along every k.
  The entropy includes its constant (:func:`gaussian_entropy`).

  Args:
    log_px_z: (N, J) reconstruction log-likelihoods ``\log p(x_i | z_j)`` of the
      ANCHOR from each neighbour's sample, e.g. :func:`bernoulli_log_likelihood`
      of ``x[:, None]`` and the decoded samples; J = 1 + N_s.
    z_mean, z_logvar: (N, J, p), the encoder's outputs for the neighbourhood.
    log_gamma: (N, J, K), ``\log q(c | x_j)``.
    mu, logvar: (K, p), the mixture.
    log_prior: ``\log m_i`` to use instead of the neighbourhood average.

  Returns:
    ``(loss, terms)``: ``loss = -mean_i L_i``; ``terms`` are the batch means of
    the weighted ELBO terms, so ``loss == -sum(terms.values())``: ``log_px_z``,
    ``log_pz_c`` (``E_q \log p(z|c)``), ``log_pc_qc`` (``E_q \log p(c)/q(c|x)``,
    with ``p(c) = m_i``) and ``entropy_qz``.

  Example:
    >>> z_mean, z_logvar = jnp.zeros((1, 3, 1)), jnp.zeros((1, 3, 1))
    >>> log_gamma = jnp.log(jnp.array([[[0.5, 0.5], [0.9, 0.1], [0.9, 0.1]]]))
    >>> loss, terms = dgg_loss(jnp.zeros((1, 3)), z_mean, z_logvar, log_gamma,
    ...                        jnp.zeros((2, 1)), jnp.zeros((2, 1)))
    >>> {name: round(float(value), 4) for name, value in terms.items()}
    {'log_px_z': 0.0, 'log_pz_c': -1.4189, 'log_pc_qc': -0.1017, 'entropy_qz': 1.4189}
    >>> round(float(loss), 4)
    0.1017
  """
  weights = neighbour_weights(log_gamma.shape[-2] - 1, log_gamma.dtype)
  if log_prior is None:
    log_prior = jax.lax.stop_gradient(neighbourhood_log_prior(log_gamma, weights))
  log_prior = jnp.expand_dims(log_prior, -2)  # shared by the neighbourhood
  per_neighbour = {
      "log_px_z": log_px_z,
      "log_pz_c": jnp.sum(jnp.exp(log_gamma) * expected_log_normal(z_mean, z_logvar, mu, logvar),
                          axis=-1),
      "log_pc_qc": categorical_term(log_gamma, log_prior),
      "entropy_qz": gaussian_entropy(z_logvar),
  }
  terms = {name: jnp.mean(value @ weights) for name, value in per_neighbour.items()}
  return -sum(terms.values()), terms


def vade_loss(
    log_px_z: chex.Array,
    z_mean: chex.Array,
    z_logvar: chex.Array,
    log_gamma: chex.Array,
    mu: chex.Array,
    logvar: chex.Array,
    *,
    log_pi: chex.Array | None = None,
) -> tuple[chex.Array, dict[str, chex.Array]]:
  r"""VaDE's closed-form ELBO (section 3.2); minus its batch mean.

  ``L(x) = \log p(x|z) - 1/2 \sum_k \gamma_k \sum_d (\log(2\pi\sigma_{kd}^2) +
  (\tilde\sigma_d^2 + (\tilde\mu_d - \mu_{kd})^2) / \sigma_{kd}^2) + \sum_k
  \gamma_k \log(\pi_k / \gamma_k) + 1/2 \sum_d (1 + \log 2\pi + \log
  \tilde\sigma_d^2)``, one sample ``z ~ q(z|x)`` in the first term.
  Computed as :func:`dgg_loss` with no neighbours and ``m = pi``.

  Args:
    log_px_z: (N,) ``\log p(x|z)``, e.g. :func:`bernoulli_log_likelihood`.
    z_mean, z_logvar: (N, p). log_gamma: (N, K), ``\log q(c|x)`` (VaDE: the
      :func:`vade_log_posterior` of the sample ``z``). mu, logvar: (K, p).
    log_pi: (K,) log mixing weights; uniform when ``None``.

  Returns:
    ``(loss, terms)`` as in :func:`dgg_loss`, with ``p(c) = pi``.

  Example:
    >>> log_gamma = jnp.log(jnp.array([[0.9, 0.1]]))
    >>> loss, terms = vade_loss(jnp.zeros(1), jnp.zeros((1, 1)), jnp.zeros((1, 1)),
    ...                         log_gamma, jnp.zeros((2, 1)), jnp.zeros((2, 1)))
    >>> round(float(terms["log_pc_qc"]), 4), round(float(loss), 4)  # -KL(gamma || 1/2)
    (-0.3681, 0.3681)
  """
  log_pi = _uniform_if_none(log_pi, mu.shape[0], log_gamma.dtype)
  return dgg_loss(log_px_z[:, None], z_mean[:, None], z_logvar[:, None], log_gamma[:, None],
                  mu, logvar, log_prior=log_pi)


def vade_log_posterior(
    z: chex.Array,
    mu: chex.Array,
    logvar: chex.Array,
    *,
    log_pi: chex.Array | None = None,
    floor: float = 0.0,
) -> chex.Array:
  r"""``\log p(c | z)``: ``\gamma_k \propto \pi_k N(z; \mu_k, \sigma_k^2) + \epsilon``, (..., K).

  VaDE's ``q(c|x) \approx p(c|z)`` (section 3.2), used for training at a sample
  ``z`` and for prediction at the latent mean when there is no separate
  ``gamma`` head. A log-softmax, so far-away ``z`` still gets a finite,
  normalised posterior. ``log_pi`` need not be normalised.

  ``floor`` is ``\epsilon``, 0 for Bayes' rule. VaDE-pytorch adds 1e-10 to
  every ``\pi_k N(z; \mu_k, \sigma_k^2)`` before normalising: where those
  densities are of that order (10 latent dimensions of variance a few units
  give about 1e-9 near a mean) it pulls ``\gamma`` toward uniform, and far
  from every cluster ``\gamma`` is uniform with no gradient, where Bayes'
  rule is one-hot on the widest cluster. Computed as a ``logaddexp``, so
  nothing underflows.

  Example:
    >>> mu, logvar = jnp.array([[0.0], [4.0]]), jnp.zeros((2, 1))
    >>> [round(v, 4) for v in jnp.exp(vade_log_posterior(jnp.array([2.0]), mu, logvar)).tolist()]
    [0.5, 0.5]
    >>> jnp.exp(vade_log_posterior(jnp.array([1e4]), mu, logvar)).tolist()
    [0.0, 1.0]
    >>> jnp.exp(vade_log_posterior(jnp.array([1e4]), mu, logvar, floor=1e-10)).tolist()
    [0.5, 0.5]
  """
  log_pi = _uniform_if_none(log_pi, mu.shape[0], z.dtype)
  log_joint = log_pi + log_normal(z, mu, logvar)
  if floor:
    log_joint = jnp.logaddexp(log_joint, math.log(floor))
  return jax.nn.log_softmax(log_joint, axis=-1)


def contrastive_loss(
    a: chex.Array,
    b: chex.Array,
    positive: chex.Array,
    *,
    margin: float = 3.0,
) -> tuple[chex.Array, dict[str, chex.Array]]:
  r"""Siamese contrastive loss (DGG supplement, section 5, eq. (19)), mean over pairs.

  ``||a - b||^2`` for a positive pair, ``\max(c - ||a - b||, 0)^2`` for a
  negative one, ``c`` the ``margin`` (3 in the supplement). ``a``, ``b`` (P, p)
  embeddings of the two sides of each pair, ``positive`` (P,) boolean. The mean
  over all P pairs keeps the scale independent of the number of pairs.

  Returns:
    ``(loss, {"positive": ..., "negative": ...})``, each term the sum of its
    pairs' losses divided by P, so ``loss`` is their sum.

  Example:
    >>> a = jnp.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    >>> b = jnp.array([[1.0, 0.0], [1.0, 0.0], [4.0, 0.0]])
    >>> loss, terms = contrastive_loss(a, b, jnp.array([True, False, False]))
    >>> float(terms["positive"]), float(terms["negative"]), float(loss)  # (1, 4, 0) / 3
    (0.3333333432674408, 1.3333333730697632, 1.6666667461395264)
  """
  squared = jnp.sum(jnp.square(a - b), axis=-1)
  # sqrt has an infinite slope at 0: a negative pair of identical embeddings gets
  # the subgradient 0 instead of NaN.
  distance = jnp.where(squared > 0, jnp.sqrt(jnp.where(squared > 0, squared, 1.0)), 0.0)
  terms = {
      "positive": jnp.mean(jnp.where(positive, squared, 0.0)),
      "negative": jnp.mean(jnp.where(positive, 0.0, jnp.square(jax.nn.relu(margin - distance)))),
  }
  return terms["positive"] + terms["negative"], terms
