"""CM and AE-CM losses (Boubekki et al. 2021): gradients, identities, invariances."""

from __future__ import annotations

import doctest
import functools
import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deepclust_jax import losses
from deepclust_jax.losses import cm as cm_module

N, K, D = 7, 3, 4


def random_inputs(seed: int) -> dict[str, np.ndarray]:
  """float64 numpy arrays; gamma is a softmax of ``logits``.

  One shape for every test, so op-by-op compilations are cached across tests.
  """
  rng = np.random.default_rng(seed)
  return {
      "x": rng.normal(size=(N, D)),
      "x_bar": rng.normal(size=(N, D)),
      "z": rng.normal(size=(N, D)),
      "logits": rng.normal(size=(N, K)),
      "mu": rng.normal(size=(K, D)),
      "alpha": rng.uniform(0.5, 5.0, size=K),
  }


def softmax(logits):
  return jax.nn.softmax(logits, axis=-1)


# (name, function of the differentiated arguments, names of those arguments).
GRADIENT_CASES = [
    ("e1", lambda x, l, mu: losses.e1_reconstruction(x, softmax(l), mu), ("x", "logits", "mu")),
    ("e2", lambda l, mu: losses.e2_sparsity(softmax(l), mu), ("logits", "mu")),
    ("e2_unit", lambda l: losses.e2_sparsity(softmax(l)), ("logits",)),
    ("e3", lambda l, mu: losses.e3_merging(softmax(l), mu), ("logits", "mu")),
    ("e4", lambda l, a: losses.e4_dirichlet(softmax(l), a), ("logits", "alpha")),
    ("e4_sorted", lambda l, a: losses.e4_dirichlet(softmax(l), a, sort=True),
     ("logits", "alpha")),
    ("soft_kmeans", lambda x, l, mu: losses.soft_kmeans_objective(x, softmax(l), mu),
     ("x", "logits", "mu")),
    ("q_function", lambda x, l, mu, a: losses.q_function(
        x, softmax(l), mu, softmax(l[0]), a), ("x", "logits", "mu", "alpha")),
    ("entropy", lambda l: losses.entropy_term(softmax(l)), ("logits",)),
    ("l_sp", lambda l, mu: losses.sparsity_criterion(softmax(l), mu), ("logits", "mu")),
    ("orthonormality", losses.orthonormality_penalty, ("mu",)),
    ("cm_loss", lambda x, l, mu, a: losses.cm_loss(x, softmax(l), mu, a)[0],
     ("x", "logits", "mu", "alpha")),
    ("cm_loss_sorted", lambda x, l, mu, a: losses.cm_loss(x, softmax(l), mu, a, sort=True)[0],
     ("x", "logits", "mu", "alpha")),
    ("aecm_loss", lambda x, xb, z, l, mu, a: losses.aecm_loss(
        x, xb, z, softmax(l), mu, a, beta=0.7, lam=0.3)[0],
     ("x", "x_bar", "z", "logits", "mu", "alpha")),
    ("aecm_loss_sorted", lambda x, xb, z, l, mu, a: losses.aecm_loss(
        x, xb, z, softmax(l), mu, a, beta=0.7, lam=0.3, sort=True)[0],
     ("x", "x_bar", "z", "logits", "mu", "alpha")),
]


@pytest.mark.parametrize("fn,argnames", [c[1:] for c in GRADIENT_CASES],
                         ids=[c[0] for c in GRADIENT_CASES])
def test_gradients_match_finite_differences(grads_match, fn, argnames):
  data = random_inputs(0)
  args = tuple(jnp.asarray(data[a]) for a in argnames)
  grads_match(jax.jit(fn), args)


