"""Losses of the clustering module (CM) and of the AE-CM.

Boubekki, Kampffmeyer, Brefeld & Jenssen (2021), "Joint optimization of an
autoencoder for clustering and embedding", Machine Learning 110(7), sections
3 and 4.

Shapes: ``x`` (N, d) inputs (or ``z`` (N, p) codes for the AE-CM), ``gamma``
(N, K) responsibilities whose rows lie on the simplex, ``mu`` (K, d) centroids
(for the CM, the decoder's images of the canonical basis, ``W_dec + b_dec``),
``alpha`` (K,) Dirichlet concentration.

Every term is a SUM over the batch, not a mean: the paper's tuned ``alpha``,
``beta``, ``lam`` and batch sizes assume that scale. All functions are pure,
jit- and vmap-compatible; keyword arguments ``sort`` and ``terms`` are static
under ``jax.jit``. Results take the dtype of the inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import chex
import jax.numpy as jnp
from jax.scipy.special import xlogy

CM_TERMS = ("e1", "e2", "e3", "e4")


def mean_responsibilities(gamma: chex.Array) -> chex.Array:
  r"""Average responsibilities ``\tilde\gamma_k = (1/N) \sum_n \gamma_{nk}``, (K,).

  The M-step's mixture weights (proof of Theorem 1) and the argument of the
  Dirichlet prior, eq. (1).

  Example:
    >>> mean_responsibilities(jnp.array([[1.0, 0.0], [0.5, 0.5]])).tolist()
    [0.75, 0.25]
  """
  return jnp.mean(gamma, axis=0)


def squared_distances(x: chex.Array, mu: chex.Array) -> chex.Array:
  r"""``D_{nk} = ||x_n - \mu_k||^2``, (N, K).

  Expanded as ``||x||^2 - 2 x mu^T + ||mu||^2`` to use O(NK) memory rather than
  the O(NKd) of broadcasting.

  Example:
    >>> squared_distances(jnp.array([[0.0, 0.0], [1.0, 1.0]]),
    ...                   jnp.array([[1.0, 0.0], [2.0, 0.0]])).tolist()
    [[1.0, 4.0], [1.0, 2.0]]
  """
  return (jnp.sum(jnp.square(x), axis=-1)[:, None] - 2.0 * x @ mu.T
          + jnp.sum(jnp.square(mu), axis=-1)[None, :])


def e1_reconstruction(x: chex.Array, gamma: chex.Array, mu: chex.Array) -> chex.Array:
  r"""E1, reconstruction: ``\sum_n ||x_n - \gamma_n \mu||^2``.

  First term of eq. (3) and eq. (7): the CM is an autoencoder whose decoder
  maps the code ``gamma_n`` to the convex combination ``x_bar_n = gamma_n mu``.
  Also the "Reconstruction CM" term of eq. (10), with ``z`` in place of ``x``.

  Example:
    >>> x = jnp.array([[0.0, 0.0], [1.0, 1.0]])
    >>> gamma = jnp.array([[1.0, 0.0], [0.5, 0.5]])
    >>> mu = jnp.array([[1.0, 0.0], [2.0, 0.0]])
    >>> float(e1_reconstruction(x, gamma, mu))
    2.25
  """
  # Expanded as ||x||^2 - 2 <gamma, x mu^T> + <gamma mu mu^T, gamma> so that
  # the (N, d) reconstruction is never formed: x enters only through x mu^T,
  # which runs sharing a batch (vmap, shared batch order) compute as one wide
  # matrix product, and the gradients need (N, K) and (K, d) arrays only.
  return (jnp.sum(jnp.square(x)) - 2.0 * jnp.sum(gamma * (x @ mu.T))
          + jnp.sum((gamma @ (mu @ mu.T)) * gamma))


def e2_sparsity(gamma: chex.Array, mu: chex.Array | None = None) -> chex.Array:
  r"""E2, sparsity: ``\sum_k (\sum_n \gamma_{nk}(1 - \gamma_{nk})) ||\mu_k||^2``.

  Second term of eq. (3) and eq. (7), a Gini impurity of each ``gamma_n``
  weighted by the centroids' squared norms. With ``mu=None`` the norms are
  taken as 1, the orthonormal form of eq. (9) used as the "Sparsity" term of
  the AE-CM, eq. (10): ``\sum_{nk} \gamma_{nk}(1 - \gamma_{nk})``.

  Example:
    >>> gamma = jnp.array([[1.0, 0.0], [0.5, 0.5]])
    >>> mu = jnp.array([[1.0, 0.0], [2.0, 0.0]])
    >>> float(e2_sparsity(gamma, mu)), float(e2_sparsity(gamma))
    (1.25, 0.5)
  """
  gini = jnp.sum(gamma * (1.0 - gamma), axis=0)
  if mu is None:
    return jnp.sum(gini)
  return jnp.sum(gini * jnp.sum(jnp.square(mu), axis=-1))


def e3_merging(gamma: chex.Array, mu: chex.Array) -> chex.Array:
  r"""E3, cluster merging: ``-\sum_{k \neq l} (\Gamma^T \Gamma)_{kl} (\mu \mu^T)_{kl}``.

  Third term of eq. (3) and eq. (7), i.e. ``-\sum_n \sum_{k \neq l}
  \gamma_{nk} \gamma_{nl} \mu_k^T \mu_l`` (the paper's display omits
  ``k != l``; the diagonal belongs to E2, as its derivation shows). Zero for
  orthonormal centroids, eq. (9).

  Example:
    >>> gamma = jnp.array([[1.0, 0.0], [0.5, 0.5]])
    >>> mu = jnp.array([[1.0, 0.0], [2.0, 0.0]])
    >>> float(e3_merging(gamma, mu))
    -1.0
  """
  products = (gamma.T @ gamma) * (mu @ mu.T)
  return jnp.trace(products) - jnp.sum(products)


def e4_dirichlet(
    gamma: chex.Array,
    alpha: chex.Array,
    *,
    sort: bool = False,
    eps: float = 1e-10,
) -> chex.Array:
  r"""E4, Dirichlet prior: ``\sum_k (1 - \alpha_k) \log(\tilde\gamma_k + \epsilon)``.

  Last term of eq. (3) and eq. (7) (minus the log-prior of eq. (1)); the
  "Dirichlet Prior" term of eq. (10). ``eps`` keeps an empty cluster finite.
  With ``sort=True`` (the asymmetric prior of appendix 2) ``alpha`` and
  ``\tilde\gamma`` are both sorted in ascending order before pairing, so the
  largest concentration goes to whichever cluster is currently largest. For
  ``alpha = (1 + 1/K) 1_K``, E4 = KL(1_K / K || \tilde\gamma) + log K (section
  3.2 states it "up to a constant").

  Example:
    >>> gamma = jnp.array([[1.0, 0.0], [0.5, 0.5]])  # mean (0.75, 0.25)
    >>> round(float(e4_dirichlet(gamma, jnp.array([2.0, 2.0]))), 4)
    1.674
    >>> alpha = jnp.array([1.0, 3.0])
    >>> round(float(e4_dirichlet(gamma, alpha)), 4)  # 3 paired with 0.25
    2.7726
    >>> round(float(e4_dirichlet(gamma, alpha, sort=True)), 4)  # 3 with 0.75
    0.5754
  """
  alpha = jnp.asarray(alpha, gamma.dtype)
  mean = mean_responsibilities(gamma)
  if sort:
    alpha, mean = jnp.sort(alpha), jnp.sort(mean)
  return jnp.sum((1.0 - alpha) * jnp.log(mean + eps))


def dirichlet_concentration(
    alpha: float,
    num_clusters: int,
    frequencies: Sequence[float] | chex.Array | None = None,
) -> chex.Array:
  r"""The (K,) concentration: ``\alpha 1_K``, or ``\alpha f`` for the asymmetric prior.

  ``f`` (appendix 2: the label frequencies) is normalised onto the simplex, so
  counts are accepted too. Pair the asymmetric prior with ``sort=True``.

  Example:
    >>> dirichlet_concentration(2.0, 3).tolist()
    [2.0, 2.0, 2.0]
    >>> dirichlet_concentration(2.0, 3, frequencies=(1, 1, 2)).tolist()
    [0.5, 0.5, 1.0]
  """
  if frequencies is None:
    return jnp.full((num_clusters,), alpha, dtype=float)
  f = jnp.asarray(frequencies, dtype=float)
  if f.shape != (num_clusters,):
    raise ValueError(f"frequencies has shape {f.shape}, expected ({num_clusters},)")
  return alpha * f / jnp.sum(f)


def cm_loss(
    x: chex.Array,
    gamma: chex.Array,
    mu: chex.Array,
    alpha: chex.Array,
    *,
    sort: bool = False,
    terms: Sequence[str] = CM_TERMS,
) -> tuple[chex.Array, dict[str, chex.Array]]:
  r"""The CM loss, eq. (7): ``L_CM = E1 + E2 + E3 + E4``.

  Minus the Q-function of eq. (1) at the M-step's ``phi = \tilde\gamma``, up to
  the entropy term (Theorem 1; see :func:`q_function`). ``terms`` (a tuple,
  static under jit) selects the terms summed into the loss, for the ablation of
  Table 3; all four are reported regardless, unweighted.

  Returns:
    ``(loss, {"e1": E1, "e2": E2, "e3": E3, "e4": E4})``.

  Example:
    >>> x = jnp.array([[0.0, 0.0], [1.0, 1.0]])
    >>> gamma = jnp.array([[1.0, 0.0], [0.5, 0.5]])
    >>> mu = jnp.array([[1.0, 0.0], [2.0, 0.0]])
    >>> loss, parts = cm_loss(x, gamma, mu, jnp.array([2.0, 2.0]))
    >>> round(float(loss), 4), sorted(parts)
    (4.174, ['e1', 'e2', 'e3', 'e4'])
    >>> float(cm_loss(x, gamma, mu, jnp.array([2.0, 2.0]), terms=("e1",))[0])
    2.25
  """
  unknown = set(terms) - set(CM_TERMS)
  if unknown or not terms:
    raise ValueError(f"terms={tuple(terms)} must be a non-empty subset of {CM_TERMS}")
  parts = {
      "e1": e1_reconstruction(x, gamma, mu),
      "e2": e2_sparsity(gamma, mu),
      "e3": e3_merging(gamma, mu),
      "e4": e4_dirichlet(gamma, alpha, sort=sort),
  }
  # Iterate over CM_TERMS, not `terms`, so a repeated name is not counted twice.
  loss = sum(parts[name] for name in CM_TERMS if name in terms)
  return loss, parts


def soft_kmeans_objective(x: chex.Array, gamma: chex.Array, mu: chex.Array) -> chex.Array:
  r"""Soft k-means: ``\sum_n \sum_k \gamma_{nk} ||x_n - \mu_k||^2``.

  The distance part of eq. (2); the proof of Theorem 1 shows it equals
  E1 + E2 + E3.

  Example:
    >>> x = jnp.array([[0.0, 0.0], [1.0, 1.0]])
    >>> gamma = jnp.array([[1.0, 0.0], [0.5, 0.5]])
    >>> mu = jnp.array([[1.0, 0.0], [2.0, 0.0]])
    >>> float(soft_kmeans_objective(x, gamma, mu))  # = 2.25 + 1.25 - 1
    2.5
  """
  return jnp.sum(gamma * squared_distances(x, mu))


def q_function(
    x: chex.Array,
    gamma: chex.Array,
    mu: chex.Array,
    phi: chex.Array,
    alpha: chex.Array,
) -> chex.Array:
  r"""The Q-function of eq. (1) (isotropic GMM, covariance I/2, Dirichlet prior).

  ``Q = \sum_{nk} \gamma_{nk} (\log \phi_k - ||x_n - \mu_k||^2)
  + \sum_k (\alpha_k - 1) \log \tilde\gamma_k``, with ``phi`` (K,) the mixture
  weights. ``0 log 0 = 0``; the prior term is ``-E4`` (same ``eps``).

  Theorem 1, precisely: the M-step maximises Q over the simplex at
  ``phi = \tilde\gamma``, where eq. (2) holds and

    ``Q(\Gamma, \tilde\gamma, \mu) + N H(\tilde\gamma) = -L_CM(\Gamma, \mu)``,

  with ``N H(\tilde\gamma) = -\sum_{nk} \gamma_{nk} \log \tilde\gamma_k`` the
  :func:`entropy_term`. The paper drops it as "constant"; it depends on
  ``Gamma`` through ``\tilde\gamma``, so minimising the CM loss maximises
  ``Q + N H(\tilde\gamma)``, not Q alone.

  Example:
    >>> x = jnp.array([[0.0, 0.0], [1.0, 1.0]])
    >>> gamma = jnp.array([[1.0, 0.0], [0.5, 0.5]])
    >>> mu = jnp.array([[1.0, 0.0], [2.0, 0.0]])
    >>> alpha = jnp.array([2.0, 2.0])
    >>> q = q_function(x, gamma, mu, mean_responsibilities(gamma), alpha)
    >>> round(float(q + entropy_term(gamma)), 4)
    -4.174
    >>> round(float(cm_loss(x, gamma, mu, alpha)[0]), 4)
    4.174
  """
  return (jnp.sum(xlogy(gamma, phi)) - soft_kmeans_objective(x, gamma, mu)
          - e4_dirichlet(gamma, alpha))


def entropy_term(gamma: chex.Array) -> chex.Array:
  r"""``-\sum_{nk} \gamma_{nk} \log \tilde\gamma_k = N H(\tilde\gamma)``.

  The first term of eq. (2) with its sign flipped: what separates Q from
  ``-L_CM`` in Theorem 1 (see :func:`q_function`). ``0 log 0 = 0``.

  Example:
    >>> round(float(entropy_term(jnp.array([[1.0, 0.0], [0.0, 1.0]]))), 4)  # 2 log 2
    1.3863
  """
  return -jnp.sum(xlogy(gamma, mean_responsibilities(gamma)))


def sparsity_criterion(gamma: chex.Array, mu: chex.Array) -> chex.Array:
  r"""Model-selection criterion ``L_sp = E2 + E3`` (section 5.2.4); lowest is best.

  For the AE-CM, evaluate it on the codes with the CM's centroids.

  Example:
    >>> gamma = jnp.array([[1.0, 0.0], [0.5, 0.5]])
    >>> mu = jnp.array([[1.0, 0.0], [2.0, 0.0]])
    >>> float(sparsity_criterion(gamma, mu))
    0.25
  """
  return e2_sparsity(gamma, mu) + e3_merging(gamma, mu)


def orthonormality_penalty(mu: chex.Array) -> chex.Array:
  r"""``||\mu \mu^T - I_K||_1``, entrywise L1 of the (K, K) Gram matrix's defect.

  The "Orthonormality" constraint of eq. (8), penalised in eq. (10), where the
  paper writes ``\mu^T \mu`` for a d x K ``\mu``; ours is (K, d).

  Example:
    >>> float(orthonormality_penalty(jnp.array([[1.0, 0.0], [2.0, 0.0]])))
    7.0
  """
  return jnp.sum(jnp.abs(mu @ mu.T - jnp.eye(mu.shape[0], dtype=mu.dtype)))


def aecm_loss(
    x: chex.Array,
    x_bar: chex.Array,
    z: chex.Array,
    gamma: chex.Array,
    mu: chex.Array,
    alpha: chex.Array,
    *,
    beta: float,
    lam: float,
    sort: bool = False,
) -> tuple[chex.Array, dict[str, chex.Array]]:
  r"""The AE-CM loss, eq. (10).

  ``L = \beta \sum_n ||x_n - \bar x_n||^2 + \sum_n ||z_n - \gamma_n \mu||^2
  + \sum_{nk} \gamma_{nk}(1 - \gamma_{nk}) + E4 + \lambda ||\mu \mu^T - I_K||_1``.

  The CM loss on the codes ``z`` under the orthonormality assumption of eq. (8),
  which makes E2 unit-norm and E3 vanish (eq. (9)), plus the autoencoder's
  reconstruction of ``x``. ``mu`` is (K, p).

  Returns:
    ``(loss, terms)``; each term is reported as its contribution to the loss,
    WEIGHTED (``rec_ae`` includes ``beta``, ``orthonormality`` includes
    ``lam``), so ``loss == sum(terms.values())``: keys ``rec_ae``, ``rec_cm``,
    ``sparsity``, ``dirichlet``, ``orthonormality``.

  Example:
    >>> x = z = jnp.array([[0.0, 0.0], [1.0, 1.0]])
    >>> gamma = jnp.array([[1.0, 0.0], [0.5, 0.5]])
    >>> mu = jnp.array([[1.0, 0.0], [2.0, 0.0]])
    >>> loss, parts = aecm_loss(x, jnp.zeros_like(x), z, gamma, mu, jnp.array([2.0, 2.0]),
    ...                         beta=2.0, lam=0.5)
    >>> {name: round(float(value), 4) for name, value in parts.items()}
    {'rec_ae': 4.0, 'rec_cm': 2.25, 'sparsity': 0.5, 'dirichlet': 1.674, 'orthonormality': 3.5}
    >>> round(float(loss), 4)
    11.924
  """
  parts = {
      "rec_ae": beta * jnp.sum(jnp.square(x - x_bar)),
      "rec_cm": e1_reconstruction(z, gamma, mu),
      "sparsity": e2_sparsity(gamma),
      "dirichlet": e4_dirichlet(gamma, alpha, sort=sort),
      "orthonormality": lam * orthonormality_penalty(mu),
  }
  return sum(parts.values()), parts
