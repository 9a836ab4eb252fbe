"""NMM-EM losses (Tissera et al. 2022): normalisation, likelihoods, EM and KL losses."""

from __future__ import annotations

import doctest
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deepclust_jax.losses import nmm_em

N, K = 6, 3
BATCH = 128  # the paper's batch size, for which temperature 5 was chosen


def random_inputs(seed: int) -> dict[str, np.ndarray]:
  """float64 numpy arrays of one shape, so op-by-op compilations are shared."""
  rng = np.random.default_rng(seed)
  return {
      "a": rng.normal(size=(N, K)) * 2.0 + 1.0,
      "a_tr": rng.normal(size=(N, K)) * 2.0 - 1.0,
      "a_star": rng.normal(size=(N, K)),
      "a_star_tr": rng.normal(size=(N, K)),
      "p": rng.dirichlet(np.ones(K), size=N),
      "running_mean": rng.normal(size=K),
      "running_var": rng.uniform(0.5, 2.0, size=K),
  }


def skewed_relevances(seed: int, n: int = BATCH) -> dict[str, np.ndarray]:
  """(n, 4) raw relevance scores from symmetric, skewed and degenerate laws."""
  rng = np.random.default_rng(seed)
  outlier = np.zeros((n, 4))
  outlier[0] = 1.0  # one sample far from all others: the extreme of the bound
  return {
      "normal": rng.normal(3.0, 10.0, size=(n, 4)),
      "exponential": rng.exponential(5.0, size=(n, 4)),
      "lognormal": rng.lognormal(0.0, 1.5, size=(n, 4)),
      "pareto": rng.pareto(1.5, size=(n, 4)),
      "bimodal": np.where(rng.uniform(size=(n, 4)) < 0.1, 20.0, -3.0)
                 + rng.normal(size=(n, 4)),
      "outlier": outlier,
  }


def normalize_train(a, eps=nmm_em.EPS):
  mean, var = nmm_em.init_running_stats(a.shape[-1], a.dtype)
  return nmm_em.normalize_relevance(a, mean, var, train=True, eps=eps)[0]


def two_view_em(a, a_tr):
  """Eq. (7) from raw scores, each view normalised with its own batch."""
  return nmm_em.em_loss(normalize_train(a), normalize_train(a_tr), temperature=2.0)[0]


# (name, function of the differentiated arguments and of `d`, the dict of all
# inputs, names of the differentiated arguments). The losses hold the posterior
# of `a_star` constant, so finite differences are only taken in arguments it
# does not depend on; test_m_step_gradient_holds_posterior covers the rest.
GRADIENT_CASES = [
    ("normalize_train", lambda a, m, v, d: nmm_em.normalize_relevance(
        a, m, v, train=True)[0], ("a", "running_mean", "running_var")),
    ("normalize_eval", lambda a, m, v, d: nmm_em.normalize_relevance(
        a, m, v, train=False)[0], ("a", "running_mean", "running_var")),
    ("likelihood", lambda s, d: nmm_em.cluster_likelihood(s, 2.0), ("a_star",)),
    ("posterior", lambda s, d: nmm_em.posterior(s), ("a_star",)),
    ("expected_log_likelihood", lambda p, s, d: nmm_em.expected_log_likelihood(p, s, 2.0),
     ("p", "a_star")),
    ("em_loss_transformed_view", lambda t, d: nmm_em.em_loss(
        d["a_star"], t, temperature=2.0)[0], ("a_star_tr",)),
    ("em_loss_from_raw_transformed", lambda t, d: two_view_em(d["a"], t), ("a_tr",)),
    ("consistency", lambda t, d: nmm_em.consistency_loss(d["a_star"], t), ("a_star_tr",)),
]


@pytest.mark.parametrize("fn,argnames", [c[1:] for c in GRADIENT_CASES],
                         ids=[c[0] for c in GRADIENT_CASES])