def test_terms_match_literal_sums(x64):
  """Each term against a loop transcription of its definition (eqs. (1), (7), (10))."""
  data = random_inputs(3)
  x, mu, alpha = data["x"], data["mu"], data["alpha"]
  gamma = np.asarray(softmax(data["logits"]))
  mean = gamma.mean(0)
  expected = {
      "e1": sum(np.sum((x[n] - gamma[n] @ mu) ** 2) for n in range(N)),
      "e2": sum(gamma[n, k] * (1 - gamma[n, k]) * mu[k] @ mu[k]
                for n in range(N) for k in range(K)),
      "e3": -sum(gamma[n, k] * gamma[n, l] * mu[k] @ mu[l]
                 for n in range(N) for k in range(K) for l in range(K) if k != l),
      "e4": sum((1 - alpha[k]) * np.log(mean[k]) for k in range(K)),
      "soft_kmeans": sum(gamma[n, k] * np.sum((x[n] - mu[k]) ** 2)
                         for n in range(N) for k in range(K)),
      "q": sum(gamma[n, k] * (np.log(0.2 + 0.1 * k) - np.sum((x[n] - mu[k]) ** 2))
               for n in range(N) for k in range(K))
           + sum((alpha[k] - 1) * np.log(mean[k]) for k in range(K)),
  }
  actual = {
      "e1": losses.e1_reconstruction(x, gamma, mu),
      "e2": losses.e2_sparsity(gamma, mu),
      "e3": losses.e3_merging(gamma, mu),
      "e4": losses.e4_dirichlet(gamma, alpha),
      "soft_kmeans": losses.soft_kmeans_objective(x, gamma, mu),
      "q": losses.q_function(x, gamma, mu, 0.2 + 0.1 * np.arange(K), alpha),
  }
  chex.assert_trees_all_close(actual, expected, rtol=1e-9)


def test_e1_e2_e3_sum_to_soft_kmeans(x64):
  for seed in range(3):
    data = random_inputs(seed)
    x, gamma, mu = data["x"], softmax(data["logits"]), jnp.asarray(data["mu"])
    total = (losses.e1_reconstruction(x, gamma, mu) + losses.e2_sparsity(gamma, mu)
             + losses.e3_merging(gamma, mu))
    np.testing.assert_allclose(total, losses.soft_kmeans_objective(x, gamma, mu), rtol=1e-12)
    np.testing.assert_allclose(losses.sparsity_criterion(gamma, mu),
                               total - losses.e1_reconstruction(x, gamma, mu), rtol=1e-12)


def test_theorem_1(x64):
  """The M-step sets phi = mean gamma; there Q + N H(mean gamma) = -L_CM exactly."""
  data = random_inputs(1)
  x, gamma, mu, alpha = data["x"], softmax(data["logits"]), data["mu"], data["alpha"]
  gamma_mean = losses.mean_responsibilities(gamma)
  q = jax.jit(functools.partial(losses.q_function, x, gamma, mu, alpha=alpha))

  # M-step: mean gamma is a stationary point of Q on the simplex, and the maximum.
  grad = jax.grad(lambda logits: q(softmax(logits)))(jnp.log(gamma_mean))
  np.testing.assert_allclose(grad, 0.0, atol=1e-12)
  phis = np.random.default_rng(0).dirichlet(np.ones(K), size=20)
  assert jnp.all(jax.vmap(q)(phis) < q(gamma_mean))

  loss, _ = losses.cm_loss(x, gamma, mu, alpha)
  np.testing.assert_allclose(q(gamma_mean) + losses.entropy_term(gamma), -loss, rtol=1e-12)
  # The term the paper calls constant is N H(mean gamma): it varies with gamma.
  entropy = -jnp.sum(gamma_mean * jnp.log(gamma_mean))
  np.testing.assert_allclose(losses.entropy_term(gamma), N * entropy, rtol=1e-12)
  other = softmax(random_inputs(2)["logits"])
  assert abs(losses.entropy_term(other) - losses.entropy_term(gamma)) > 1e-3


def test_orthonormal_centroids_simplify_e2_e3(x64):
  """Eq. (9): E3 = 0 and E2 = sum gamma (1 - gamma) when mu mu^T = I (K <= d)."""
  data = random_inputs(2)
  q, _ = np.linalg.qr(data["mu"].T)  # (d, K), orthonormal columns
  mu, gamma = jnp.asarray(q.T), softmax(data["logits"])
  np.testing.assert_allclose(losses.orthonormality_penalty(mu), 0.0, atol=1e-12)
  np.testing.assert_allclose(losses.e3_merging(gamma, mu), 0.0, atol=1e-12)
  np.testing.assert_allclose(losses.e2_sparsity(gamma, mu), losses.e2_sparsity(gamma),
                             rtol=1e-12)
  np.testing.assert_allclose(losses.e2_sparsity(gamma), jnp.sum(gamma * (1 - gamma)),
                             rtol=1e-12)


def test_e4_is_kl_to_uniform_plus_log_k(x64):
  """alpha = 1 + 1/K: E4 - KL(1/K || mean gamma) = log K, for any gamma."""
  alpha = losses.dirichlet_concentration(1.0 + 1.0 / K, K)
  for seed in (3, 4):
    gamma = softmax(random_inputs(seed)["logits"])
    gamma_mean = losses.mean_responsibilities(gamma)
    kl = jnp.sum(jnp.log((1.0 / K) / gamma_mean)) / K
    np.testing.assert_allclose(losses.e4_dirichlet(gamma, alpha, eps=0.0) - kl, np.log(K),
                               rtol=1e-12)


