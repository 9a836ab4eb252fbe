"""EDGaM: the streamlined EM of a Gaussian mixture on auto-encoder codes.

"Streamlining EM into Auto-Encoder Networks" (EDGaM, the differentiable
Gaussian mixture network). Only the paper's appendix is available, not its main
text, so equations (3) to (10) are not. Equation numbers below are the paper's.

What the APPENDIX FIXES: the forward order of the streamlined EM (an E-step,
eq. (3); then T-1 times a moment update, eq. (5), a correction loss, eq. (7),
and an E-step; then a reconstruction through a skip connection, eq. (9));
learnable ``beta1``, ``beta2`` initialised to 0.9 and used in eq. (7); the
cluster reweighting ``w_k = (N'/K' + Delta) / (N'_k + Delta)``, ``Delta = 3``,
of the within-group variance loss, eq. (8); an entropy loss weighted by
``eta3`` in the total, eq. (10), with ``eta1``, ``eta2``, ``eta3`` from its
Table 2; Glorot-uniform centroids. What is RECONSTRUCTED (written down in
``docs/methods.md#edgam``, implemented exactly): the formula of every
equation, the diagonal (or isotropic) covariance, the stop-gradient in eq. (7)
and the per-sample scale of each term. The named switches ``covariance``,
``correction``, ``reweight`` and ``reconstruction`` select the alternatives.

Shapes: ``z`` (N, p) codes of a batch of N (the paper's N') samples, ``gamma``
(N, K) responsibilities (lambda in the paper) whose rows lie on the simplex,
``mu`` (K, p) means, ``var`` (K, p) diagonal or (K,) isotropic variances,
``logits`` (K,) mixing logits, ``pi = softmax(logits)``.

Unlike the CM losses, the terms are MEANS over the batch (the correction loss,
which does not sum over samples, excepted); this scale, under which the
paper's ``eta`` are used, is part of the reconstruction. All functions are pure and jit- and vmap-compatible; ``T`` and the
string and boolean switches are static under ``jax.jit``. Results take the
dtype of the inputs.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

COVARIANCES = ("diag", "isotropic")
CORRECTIONS = ("stopgrad", "full")
RECONSTRUCTIONS = ("mse", "bce")
CLUSTER_LOSSES = ("ratio", "v1")
ASSIGNMENTS = ("constant", "hard", "soft")
BETA_GRADIENTS = ("correction", "fixed", "forward")
SHARPENINGS = ("entropy", "target")

# sigmoid(log 9) = 0.9, the appendix's initial beta1 and beta2 (Table 2).
_LOGIT_BETA_INIT = math.log(9.0)


def _check_option(name: str, value: str, allowed: tuple[str, ...]) -> None:
  if value not in allowed:
    raise ValueError(f"{name}={value!r} must be one of {allowed}")


class MixtureParams(NamedTuple):
  r"""The learnable parameters of the mixture layer (a pytree).

  The appendix fixes ``beta1 = sigmoid(b1)`` and ``beta2 = sigmoid(b2)`` as
  learnable, initialised to 0.9; the parameterisation of the variances and
  mixing weights is reconstructed.

  Attributes:
    mu: (K, p) means ``\mu_k^{(0)}``.
    log_var: (K, p) diagonal or (K,) isotropic log-variances ``s_k``.
    logits: (K,) mixing logits, ``\pi = softmax(logits)``.
    b1: scalar, ``\beta_1 = sigmoid(b1)`` for the means in eq. (5).
    b2: scalar, ``\beta_2 = sigmoid(b2)`` for the variances in eq. (5).
  """

  mu: chex.Array
  log_var: chex.Array
  logits: chex.Array
  b1: chex.Array
  b2: chex.Array

  @property
  def var(self) -> chex.Array:
    r"""The variances ``exp(s_k)``, (K, p) or (K,): ``\sigma^{2(0)}_k`` of eq. (5)."""
    return jnp.exp(self.log_var)

  @property
  def covariance(self) -> str:
    """``"diag"`` for (K, p) log-variances, ``"isotropic"`` for (K,)."""
    return "diag" if self.log_var.ndim == 2 else "isotropic"


def init_mixture(
    key: chex.PRNGKey,
    num_clusters: int,
    latent: int,
    covariance: str = "diag",
    dtype: jnp.dtype = jnp.float32,
) -> MixtureParams:
  r"""Initial mixture parameters for K = ``num_clusters`` clusters in p = ``latent`` dims.

  Fixed by the appendix (E.1, Table 2): Glorot-uniform means and
  ``beta1 = beta2 = 0.9``. Reconstructed: unit variances (``s = 0``) and
  uniform mixing weights (zero logits).

  Example:
    >>> params = init_mixture(jax.random.key(0), 3, 2)
    >>> params.mu.shape, params.log_var.shape, params.logits.shape
    ((3, 2), (3, 2), (3,))
    >>> init_mixture(jax.random.key(0), 3, 2, "isotropic").covariance
    'isotropic'
    >>> round(float(jax.nn.sigmoid(params.b1)), 6)
    0.9
  """
  _check_option("covariance", covariance, COVARIANCES)
  var_shape = (num_clusters, latent) if covariance == "diag" else (num_clusters,)
  beta_logit = jnp.asarray(_LOGIT_BETA_INIT, dtype)
  return MixtureParams(
      mu=jax.nn.initializers.glorot_uniform()(key, (num_clusters, latent), dtype),
      log_var=jnp.zeros(var_shape, dtype),
      logits=jnp.zeros((num_clusters,), dtype),
      b1=beta_logit,
      b2=beta_logit,
  )


def _per_dim(var: chex.Array, mu: chex.Array) -> chex.Array:
  """Variances as (K, p): an isotropic (K,) variance repeated over the p dims."""
  return var if var.ndim == 2 else jnp.broadcast_to(var[:, None], mu.shape)


def mahalanobis(z: chex.Array, mu: chex.Array, var: chex.Array) -> chex.Array:
  r"""``M_{nk} = \sum_d (z_{nd} - \mu_{kd})^2 / \sigma^2_{kd}``, (N, K).

  The squared Mahalanobis distance under a diagonal (or isotropic, ``var``
  (K,)) covariance, shared by the E-step, eq. (3), and the cluster loss,
  eq. (8); the appendix does not give the covariance, this form is
  reconstructed. Broadcast in O(NKp) memory rather than expanded like
  ``squared_distances``: p is small (10) and the expansion cancels badly in
  float32 for codes far from the origin.

  Example:
    >>> z = jnp.array([[0.0, 0.0], [2.0, 2.0]])
    >>> mu = jnp.array([[0.0, 0.0], [2.0, 0.0]])
    >>> mahalanobis(z, mu, jnp.array([[1.0, 1.0], [4.0, 1.0]])).tolist()
    [[0.0, 1.0], [8.0, 4.0]]
    >>> mahalanobis(z, mu, jnp.array([1.0, 4.0])).tolist()  # isotropic
    [[0.0, 1.0], [8.0, 1.0]]
  """
  var = _per_dim(var, mu)
  return jnp.sum(jnp.square(z[:, None, :] - mu[None]) / var[None], axis=-1)


def e_step(z: chex.Array, mu: chex.Array, var: chex.Array, logits: chex.Array) -> chex.Array:
  r"""E-step, eq. (3): ``\gamma_{nk} = softmax_k(\log\pi_k + \log N(z_n|\mu_k, diag\sigma^2_k))``.

  The responsibilities (lambda in the paper), (N, K), normalised in the log
  domain (log-sum-exp inside ``softmax``). The appendix fixes that eq. (3) is
  the E-step of a Gaussian mixture; the diagonal (``var`` (K, p)) or isotropic
  (``var`` (K,)) covariance is reconstructed. With the layer's parameters
  (``params.mu, params.var, params.logits``) it is the per-sample prediction,
  independent of the rest of the batch.

  Example:
    >>> z = jnp.array([[0.0], [1.0]])
    >>> mu = jnp.array([[0.0], [2.0]])
    >>> gamma = e_step(z, mu, jnp.ones(2), jnp.zeros(2))  # pi = (1/2, 1/2), unit variances
    >>> [[round(g, 4) for g in row] for row in gamma.tolist()]  # row 0: 1 / (1 + e^-2)
    [[0.8808, 0.1192], [0.5, 0.5]]
  """
  var = _per_dim(var, mu)
  log_density = -0.5 * (mahalanobis(z, mu, var)
                        + jnp.sum(jnp.log(2.0 * jnp.pi * var), axis=-1))
  return jax.nn.softmax(jax.nn.log_softmax(logits) + log_density, axis=-1)


def batch_statistics(
    z: chex.Array,
    gamma: chex.Array,
    *,
    covariance: str = "diag",
    eps: float = 1e-8,
) -> tuple[chex.Array, chex.Array, chex.Array]:
  r"""Batch statistics, eq. (4): soft counts, means and variances, reconstructed.

  ``N'_k = \sum_n \gamma_{nk}``, ``m_k = \sum_n \gamma_{nk} z_n / N'_k`` and
  ``v_k = \sum_n \gamma_{nk} (z_n - m_k)^2 / N'_k`` (elementwise square), with
  ``eps`` added to ``N'_k`` in the divisions so that an empty cluster gets
  ``m_k = v_k = 0`` instead of NaN. For ``covariance="isotropic"``, ``v_k`` is
  the mean over the p dimensions (the isotropic maximum-likelihood variance).
  On the whole data set these are the means and variances of one EM M-step.
  The appendix only names the equations: its section D calls Eq. (4) the
  moment update ("modified M-step"), its Table 1 calls that Eq. (5); the split
  of ``docs/methods.md#edgam`` (statistics (4), update (5)) is followed.

  Returns:
    ``(counts (K,), means (K, p), variances (K, p) or (K,))``.

  Example:
    >>> z = jnp.array([[0.0, 0.0], [2.0, 4.0], [5.0, 5.0]])
    >>> gamma = jnp.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> counts, means, variances = batch_statistics(z, gamma, eps=0.0)
    >>> counts.tolist(), means.tolist(), variances.tolist()
    ([2.0, 1.0], [[1.0, 2.0], [5.0, 5.0]], [[1.0, 4.0], [0.0, 0.0]])
    >>> batch_statistics(z, gamma, covariance="isotropic", eps=0.0)[2].tolist()
    [2.5, 0.0]
  """
  _check_option("covariance", covariance, COVARIANCES)
  counts = jnp.sum(gamma, axis=0)
  denominator = counts[:, None] + eps
  means = gamma.T @ z / denominator
  variances = jnp.einsum("nk,nkd->kd", gamma,
                         jnp.square(z[:, None, :] - means[None])) / denominator
  if covariance == "isotropic":
    variances = jnp.mean(variances, axis=-1)
  return counts, means, variances


def moment_update(
    mu: chex.Array,
    var: chex.Array,
    means: chex.Array,
    variances: chex.Array,
    b1: chex.Array,
    b2: chex.Array,
) -> tuple[chex.Array, chex.Array]:
  r"""Moment update, eq. (5): an exponential moving average toward the batch statistics.

  ``\mu^{(t)}_k = \beta_1 \mu^{(t-1)}_k + (1 - \beta_1) m_k`` and
  ``\sigma^{2(t)}_k = \beta_2 \sigma^{2(t-1)}_k + (1 - \beta_2) v_k``, with
  ``\beta_i = sigmoid(b_i)``. The appendix fixes a moment update with learnable
  betas (initialised to 0.9) that allows noisy mini-batch updates; this form is
  reconstructed. With ``beta = 0`` and the whole data set as the batch it is an
  exact EM M-step for the means and variances.

  Returns:
    ``(mu^{(t)}, var^{(t)})``, shaped like ``mu`` and ``var``.

  Example:
    >>> mu, var = jnp.array([[0.0, 0.0]]), jnp.array([1.0])
    >>> b = jnp.zeros(())  # beta = 0.5
    >>> new_mu, new_var = moment_update(mu, var, jnp.array([[4.0, 8.0]]), jnp.array([5.0]), b, b)
    >>> new_mu.tolist(), new_var.tolist()
    ([[2.0, 4.0]], [3.0])
  """
  beta1, beta2 = jax.nn.sigmoid(b1), jax.nn.sigmoid(b2)
  return beta1 * mu + (1.0 - beta1) * means, beta2 * var + (1.0 - beta2) * variances


def correction_loss(
    mu: chex.Array,
    var: chex.Array,
    mu_path: chex.Array,
    var_path: chex.Array,
    *,
    correction: str = "stopgrad",
) -> chex.Array:
  r"""Correction loss, eq. (7), which replaces the M-step; reconstructed.

  ``L_corr = \sum_{t=1}^{T-1} \sum_k ||\mu_k - sg(\mu^{(t)}_k)||^2
  + ||\sigma^2_k - sg(\sigma^{2(t)}_k)||^2``: SGD moves the layer's ``mu`` and
  ``var`` toward the moment-updated estimates ``mu_path`` (T-1, K, p) and
  ``var_path`` (T-1, K, p) or (T-1, K), a soft M-step. The appendix fixes that
  a correction on the loss replaces the M-step and involves ``beta1``,
  ``beta2``. ``correction="stopgrad"`` holds the targets constant (``sg``);
  ``"full"`` lets the gradient through them to the codes and the betas. Zero
  for T = 1 (empty paths).

  Example:
    >>> mu, var = jnp.zeros((1, 2)), jnp.ones(1)
    >>> float(correction_loss(mu, var, jnp.ones((2, 1, 2)), jnp.full((2, 1), 3.0)))
    12.0
  """
  _check_option("correction", correction, CORRECTIONS)
  if correction == "stopgrad":
    mu_path, var_path = jax.lax.stop_gradient((mu_path, var_path))
  return jnp.sum(jnp.square(mu - mu_path)) + jnp.sum(jnp.square(var - var_path))


def cluster_weights(
    gamma: chex.Array,
    *,
    delta: float = 3.0,
    reweight: bool = True,
) -> chex.Array:
  r"""Cluster reweighting of appendix B: ``w_k = (N'/K' + \Delta) / (N'_k + \Delta)``, (K,).

  Fixed by the appendix: the formula, on a mini-batch of N' samples, and
  ``Delta = 3``. Reconstructed: ``N'_k`` are HARD counts (samples whose argmax
  responsibility is k), ``K'`` the number of non-empty clusters in the batch,
  and the weights are constant under differentiation (stop-gradient). A
  balanced batch gives ``w_k = 1``; a minority cluster ``w_k > 1``, a majority
  cluster ``w_k < 1``. ``reweight=False`` gives ``w_k = 1`` throughout.

  Example:
    >>> gamma = jnp.array([[0.9, 0.1, 0.0]] * 3 + [[0.2, 0.8, 0.0]])  # counts 3, 1, 0
    >>> [round(w, 4) for w in cluster_weights(gamma).tolist()]  # (4/2 + 3) / (N'_k + 3)
    [0.8333, 1.25, 1.6667]
    >>> cluster_weights(gamma, reweight=False).tolist()
    [1.0, 1.0, 1.0]
  """
  num_samples, num_clusters = gamma.shape
  if not reweight:
    return jnp.ones((num_clusters,), gamma.dtype)
  counts = jnp.sum(jax.nn.one_hot(jnp.argmax(gamma, axis=-1), num_clusters,
                                  dtype=gamma.dtype), axis=0)
  nonempty = jnp.sum(counts > 0).astype(gamma.dtype)
  return jax.lax.stop_gradient((num_samples / nonempty + delta) / (counts + delta))


def cluster_loss(
    z: chex.Array,
    gamma: chex.Array,
    mu: chex.Array,
    var: chex.Array,
    weights: chex.Array,
) -> chex.Array:
  r"""Reweighted cluster loss, eq. (8): ``(1/N') \sum_k w_k \sum_n \gamma_{nk} M_{nk}``.

  The within-group variance, ``M`` the :func:`mahalanobis` distance of ``z_n``
  to the last moment-updated mean ``\mu^{(T-1)}_k`` under the variance
  ``\sigma^{2(T-1)}_k``. The appendix fixes a within-group variance reweighted
  by :func:`cluster_weights`; the Mahalanobis form and the 1/N' scale are
  reconstructed. It has no log-determinant: it decreases as the variances grow,
  only the correction loss holds them to the batch's.

  Example:
    >>> z = jnp.array([[0.0, 0.0], [2.0, 2.0]])
    >>> gamma = jnp.array([[1.0, 0.0], [0.5, 0.5]])
    >>> mu = jnp.array([[0.0, 0.0], [2.0, 0.0]])
    >>> var = jnp.array([[1.0, 1.0], [4.0, 1.0]])
    >>> float(cluster_loss(z, gamma, mu, var, jnp.array([1.0, 2.0])))  # (0.5 8 + 2 0.5 4) / 2
    4.0
  """
  return jnp.sum(weights * jnp.sum(gamma * mahalanobis(z, mu, var), axis=0)) / z.shape[0]


def assignment(gamma: chex.Array, assign: str = "constant") -> chex.Array:
  r"""The responsibilities as the cluster loss, eq. (8), weighs the distances (v2 switch).

  ``"soft"``: ``gamma`` itself, with its gradient (v1); ``"constant"``:
  ``sg(gamma)``, the soft values held constant (v2's default); ``"hard"``:
  the one-hot argmax. Measured on v1: the gradient through ``gamma`` moves
  samples into the largest, broadest cluster; held constant or hard, the
  start holds. Reconstructed (v2).

  Example:
    >>> gamma = jnp.array([[0.7, 0.3]])
    >>> assignment(gamma, "hard").tolist(), assignment(gamma, "constant").tolist()
    ([[1.0, 0.0]], [[0.699999988079071, 0.30000001192092896]])
  """
  _check_option("assign", assign, ASSIGNMENTS)
  if assign == "hard":
    return jax.nn.one_hot(jnp.argmax(gamma, axis=-1), gamma.shape[-1], dtype=gamma.dtype)
  return jax.lax.stop_gradient(gamma) if assign == "constant" else gamma


def total_variance(z: chex.Array) -> chex.Array:
  r"""``s^2 = mean_{n, d} (z_{nd} - ar z_d)^2``, the batch's total code variance (scalar).

  The denominator of v2's cluster loss, WITH its gradient: the loss becomes a
  within/total scatter ratio, as in Fisher's criterion, which shrinking
  every code no longer lowers. Reconstructed (v2).

  Example:
    >>> float(total_variance(jnp.array([[0.0, 0.0], [2.0, 4.0]])))  # (1 + 4) / 2
    2.5
  """
  return jnp.mean(jnp.square(z - jnp.mean(z, axis=0)))


def ratio_cluster_loss(
    z: chex.Array,
    assign: chex.Array,
    mu: chex.Array,
    var: chex.Array,
    weights: chex.Array,
) -> chex.Array:
  r"""v2's scale-free cluster loss, eq. (8) as reconstructed after measuring v1.

  ``L_clu = \sum_n w_{k(n)} \sum_k a_{nk} ||z_n - \mu_k||^2_D / (N' s^2)``,
  ``a`` the :func:`assignment` (``sg(gamma)`` by default), ``k(n) = argmax_k
  gamma_nk`` and ``w`` the :func:`cluster_weights` applied per sample for its
  own cluster (``weights`` (N,), constant), ``s^2`` the
  :func:`total_variance` of the batch's codes, and ``||.||_D`` the distance
  scaled by the variances ``var`` divided by their mean (their shape, not
  their scale: shrinking the codes or inflating the variances no longer
  pays). v1 (:func:`cluster_loss`) was lowered by shrinking every code (code
  std 2.29 -> 0.52 on digits) until the clusters merged.

  Example:
    >>> z = jnp.array([[0.0, 0.0], [2.0, 0.0]])
    >>> mu = jnp.array([[0.0, 0.0], [2.0, 0.0]])
    >>> a = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    >>> float(ratio_cluster_loss(z, a, mu, jnp.ones((2, 2)), jnp.ones(2)))  # at the means
    0.0
    >>> loss = lambda c: ratio_cluster_loss(c * z, a, c * mu + 1.0, jnp.ones((2, 2)), jnp.ones(2))
    >>> round(float(loss(1.0)), 4), round(float(loss(3.0)), 4)  # scale-free: 1 / 0.5 vs 9 / 4.5
    (4.0, 0.4444)
  """
  shape = _per_dim(var, mu)
  shape = shape / jnp.mean(shape)
  within = jnp.sum(assign * mahalanobis(z, mu, shape), axis=-1)
  return jnp.sum(weights * within) / (z.shape[0] * total_variance(z))


def target_distribution(gamma: chex.Array) -> chex.Array:
  r"""DEC's target ``p_{nk} = (\gamma_{nk}^2 / f_k) / \sum_j \gamma_{nj}^2 / f_j``, ``f_k = \sum_n \gamma_{nk}``.

  Squaring sharpens each row; dividing by the soft cluster size keeps large
  clusters from swallowing the others (Xie, Girshick & Farhadi 2016, eq. 3),
  here per batch.

  Example:
    >>> p = target_distribution(jnp.array([[0.6, 0.4], [0.4, 0.6]]))
    >>> [round(v, 4) for v in p[0].tolist()]  # 0.36 / (0.36 + 0.16)
    [0.6923, 0.3077]
  """
  weight = jnp.square(gamma) / jnp.sum(gamma, axis=0)
  return weight / jnp.sum(weight, axis=-1, keepdims=True)


def target_loss(gamma: chex.Array) -> chex.Array:
  r"""``KL(sg(p) || \gamma)`` per sample, averaged: the DEC-style sharpening (v2's ``sharpen="target"``).

  ``(1/N') \sum_n \sum_k p_{nk} \log(p_{nk} / \gamma_{nk})`` with ``p`` the
  :func:`target_distribution`, held constant. The alternative to the entropy
  loss that v2 measures.

  Example:
    >>> gamma = jnp.array([[0.6, 0.4], [0.4, 0.6]])
    >>> round(float(target_loss(gamma)), 4)
    0.0183
    >>> float(target_loss(jnp.eye(2)))  # already sharp: the target is gamma itself
    0.0
  """
  p = jax.lax.stop_gradient(target_distribution(gamma))
  tiny = jnp.finfo(gamma.dtype).tiny
  log_ratio = jnp.log(jnp.maximum(p, tiny)) - jnp.log(jnp.maximum(gamma, tiny))
  return jnp.sum(p * log_ratio) / gamma.shape[0]


_v1_cluster_loss = cluster_loss  # streamlined_em's switch of the same name shadows it


def skip_input(z: chex.Array, gamma: chex.Array, mu: chex.Array) -> chex.Array:
  r"""Skip connection, eq. (9): the decoder's input ``\hat z_n = z_n + \sum_k \gamma_{nk} \mu_k``.

  The appendix (and abstract) fixes a skip-connection reconstruction whose
  decoder receives both the code and the cluster centroid; the sum
  ``z_n + c_n`` with ``c_n`` the responsibility-weighted mean of the final
  iteration (``gamma^{(T)}``, ``mu^{(T-1)}``) is reconstructed.

  Example:
    >>> z = jnp.array([[1.0, 1.0]])
    >>> skip_input(z, jnp.array([[0.25, 0.75]]), jnp.array([[4.0, 0.0], [0.0, 4.0]])).tolist()
    [[2.0, 4.0]]
  """
  return z + gamma @ mu


def reconstruction_loss(
    x: chex.Array,
    x_rec: chex.Array,
    *,
    reconstruction: str = "mse",
    eps: float = 1e-7,
) -> chex.Array:
  r"""Reconstruction loss of eq. (10), a MEAN over every entry (reconstructed).

  ``"mse"``: ``mean (x - \bar x)^2``. ``"bce"``: the binary cross-entropy
  ``-mean (x \log \bar x + (1 - x) \log(1 - \bar x))`` for inputs in [0, 1],
  from PROBABILITIES ``x_rec`` (the MLP decoder's sigmoid output of Table 1),
  clipped to ``[eps, 1 - eps]`` so that a saturated sigmoid stays finite.
  The mean over entries is PyTorch's default reduction, the authors' framework.

  Example:
    >>> x = jnp.array([[0.0, 1.0]])
    >>> float(reconstruction_loss(x, jnp.array([[0.5, 0.5]])))
    0.25
    >>> round(float(reconstruction_loss(x, jnp.array([[0.5, 0.5]]), reconstruction="bce")), 4)
    0.6931
  """
  _check_option("reconstruction", reconstruction, RECONSTRUCTIONS)
  if reconstruction == "mse":
    return jnp.mean(jnp.square(x - x_rec))
  p = jnp.clip(x_rec, eps, 1.0 - eps)
  return -jnp.mean(x * jnp.log(p) + (1.0 - x) * jnp.log1p(-p))


def entropy_loss(gamma: chex.Array) -> chex.Array:
  r"""Entropy loss: ``-(1/N') \sum_n \sum_k \gamma_{nk} \log \gamma_{nk}``, in [0, log K].

  The appendix fixes an entropy loss weighted by ``eta3`` that sharpens the
  soft assignments (the mean of ``max_k gamma_nk`` rises from about 0.5 toward
  1); its form, the mean per-sample entropy, is reconstructed.

  Example:
    >>> round(float(entropy_loss(jnp.array([[0.5, 0.5], [1.0, 0.0]]))), 4)  # (log 2 + 0) / 2
    0.3466
  """
  # log of gamma floored at the smallest normal number, not xlogy: a
  # responsibility that underflowed to 0 then contributes 0 and a finite
  # gradient, where xlogy's gradient is NaN.
  log_gamma = jnp.log(jnp.maximum(gamma, jnp.finfo(gamma.dtype).tiny))
  return -jnp.sum(gamma * log_gamma) / gamma.shape[0]


class StreamlinedEM(NamedTuple):
  r"""What :func:`streamlined_em` returns (a pytree).

  The iterations are the appendix's; the indexing below is reconstructed.

  Attributes:
    gamma: (T, N, K) responsibilities (lambda in the paper) of the T E-steps;
      ``gamma[t] = e_step(z, mu[t], var[t], logits)``, ``gamma[-1]`` is
      ``gamma^{(T)}``.
    mu: (T, K, p) means; ``mu[0]`` the layer's, ``mu[t]`` after t moment updates.
    var: (T, K, p) or (T, K) variances, indexed like ``mu``.
    z_hat: (N, p) the decoder's input, eq. (9).
    terms: the UNWEIGHTED clustering terms ``correction`` (eq. (7)), ``cluster``
      (eq. (8)) and ``entropy``.
  """

  gamma: chex.Array
  mu: chex.Array
  var: chex.Array
  z_hat: chex.Array
  terms: dict[str, chex.Array]


def streamlined_em(
    z: chex.Array,
    params: MixtureParams,
    T: int = 3,
    *,
    correction: str = "stopgrad",
    reweight: bool = True,
    delta: float = 3.0,
    eps: float = 1e-8,
    cluster_loss: str = "v1",
    assign: str = "soft",
    learn_beta: str = "forward",
    sharpen: str = "entropy",
) -> StreamlinedEM:
  r"""The streamlined EM forward of the appendix (Table 1, "Streamlining EM").

  Fixed by the appendix: "Iter 0: E-step (Eq. (3)); Iter 1:T-1: for i in
  range(T-1): moment update (Eq. (5)), correction loss (Eq. (7)), E-step
  (Eq. (3)); Iter T: reconstruction (Eq. (9))". Each moment update starts from
  the previous one's means and variances (the layer's, ``mu^{(0)}``, first),
  with the batch statistics, eq. (4), of the previous E-step's
  responsibilities; every E-step uses the layer's mixing weights. The
  superscript (T) of eq. (9) is read as the final iteration's: ``gamma^{(T)}``
  of the T-th E-step with the last means ``mu^{(T-1)}`` (there are only T-1
  moment updates); the cluster loss, eq. (8), and the sharpening term use the
  same final ``gamma``, means and variances. The gradient flows through every
  step (the moment-updated means are functions of ``z`` and ``mu``), except
  into :func:`cluster_weights`, into the correction targets for
  ``correction="stopgrad"``, and into the betas as ``learn_beta`` says. T is
  static (a Python loop: T is small, 3 by default), as are the string and
  boolean switches under ``jax.jit``.

  The defaults are v1, the reconstruction as first specified; v2 (the
  method's defaults, :data:`V2`) is ``cluster_loss="ratio"``,
  ``assign="constant"``, ``learn_beta="correction"``.

  Args:
    z: (N, p) codes of the batch.
    params: the mixture layer; its ``covariance`` follows ``log_var``'s shape.
    T: number of E-steps, >= 1; T = 1 is a single E-step and no correction.
    correction: ``"stopgrad"`` or ``"full"``, see :func:`correction_loss`.
    reweight: ``False`` sets ``w_k = 1`` in eq. (8).
    delta: ``Delta`` of :func:`cluster_weights`.
    eps: guard of :func:`batch_statistics`.
    cluster_loss: ``"v1"`` (:func:`cluster_loss`, weights per cluster) or
      ``"ratio"`` (:func:`ratio_cluster_loss`, weights per sample).
    assign: the responsibilities in eq. (8), see :func:`assignment`.
    learn_beta: where the betas get a gradient: ``"forward"`` (v1: through
      the moment updates of the forward pass, so eq. (8) moves them; measured:
      it drives beta2 to 0.98 and beta1 down to 0.24-0.82 within 20 epochs),
      ``"correction"`` (v2: only through the correction's targets, eq. (7),
      the forward pass holding them constant) or ``"fixed"`` (never: 0.9).
    sharpen: the sharpening term, ``terms["entropy"]`` (:func:`entropy_loss`)
      or ``terms["target"]`` (:func:`target_loss`, DEC's).

  Example:
    >>> params = init_mixture(jax.random.key(0), 3, 2)
    >>> em = streamlined_em(jax.random.normal(jax.random.key(1), (5, 2)), params, T=3)
    >>> em.gamma.shape, em.mu.shape, em.var.shape, em.z_hat.shape, sorted(em.terms)
    ((3, 5, 3), (3, 3, 2), (3, 3, 2), (5, 2), ['cluster', 'correction', 'entropy'])
  """
  if T < 1:
    raise ValueError(f"T={T} must be >= 1")
  _check_option("correction", correction, CORRECTIONS)
  _check_option("cluster_loss", cluster_loss, CLUSTER_LOSSES)
  _check_option("learn_beta", learn_beta, BETA_GRADIENTS)
  _check_option("sharpen", sharpen, SHARPENINGS)
  sg = jax.lax.stop_gradient
  forward_betas = (params.b1, params.b2) if learn_beta == "forward" else sg((params.b1,
                                                                             params.b2))
  # The correction's targets see live betas where eq. (7) trains them.
  live = learn_beta == "correction" or (learn_beta == "forward" and correction == "full")
  target_betas = (params.b1, params.b2) if live else sg((params.b1, params.b2))
  mus, variances, targets = [params.mu], [params.var], []
  gammas = [e_step(z, params.mu, params.var, params.logits)]
  for _ in range(T - 1):
    _, batch_means, batch_vars = batch_statistics(z, gammas[-1], covariance=params.covariance,
                                                  eps=eps)
    inputs = (mus[-1], variances[-1], batch_means, batch_vars)
    mu, var = moment_update(*inputs, *forward_betas)
    # The same values; their gradient is the correction's (stopgrad: only the betas').
    targets.append(moment_update(*(sg(inputs) if correction == "stopgrad" else inputs),
                                 *target_betas))
    mus.append(mu)
    variances.append(var)
    gammas.append(e_step(z, mu, var, params.logits))
  gamma, mu, var = jnp.stack(gammas), jnp.stack(mus), jnp.stack(variances)
  if targets:
    mu_path, var_path = (jnp.stack(t) for t in zip(*targets))
  else:
    mu_path, var_path = mu[1:], var[1:]
  a = assignment(gamma[-1], assign)
  weights = cluster_weights(gamma[-1], delta=delta, reweight=reweight)
  if cluster_loss == "ratio":
    within = ratio_cluster_loss(z, a, mu[-1], var[-1], weights[jnp.argmax(gamma[-1], -1)])
  else:
    within = _v1_cluster_loss(z, a, mu[-1], var[-1], weights)
  terms = {
      # The targets carry exactly the gradient asked for: no further stop here.
      "correction": correction_loss(params.mu, params.var, mu_path, var_path,
                                    correction="full"),
      "cluster": within,
      # The sharpening term, named by its kind.
      sharpen: entropy_loss(gamma[-1]) if sharpen == "entropy" else target_loss(gamma[-1]),
  }
  return StreamlinedEM(gamma, mu, var, skip_input(z, gamma[-1], mu[-1]), terms)


V2 = {"cluster_loss": "ratio", "assign": "constant", "learn_beta": "correction"}
"""The v2 switches of :func:`streamlined_em` (``docs/methods.md#edgam``, "EDGaM v2")."""


def edgam_loss(
    x: chex.Array,
    x_rec: chex.Array,
    em: StreamlinedEM,
    *,
    eta1: float = 1e-2,
    eta2: float = 1e-2,
    eta3: float = 1e-4,
    reconstruction: str = "mse",
) -> tuple[chex.Array, dict[str, chex.Array]]:
  r"""The EDGaM loss, eq. (10): ``L = L_rec + \eta_1 L_corr + \eta_2 L_clu + \eta_3 L_ent``.

  ``x_rec`` is the decoder's output on ``em.z_hat``. Fixed by the appendix:
  the four terms' roles and the ``eta`` of Table 2; the defaults are its MNIST
  row, also its suggested setting (USPS 1e-1, 5e-2, 1e-4; YTF 5e-2, 5e-2,
  1e-5; Fashion 5e-2, 1e-3, 1e-4). The sum of exactly these terms is
  reconstructed.

  Returns:
    ``(loss, terms)``; each term is its WEIGHTED contribution, so
    ``loss == sum(terms.values())``: keys ``reconstruction``, ``correction``,
    ``cluster`` and the sharpening term, ``entropy`` or ``target`` (``em.terms``
    holds the unweighted ones).

  Example:
    >>> x = jnp.array([[0.0, 1.0]])
    >>> em = StreamlinedEM(None, None, None, None,
    ...                    {"correction": 2.0, "cluster": 3.0, "entropy": 0.5})
    >>> loss, parts = edgam_loss(x, jnp.array([[0.5, 0.5]]), em, eta1=0.1, eta2=1.0, eta3=2.0)
    >>> {name: round(float(value), 4) for name, value in parts.items()}
    {'reconstruction': 0.25, 'correction': 0.2, 'cluster': 3.0, 'entropy': 1.0}
    >>> round(float(loss), 4)
    4.45
  """
  sharpen = "entropy" if "entropy" in em.terms else "target"
  parts = {
      "reconstruction": reconstruction_loss(x, x_rec, reconstruction=reconstruction),
      "correction": eta1 * em.terms["correction"],
      "cluster": eta2 * em.terms["cluster"],
      sharpen: eta3 * em.terms[sharpen],
  }
  return sum(parts.values()), parts