def test_gradients_match_finite_differences(grads_match, fn, argnames):
  data = {name: jnp.asarray(value) for name, value in random_inputs(0).items()}
  args = tuple(data[a] for a in argnames)
  grads_match(jax.jit(functools.partial(fn, d=data)), args)


def test_m_step_gradient_holds_posterior(grads_match):
  """d em_loss / d a* = -(1/n) p (1 - sigmoid(a*/T)) / T with p = softmax(a*) held."""
  data = random_inputs(1)
  a_star, a_star_tr = jnp.asarray(data["a_star"]), jnp.asarray(data["a_star_tr"])
  t = 2.0
  p = nmm_em.posterior(a_star)
  expected = -p * (1.0 - jax.nn.sigmoid(a_star / t)) / t / N
  grad_em = jax.grad(lambda s: nmm_em.em_loss(s, temperature=t)[0])(a_star)
  np.testing.assert_allclose(grad_em, expected, rtol=1e-12, atol=1e-15)
  # It is the finite-difference gradient with p frozen at the current point...
  frozen = lambda s: -nmm_em.expected_log_likelihood(p, s, t)  # noqa: E731
  grads_match(frozen, (a_star,), modes=("rev",))
  np.testing.assert_allclose(grad_em, jax.grad(frozen)(a_star), rtol=1e-12)
  # ...and not the gradient through the posterior, which the test would see.
  through = jax.grad(lambda s: -nmm_em.expected_log_likelihood(
      nmm_em.posterior(s), s, t))(a_star)
  assert np.max(np.abs(through - grad_em)) > 1e-3
  # The transformed view's term reaches a* only through the held posterior: none.
  grad_tr_term = jax.grad(lambda s: nmm_em.em_loss(s, a_star_tr, temperature=t)[1]["em_tr"])
  assert np.all(np.asarray(grad_tr_term(a_star)) == 0.0)
  grad_two_view = jax.grad(lambda s: nmm_em.em_loss(s, a_star_tr, temperature=t)[0])(a_star)
  np.testing.assert_allclose(grad_two_view, grad_em, rtol=1e-12)


def test_consistency_gradient_is_zero_on_held_branch(x64):
  data = random_inputs(2)
  a_star, a_star_tr = jnp.asarray(data["a_star"]), jnp.asarray(data["a_star_tr"])
  grad_p, grad_q = jax.grad(nmm_em.consistency_loss, argnums=(0, 1))(a_star, a_star_tr)
  assert np.all(np.asarray(grad_p) == 0.0)
  # d KL / d logits_q = (q - p) / n
  expected = (nmm_em.posterior(a_star_tr) - nmm_em.posterior(a_star)) / N
  np.testing.assert_allclose(grad_q, expected, rtol=1e-12, atol=1e-15)


def test_losses_match_literal_sums(x64):
  """Eqs. (6), (7) and (8) against loop transcriptions."""
  data = random_inputs(3)
  s, s_tr, t = data["a_star"], data["a_star_tr"], 3.0
  sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
  p = np.exp(s) / np.exp(s).sum(1, keepdims=True)
  q = np.exp(s_tr) / np.exp(s_tr).sum(1, keepdims=True)
  eq6 = -sum(p[i, j] * np.log(sig(s[i, j] / t)) for i in range(N) for j in range(K)) / N
  eq7_tr = -sum(p[i, j] * np.log(sig(s_tr[i, j] / t))
                for i in range(N) for j in range(K)) / N
  eq8 = sum(p[i, j] * np.log(p[i, j] / q[i, j]) for i in range(N) for j in range(K)) / N

  loss6, terms6 = nmm_em.em_loss(s, temperature=t)
  loss7, terms7 = nmm_em.em_loss(s, s_tr, temperature=t)
  chex.assert_trees_all_close(
      (loss6, terms6, loss7, terms7, nmm_em.consistency_loss(s, s_tr)),
      (eq6, {"em": eq6}, eq6 + eq7_tr, {"em": eq6, "em_tr": eq7_tr}, eq8), rtol=1e-12)
  np.testing.assert_allclose(nmm_em.cluster_likelihood(s, t), sig(s / t), rtol=1e-12)