@pytest.mark.parametrize("sort,symmetric", [(False, True), (False, False), (True, False)])
def test_invariant_to_permuting_clusters(x64, sort, symmetric):
  data = random_inputs(5)
  x, x_bar, z, mu = data["x"], data["x_bar"], data["z"], data["mu"]
  gamma = softmax(data["logits"])
  alpha = np.full(K, 3.0) if symmetric else data["alpha"]
  perm = np.array([2, 0, 1])
  # Unsorted, alpha is tied to cluster indices and moves with them; sorted, it is not.
  alpha_perm = alpha if sort else alpha[perm]

  def losses_of(g, m, a):
    return (losses.cm_loss(x, g, m, a, sort=sort)[0],
            losses.aecm_loss(x, x_bar, z, g, m, a, beta=0.7, lam=0.3, sort=sort)[0],
            losses.sparsity_criterion(g, m))

  chex.assert_trees_all_close(losses_of(gamma, mu, alpha),
                              losses_of(gamma[:, perm], mu[perm], alpha_perm), rtol=1e-12)


def test_sorted_prior_pairs_largest_alpha_with_largest_cluster():
  gamma = jnp.array([[0.1, 0.7, 0.2, 0.0],
                     [0.1, 0.5, 0.2, 0.2],
                     [0.0, 0.9, 0.0, 0.1],
                     [0.0, 0.9, 0.0, 0.1]])  # means (0.05, 0.75, 0.1, 0.1)
  alpha = jnp.array([4.0, 1.0, 2.0, 8.0])
  # Ascending alpha against ascending means: 8 goes with 0.75, 1 with 0.05.
  paired = sum((1 - a) * np.log(m + 1e-10) for a, m in zip([1, 2, 4, 8], [0.05, 0.1, 0.1, 0.75]))
  np.testing.assert_allclose(losses.e4_dirichlet(gamma, alpha, sort=True), paired, rtol=1e-6)
  # It is the most favourable pairing (rearrangement inequality), the unsorted one is not.
  all_pairings = [losses.e4_dirichlet(gamma, alpha[jnp.array(p)])
                  for p in itertools.permutations(range(4))]
  np.testing.assert_allclose(losses.e4_dirichlet(gamma, alpha, sort=True), min(all_pairings),
                             rtol=1e-6)
  assert losses.e4_dirichlet(gamma, alpha) > min(all_pairings) + 1.0


def test_dirichlet_concentration():
  np.testing.assert_array_equal(losses.dirichlet_concentration(5.0, 3), [5.0, 5.0, 5.0])
  np.testing.assert_allclose(losses.dirichlet_concentration(10.0, 3, (0.2, 0.3, 0.5)),
                             [2.0, 3.0, 5.0], rtol=1e-6)
  np.testing.assert_allclose(losses.dirichlet_concentration(10.0, 2, [30, 10]), [7.5, 2.5])
  with pytest.raises(ValueError, match="frequencies"):
    losses.dirichlet_concentration(1.0, 3, (0.5, 0.5))


def test_cm_loss_ablation_terms():
  data = random_inputs(6)
  x, mu, alpha = (jnp.asarray(data[a], jnp.float32) for a in ("x", "mu", "alpha"))
  gamma = softmax(jnp.asarray(data["logits"], jnp.float32))
  full, parts = losses.cm_loss(x, gamma, mu, alpha)
  assert set(parts) == set(losses.CM_TERMS)
  np.testing.assert_allclose(full, sum(parts.values()), rtol=1e-6)
  for terms in [("e1",), ("e1", "e3"), ("e2", "e3", "e4"), ("e4", "e1", "e1")]:
    loss, reported = losses.cm_loss(x, gamma, mu, alpha, terms=terms)
    np.testing.assert_allclose(loss, sum(parts[t] for t in set(terms)), rtol=1e-6)
    chex.assert_trees_all_close(reported, parts)  # dropped terms are still reported
  for bad in [(), ("e5",), ("E1",)]:
    with pytest.raises(ValueError, match="terms"):
      losses.cm_loss(x, gamma, mu, alpha, terms=bad)