def test_normalisation_zero_mean_unit_biased_variance_and_bound(x64):
  """Population std: |a*| <= sqrt(n - 1); with the sample std, section 5's (n - 1)/sqrt(n)."""
  bound = np.sqrt(BATCH - 1)  # 11.27 for n = 128
  paper_bound = (BATCH - 1) / np.sqrt(BATCH)  # 11.23, for the sample std
  to_sample_std = np.sqrt((BATCH - 1) / BATCH)
  for name, a in skewed_relevances(4).items():
    a_star = normalize_train(jnp.asarray(a), eps=0.0)
    np.testing.assert_allclose(jnp.mean(a_star, axis=0), 0.0, atol=1e-12, err_msg=name)
    # Biased (population) variance, as the paper writes sigma_j^2.
    np.testing.assert_allclose(jnp.mean(a_star ** 2, axis=0), 1.0, rtol=1e-12, err_msg=name)
    assert np.max(np.abs(a_star)) <= bound * (1 + 1e-12), name
    assert np.max(np.abs(a_star * to_sample_std)) <= paper_bound * (1 + 1e-12), name
    assert np.max(np.abs(normalize_train(jnp.asarray(a)))) <= bound, name
  # One sample apart from all others attains the bound: it is tight.
  outlier = normalize_train(jnp.asarray(skewed_relevances(4)["outlier"]), eps=0.0)
  np.testing.assert_allclose(outlier[0], bound, rtol=1e-12)
  assert np.all(np.asarray(outlier[0]) > paper_bound)
  # n = 2: +-1 with the population std (the sample std would give +-1/sqrt(2)).
  pair = normalize_train(jnp.array([[0.0, 5.0], [3.0, -1.0]]), eps=0.0)
  np.testing.assert_allclose(pair, [[-1.0, 1.0], [1.0, -1.0]], rtol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_average_likelihood_is_half_after_normalisation(x64, seed):
  """Eq. (3) and Table 1: with T = 5 and n = 128, (1/n) sum_i h_j(x_i) ~ 0.5 per cluster."""
  for name, a in skewed_relevances(seed).items():
    h = nmm_em.cluster_likelihood(normalize_train(jnp.asarray(a)), 5.0)
    np.testing.assert_allclose(jnp.mean(h, axis=0), 0.5, atol=0.02, err_msg=name)
  # Without the normalisation it is not (Table 1, first row): the test can fail.
  raw = nmm_em.cluster_likelihood(jnp.asarray(skewed_relevances(seed)["exponential"]), 5.0)
  assert np.all(np.abs(np.mean(raw, axis=0) - 0.5) > 0.1)


def test_posterior_rows_on_simplex_even_for_extreme_scores(x64):
  a_star = jnp.asarray(random_inputs(5)["a_star"]).at[0].set([1e4, -1e4, 0.0])
  p = nmm_em.posterior(a_star)
  np.testing.assert_allclose(jnp.sum(p, axis=-1), 1.0, rtol=1e-12)
  assert np.all(np.asarray(p) >= 0.0)
  # log-domain losses stay finite where sigmoid and softmax saturate.
  loss, _ = nmm_em.em_loss(a_star, -a_star)
  grads = jax.grad(lambda t: nmm_em.consistency_loss(a_star, t))(-a_star)
  assert np.isfinite(loss) and np.isfinite(nmm_em.consistency_loss(a_star, -a_star))
  assert np.all(np.isfinite(grads))


def test_running_statistics_update(x64):
  data = random_inputs(6)
  a, mean, var = data["a"], data["running_mean"], data["running_var"]
  _, (new_mean, new_var) = nmm_em.normalize_relevance(a, mean, var, train=True, momentum=0.8)
  np.testing.assert_allclose(new_mean, 0.8 * mean + 0.2 * a.mean(0), rtol=1e-12)
  np.testing.assert_allclose(new_var, 0.8 * var + 0.2 * a.var(0), rtol=1e-12)  # ddof=0
  a_star, stats = nmm_em.normalize_relevance(a, mean, var, train=False)
  chex.assert_trees_all_equal(stats, (mean, var))
  np.testing.assert_allclose(a_star, (a - mean) / np.sqrt(var + nmm_em.EPS), rtol=1e-12)


def test_inference_is_per_sample_and_matches_training_at_convergence(x64):
  data = random_inputs(7)
  a = jnp.asarray(data["a"])

  @jax.jit
  def train_steps(stats):
    def step(_, stats):
      return nmm_em.normalize_relevance(a, *stats, train=True)[1]
    return jax.lax.fori_loop(0, 300, step, stats)

  stats = train_steps(nmm_em.init_running_stats(K, a.dtype))
  np.testing.assert_allclose(stats[0], a.mean(0), rtol=1e-10)
  np.testing.assert_allclose(stats[1], a.var(0), rtol=1e-10)
  batch, _ = nmm_em.normalize_relevance(a, *stats, train=False)
  # Once the statistics are fixed, each sample is normalised on its own.
  for i in range(N):
    single, _ = nmm_em.normalize_relevance(a[i:i + 1], *stats, train=False)
    np.testing.assert_allclose(single, batch[i:i + 1], rtol=1e-12)
  # At convergence on one batch, inference reproduces the training normalisation.
  np.testing.assert_allclose(batch, nmm_em.normalize_relevance(a, *stats, train=True)[0],
                             rtol=1e-9)


def all_outputs(a, a_tr, stats):
  a_star, new_stats = nmm_em.normalize_relevance(a, *stats, train=True)
  a_star_tr, _ = nmm_em.normalize_relevance(a_tr, *stats, train=True)
  a_eval, _ = nmm_em.normalize_relevance(a, *new_stats, train=False)
  return {
      "a_star": a_star,
      "stats": new_stats,
      "a_eval": a_eval,
      "h": nmm_em.cluster_likelihood(a_star),
      "p": nmm_em.posterior(a_star),
      "em6": nmm_em.em_loss(a_star),
      "em7": nmm_em.em_loss(a_star, a_star_tr, temperature=3.0),
      "kl": nmm_em.consistency_loss(a_star, a_star_tr),
  }


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_outputs_follow_input_dtype(dtype):
  with jax.enable_x64(dtype == "float64"):
    data = random_inputs(8)
    a, a_tr = (jnp.asarray(data[k], dtype) for k in ("a", "a_tr"))
    outputs = all_outputs(a, a_tr, nmm_em.init_running_stats(K, jnp.dtype(dtype)))
    for leaf in jax.tree.leaves(outputs):
      chex.assert_type(leaf, jnp.dtype(dtype))
    chex.assert_shape([outputs["a_star"], outputs["h"], outputs["p"]], (N, K))
    chex.assert_shape([outputs["kl"], outputs["em7"][0], *outputs["em7"][1].values()], ())


def test_jit_and_vmap_over_runs_match_eager():
  runs = [random_inputs(seed) for seed in range(3)]
  inputs = [(jnp.asarray(r["a"], jnp.float32), jnp.asarray(r["a_tr"], jnp.float32),
             (jnp.asarray(r["running_mean"], jnp.float32),
              jnp.asarray(r["running_var"], jnp.float32))) for r in runs]
  eager = [all_outputs(*i) for i in inputs]
  stacked = jax.tree.map(lambda *v: jnp.stack(v), *inputs)
  batched = jax.jit(jax.vmap(all_outputs))(*stacked)
  chex.assert_trees_all_close(batched, jax.tree.map(lambda *v: jnp.stack(v), *eager),
                              rtol=1e-5, atol=1e-6)


def test_docstring_examples():
  result = doctest.testmod(nmm_em, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.attempted > 0 and result.failed == 0