def test_aecm_terms_are_weighted_contributions():
  data = random_inputs(7)
  x, x_bar, z, mu, alpha = (jnp.asarray(data[a], jnp.float32)
                            for a in ("x", "x_bar", "z", "mu", "alpha"))
  gamma = softmax(jnp.asarray(data["logits"], jnp.float32))
  loss, parts = losses.aecm_loss(x, x_bar, z, gamma, mu, alpha, beta=0.5, lam=2.0)
  assert list(parts) == ["rec_ae", "rec_cm", "sparsity", "dirichlet", "orthonormality"]
  expected = {
      "rec_ae": 0.5 * jnp.sum((x - x_bar) ** 2),
      "rec_cm": losses.e1_reconstruction(z, gamma, mu),
      "sparsity": jnp.sum(gamma * (1 - gamma)),
      "dirichlet": losses.e4_dirichlet(gamma, alpha),
      "orthonormality": 2.0 * jnp.sum(jnp.abs(mu @ mu.T - jnp.eye(K))),
  }
  chex.assert_trees_all_close(parts, expected, rtol=1e-5)
  np.testing.assert_allclose(loss, sum(expected.values()), rtol=1e-5)


def all_outputs(x, x_bar, z, gamma, mu, alpha):
  """Every public scalar function, for the shape, dtype, jit and vmap checks."""
  return {
      "e1": losses.e1_reconstruction(x, gamma, mu),
      "e2": losses.e2_sparsity(gamma, mu),
      "e2_unit": losses.e2_sparsity(gamma),
      "e3": losses.e3_merging(gamma, mu),
      "e4": losses.e4_dirichlet(gamma, alpha),
      "e4_sorted": losses.e4_dirichlet(gamma, alpha, sort=True),
      "soft_kmeans": losses.soft_kmeans_objective(x, gamma, mu),
      "q": losses.q_function(x, gamma, mu, losses.mean_responsibilities(gamma), alpha),
      "entropy": losses.entropy_term(gamma),
      "l_sp": losses.sparsity_criterion(gamma, mu),
      "orthonormality": losses.orthonormality_penalty(mu),
      "cm": losses.cm_loss(x, gamma, mu, alpha, terms=("e1", "e4")),
      "cm_sorted": losses.cm_loss(x, gamma, mu, alpha, sort=True),
      "aecm": losses.aecm_loss(x, x_bar, z, gamma, mu, alpha, beta=0.5, lam=2.0, sort=True),
  }


def run_inputs(data: dict[str, np.ndarray], dtype) -> tuple[jax.Array, ...]:
  names = ("x", "x_bar", "z", "logits", "mu", "alpha")
  x, x_bar, z, logits, mu, alpha = (jnp.asarray(data[a], dtype) for a in names)
  return x, x_bar, z, softmax(logits), mu, alpha


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_scalar_outputs_follow_input_dtype(dtype):
  with jax.enable_x64(dtype == "float64"):
    outputs = all_outputs(*run_inputs(random_inputs(8), jnp.dtype(dtype)))
    for leaf in jax.tree.leaves(outputs):
      chex.assert_shape(leaf, ())
      chex.assert_type(leaf, jnp.dtype(dtype))


def test_jit_and_vmap_over_runs_match_eager():
  runs = [run_inputs(random_inputs(seed), jnp.float32) for seed in range(3)]
  eager = [all_outputs(*r) for r in runs]
  jitted = jax.jit(all_outputs)
  chex.assert_trees_all_close([jitted(*r) for r in runs], eager, rtol=1e-5)
  # vmap over a leading runs axis; alpha is shared by all runs.
  stacked = [jnp.stack(a) for a in zip(*runs)]
  batched = jax.jit(jax.vmap(all_outputs, in_axes=(0, 0, 0, 0, 0, None)))(
      *stacked[:-1], runs[0][-1])
  eager_shared_alpha = [all_outputs(*r[:-1], runs[0][-1]) for r in runs]
  chex.assert_trees_all_close(batched, jax.tree.map(lambda *v: jnp.stack(v),
                                                    *eager_shared_alpha), rtol=1e-5)


def test_cm_loss_jits_with_static_options():
  x, _, _, gamma, mu, alpha = run_inputs(random_inputs(9), jnp.float32)
  jitted = jax.jit(losses.cm_loss, static_argnames=("sort", "terms"))
  for sort, terms in [(False, losses.CM_TERMS), (True, ("e1", "e2"))]:
    chex.assert_trees_all_close(jitted(x, gamma, mu, alpha, sort=sort, terms=terms),
                                losses.cm_loss(x, gamma, mu, alpha, sort=sort, terms=terms),
                                rtol=1e-6)


def test_docstring_examples():
  result = doctest.testmod(cm_module, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.attempted > 0 and result.failed == 0
