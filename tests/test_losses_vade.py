"""VaDE and DGG objectives: gradients, the VaDE special case, Jensen-Shannon, exactness."""

from __future__ import annotations

import doctest

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon
from scipy.special import logsumexp, softmax

from deepclust_jax.losses import vade

N, J, K, P, D = 3, 3, 3, 2, 4  # batch, 1 + N_s, clusters, latent, features
WEIGHTS = np.array([0.5, 0.25, 0.25])  # w_ii = 1/2, w_ij = 1/(2 N_s) with N_s = 2


def random_inputs(seed: int) -> dict[str, np.ndarray]:
  """float64 numpy arrays; one shape for every test, so compilations are shared."""
  rng = np.random.default_rng(seed)
  return {
      "x": rng.uniform(size=(N, D)),
      "x_logits": rng.normal(size=(N, J, D)),
      "z_mean": rng.normal(size=(N, J, P)),
      "z_logvar": rng.uniform(-1.0, 1.0, size=(N, J, P)),
      "gamma_logits": rng.normal(size=(N, J, K)),
      "mu": rng.normal(size=(K, P)),
      "logvar": rng.uniform(-1.0, 1.0, size=(K, P)),
      "pi_logits": rng.normal(size=K),
      "a": rng.normal(size=(2 * N, P)),
      "b": rng.normal(size=(2 * N, P)),
  }


def log_softmax(logits):
  return jax.nn.log_softmax(logits, axis=-1)


def dgg_from_logits(x, x_logits, z_mean, z_logvar, gamma_logits, mu, logvar, **kwargs):
  log_px_z = vade.bernoulli_log_likelihood(x[:, None], x_logits)
  return vade.dgg_loss(log_px_z, z_mean, z_logvar, log_softmax(gamma_logits), mu, logvar,
                       **kwargs)


def vade_from_logits(x, x_logits, z_mean, z_logvar, gamma_logits, mu, logvar, pi_logits):
  return vade.vade_loss(vade.bernoulli_log_likelihood(x, x_logits[:, 0]), z_mean[:, 0],
                        z_logvar[:, 0], log_softmax(gamma_logits[:, 0]), mu, logvar,
                        log_pi=log_softmax(pi_logits))


def vade_with_posterior_gamma(x_logits, z_mean, z_logvar, mu, logvar):
  """VaDE proper: gamma = p(c|z) at a reparameterised sample, the gradient through it."""
  z = z_mean[:, 0] + jnp.exp(0.5 * z_logvar[:, 0])
  log_gamma = vade.vade_log_posterior(z, mu, logvar)
  return vade.vade_loss(jnp.sum(x_logits[:, 0], -1), z_mean[:, 0], z_logvar[:, 0], log_gamma,
                        mu, logvar)[0]


ALL = ("x", "x_logits", "z_mean", "z_logvar", "gamma_logits", "mu", "logvar")
GRADIENT_CASES = [
    ("bernoulli", vade.bernoulli_log_likelihood, ("x", "x_logits")),
    ("bernoulli_clamped", vade.clamped_bernoulli_log_likelihood, ("x", "x_logits")),
    ("gaussian", lambda x, m: vade.gaussian_log_likelihood(x, m[:, 0], 0.7),
     ("x", "x_logits")),
    ("log_normal", vade.log_normal, ("z_mean", "mu", "logvar")),
    ("expected_log_normal", vade.expected_log_normal, ("z_mean", "z_logvar", "mu", "logvar")),
    ("entropy", vade.gaussian_entropy, ("z_logvar",)),
    ("categorical", lambda l, p: vade.categorical_term(log_softmax(l), log_softmax(p)),
     ("gamma_logits", "pi_logits")),
    ("js", lambda l: vade.weighted_js_divergence(log_softmax(l), WEIGHTS), ("gamma_logits",)),
    ("posterior", lambda z, mu, lv, p: vade.vade_log_posterior(z, mu, lv, log_pi=log_softmax(p)),
     ("z_mean", "mu", "logvar", "pi_logits")),
    ("posterior_floor", lambda z, mu, lv, p: vade.vade_log_posterior(
        z, mu, lv, log_pi=log_softmax(p), floor=0.05), ("z_mean", "mu", "logvar", "pi_logits")),
    ("vade_loss", lambda *a: vade_from_logits(*a)[0], (*ALL, "pi_logits")),
    ("vade_loss_posterior_gamma", vade_with_posterior_gamma,
     ("x_logits", "z_mean", "z_logvar", "mu", "logvar")),
    ("dgg_loss", lambda *a: dgg_from_logits(*a)[0], ALL),
    ("dgg_loss_given_prior", lambda *a: dgg_from_logits(
        *a[:-1], log_prior=log_softmax(a[-1]))[0], (*ALL, "pi_logits")),
    ("contrastive", lambda a, b: vade.contrastive_loss(a, b, jnp.arange(2 * N) % 2 == 0)[0],
     ("a", "b")),
]


@pytest.mark.parametrize("fn,argnames", [c[1:] for c in GRADIENT_CASES],
                         ids=[c[0] for c in GRADIENT_CASES])
def test_gradients_match_finite_differences(grads_match, fn, argnames):
  """The DGG loss too: its stop-gradient is invisible through the softmax (see below)."""
  data = random_inputs(0)
  args = tuple(jnp.asarray(data[a]) for a in argnames)
  grads_match(jax.jit(fn), args)


def test_stop_gradient_acts_on_gamma_but_not_through_softmax(x64):
  """With sg(m) the gradient in log gamma differs from that of -JS by -w_j gamma_jk (by
  -w_j in gamma, a constant along k), which the softmax's Jacobian annihilates."""
  data = random_inputs(1)
  logits = jnp.asarray(data["gamma_logits"])
  weights = jnp.asarray(WEIGHTS)

  def categorical_part(log_gamma):
    return dgg_from_log_gamma(data, log_gamma)[1]["log_pc_qc"]

  def minus_js(log_gamma):
    return -jnp.mean(vade.weighted_js_divergence(log_gamma, weights))

  through_softmax = [jax.grad(lambda l, f=f: f(log_softmax(l)))(logits)
                     for f in (categorical_part, minus_js)]
  np.testing.assert_allclose(*through_softmax, atol=1e-12)
  log_gamma = log_softmax(logits)
  difference = jax.grad(categorical_part)(log_gamma) - jax.grad(minus_js)(log_gamma)
  np.testing.assert_allclose(difference, -weights[:, None] * jnp.exp(log_gamma) / N, rtol=1e-9)


def dgg_from_log_gamma(data, log_gamma, **kwargs):
  return vade.dgg_loss(vade.bernoulli_log_likelihood(data["x"][:, None], data["x_logits"]),
                       data["z_mean"], data["z_logvar"], log_gamma, data["mu"], data["logvar"],
                       **kwargs)


def test_vade_is_dgg_without_neighbours_and_prior_pi(x64):
  data = {name: value[:, :1] if value.ndim == 3 else value
          for name, value in random_inputs(2).items()}
  log_gamma = log_softmax(data["gamma_logits"])
  for log_pi in (log_softmax(data["pi_logits"]), None):
    prior = jnp.full(K, -np.log(K)) if log_pi is None else log_pi
    dgg = dgg_from_log_gamma(data, log_gamma, log_prior=prior)
    vade_result = vade.vade_loss(vade.bernoulli_log_likelihood(data["x"], data["x_logits"][:, 0]),
                                 data["z_mean"][:, 0], data["z_logvar"][:, 0], log_gamma[:, 0],
                                 data["mu"], data["logvar"], log_pi=log_pi)
    chex.assert_trees_all_equal(dgg, vade_result)
    per_sample = dgg_from_log_gamma(data, log_gamma, log_prior=jnp.tile(prior, (N, 1)))
    chex.assert_trees_all_close(per_sample, dgg, rtol=1e-15)
  # With no neighbours the neighbourhood prior is gamma itself: KL(gamma || gamma) = 0.
  _, terms = dgg_from_log_gamma(data, log_gamma)
  np.testing.assert_allclose(terms["log_pc_qc"], 0.0, atol=1e-15)


def test_dgg_matches_the_design_note_formula(x64):
  """Literal loops over the formula of methods.md section 4, whose entropy omits the
  constant p (1 + log 2 pi) / 2 that ours keeps."""
  data = random_inputs(3)
  log_px_z = np.asarray(vade.bernoulli_log_likelihood(data["x"][:, None], data["x_logits"]))
  gamma = softmax(data["gamma_logits"], axis=-1)
  zm, zlv, mu = data["z_mean"], data["z_logvar"], data["mu"]
  var = np.exp(data["logvar"]) + vade.VARIANCE_FLOOR
  total = 0.0
  for i in range(N):
    m = sum(WEIGHTS[j] * gamma[i, j] for j in range(J))
    for j in range(J):
      log_pz_c = -0.5 * sum(
          gamma[i, j, k] * sum(np.log(2 * np.pi * var[k, d])
                               + (np.exp(zlv[i, j, d]) + (zm[i, j, d] - mu[k, d]) ** 2) / var[k, d]
                               for d in range(P))
          for k in range(K))
      entropy = 0.5 * sum(zlv[i, j, d] for d in range(P))
      categorical = sum(gamma[i, j, k] * np.log(m[k] / gamma[i, j, k]) for k in range(K))
      total += WEIGHTS[j] * (log_px_z[i, j] + log_pz_c + entropy + categorical)
  loss, terms = dgg_from_log_gamma(data, log_softmax(data["gamma_logits"]))
  np.testing.assert_allclose(-loss, total / N + 0.5 * P * (1 + np.log(2 * np.pi)), rtol=1e-12)
  np.testing.assert_allclose(loss, -sum(terms.values()), rtol=1e-12)
  assert list(terms) == ["log_px_z", "log_pz_c", "log_pc_qc", "entropy_qz"]


def numpy_js(gamma, weights):
  """sum_j w_j KL(gamma_j || m), m = sum_j w_j gamma_j, over the second-to-last axis."""
  m = np.einsum("j,...jk->...k", weights, gamma)
  return np.einsum("j,...jk->...", weights, gamma * np.log(gamma / m[..., None, :]))


def test_categorical_part_is_minus_weighted_js(x64):
  data = random_inputs(4)
  log_gamma = log_softmax(data["gamma_logits"])
  gamma = softmax(data["gamma_logits"], axis=-1)
  js = numpy_js(gamma, WEIGHTS)
  assert np.all(js > 1e-3)
  np.testing.assert_allclose(vade.weighted_js_divergence(log_gamma, WEIGHTS), js, rtol=1e-12)
  _, terms = dgg_from_log_gamma(data, log_gamma)
  np.testing.assert_allclose(terms["log_pc_qc"], -js.mean(), rtol=1e-12)
  # Two distributions with equal weights: scipy's (square-rooted) Jensen-Shannon distance.
  pair = gamma[:, :2]
  np.testing.assert_allclose(vade.weighted_js_divergence(jnp.log(pair), np.array([0.5, 0.5])),
                             [jensenshannon(p, q) ** 2 for p, q in pair], rtol=1e-9)
  np.testing.assert_allclose(vade.neighbour_weights(2, jnp.float64), WEIGHTS)


# A model where log p(x) is exact: c ~ Cat(pi), z | c ~ N(mu_c, s_c^2) in 1-D, and the
# linear-Gaussian decoder x = a z + b + N(0, r^2 I) in 2-D, so p(x) is a 2-component
# Gaussian mixture and p(z | x, c) is Gaussian.
PI = np.array([0.3, 0.7])
A, B, R = np.array([1.0, -0.5]), np.array([0.2, 0.1]), 0.7


def exact_model(mu: np.ndarray, s2: np.ndarray, x: np.ndarray) -> dict[str, np.ndarray]:
  """log p(x), log p(c|x) and the moments of p(z|x,c), in numpy, for (N, 2) x."""
  log_joint = np.stack([np.log(PI[k]) + stats.multivariate_normal.logpdf(
      x, A * mu[k] + B, s2[k] * np.outer(A, A) + R ** 2 * np.eye(2)) for k in range(2)], -1)
  post_var = 1.0 / (1.0 / s2 + A @ A / R ** 2)  # (K,)
  post_mean = post_var * (mu / s2 + ((x - B) @ A)[:, None] / R ** 2)  # (N, K)
  return {"log_px": logsumexp(log_joint, -1),
          "log_pc_x": log_joint - logsumexp(log_joint, -1, keepdims=True),
          "post_mean": post_mean, "post_var": post_var}


def expected_log_px_z(x, z_mean, z_logvar):
  """E_{q(z|x)} log N(x; a z + b, r^2 I) in closed form; z_mean, z_logvar (..., 1)."""
  return (vade.gaussian_log_likelihood(x, A * z_mean + B, R)
          - 0.5 * np.sum(A ** 2) * np.exp(z_logvar[..., 0]) / R ** 2)


def vade_elbo_per_sample(x, z_mean, z_logvar, log_gamma, mu, s2):
  """The ELBO of each sample, by vmapping the batch-mean loss over batches of one."""
  logvar = jnp.log(s2 - vade.VARIANCE_FLOOR)[:, None]  # the floored variance is s2

  def elbo(*args):
    return -vade.vade_loss(*(a[None] for a in args), jnp.asarray(mu)[:, None], logvar,
                           log_pi=jnp.log(PI))[0]

  return jax.vmap(elbo)(expected_log_px_z(x, z_mean, z_logvar), z_mean, z_logvar, log_gamma)


def kl_to_posterior(z_mean, z_logvar, log_gamma, model):
  """KL(q(z|x) q(c|x) || p(z, c | x)) in closed form, numpy."""
  m, v = np.asarray(z_mean), np.exp(np.asarray(z_logvar))
  kl_z = 0.5 * (np.log(model["post_var"] / v) + (v + (m - model["post_mean"]) ** 2)
                / model["post_var"] - 1.0)
  gamma = np.exp(log_gamma)
  return np.sum(gamma * (log_gamma - model["log_pc_x"] + kl_z), -1)


def test_elbo_bounds_exact_log_likelihood(x64):
  rng = np.random.default_rng(5)
  x = rng.normal(size=(8, 2)) * 2.0
  mu, s2 = np.array([-1.0, 1.5]), np.array([0.5, 1.2])
  model = exact_model(mu, s2, x)
  z_mean, z_logvar = rng.normal(size=(8, 1)), rng.uniform(-2, 1, size=(8, 1))
  log_gamma = np.asarray(log_softmax(rng.normal(size=(8, 2))))
  elbo = vade_elbo_per_sample(x, z_mean, z_logvar, log_gamma, mu, s2)
  assert np.all(elbo < model["log_px"])
  # The gap is exactly KL(q || posterior), every constant included.
  np.testing.assert_allclose(
      elbo, model["log_px"] - kl_to_posterior(z_mean, z_logvar, log_gamma, model), rtol=1e-10)


def test_elbo_is_exact_at_the_true_posterior(x64):
  """VaDE's q(z,c|x) = q(z|x) q(c|x) can equal the posterior only if p(z|x,c) is the same
  for all c, i.e. components with one mean and variance, differing in their weights."""
  x = np.random.default_rng(6).normal(size=(8, 2)) * 2.0
  mu, s2 = np.array([0.4, 0.4]), np.array([0.8, 0.8])
  model = exact_model(mu, s2, x)
  z_mean = model["post_mean"][:, :1]
  z_logvar = np.broadcast_to(np.log(model["post_var"][:1]), (8, 1))
  elbo = vade_elbo_per_sample(x, z_mean, z_logvar, model["log_pc_x"], mu, s2)
  np.testing.assert_allclose(elbo, model["log_px"], rtol=0, atol=1e-6)


def test_neighbour_substitution_averages_elbos_of_the_anchor(x64):
  """With prior pi, the DGG objective is sum_j w_j ELBO(x_i; q(.|x_j)): a bound on log p(x_i)."""
  rng = np.random.default_rng(7)
  x = rng.normal(size=(5, 2)) * 2.0
  mu, s2 = np.array([-1.0, 1.5]), np.array([0.5, 1.2])
  model = exact_model(mu, s2, x)
  z_mean, z_logvar = rng.normal(size=(5, J, 1)), rng.uniform(-2, 1, size=(5, J, 1))
  log_gamma = np.asarray(log_softmax(rng.normal(size=(5, J, 2))))
  logvar = jnp.log(s2 - vade.VARIANCE_FLOOR)[:, None]

  def objective(*args):
    return -vade.dgg_loss(*(a[None] for a in args), jnp.asarray(mu)[:, None], logvar,
                          log_prior=jnp.log(PI))[0]

  log_px_z = expected_log_px_z(x[:, None], z_mean, z_logvar)
  values = jax.vmap(objective)(log_px_z, z_mean, z_logvar, log_gamma)
  kl = np.stack([kl_to_posterior(z_mean[:, j], z_logvar[:, j], log_gamma[:, j], model)
                 for j in range(J)], -1)
  np.testing.assert_allclose(values, model["log_px"] - kl @ WEIGHTS, rtol=1e-10)
  assert np.all(values < model["log_px"])


def test_log_likelihoods_and_posterior_match_scipy(x64):
  data = random_inputs(8)
  x, logits = data["x"], data["x_logits"][:, 0]
  p = 1.0 / (1.0 + np.exp(-logits))
  np.testing.assert_allclose(vade.bernoulli_log_likelihood(x, logits),
                             np.sum(x * np.log(p) + (1 - x) * np.log(1 - p), -1), rtol=1e-12)
  np.testing.assert_allclose(vade.gaussian_log_likelihood(x, logits, 0.3),
                             stats.norm.logpdf(x, logits, 0.3).sum(-1), rtol=1e-12)
  saturated = vade.bernoulli_log_likelihood(jnp.array([1.0, 0.0]), jnp.array([-800.0, 800.0]))
  np.testing.assert_allclose(saturated, -1600.0)

  z, mu, log_pi = data["z_mean"][:, 0], data["mu"], np.asarray(log_softmax(data["pi_logits"]))
  std = np.sqrt(np.exp(data["logvar"]) + vade.VARIANCE_FLOOR)
  log_joint = log_pi + np.stack([stats.norm.logpdf(z, mu[k], std[k]).sum(-1)
                                 for k in range(K)], -1)
  log_gamma = vade.vade_log_posterior(z, mu, data["logvar"], log_pi=log_pi)
  np.testing.assert_allclose(log_gamma, log_joint - logsumexp(log_joint, -1, keepdims=True),
                             rtol=1e-10)
  far = vade.vade_log_posterior(jnp.full((1, P), 1e8), mu, data["logvar"])
  assert np.all(np.isfinite(far)) and np.allclose(logsumexp(far, -1), 0.0)
  # VaDE-pytorch's posterior: a floor (its 1e-10; here of the densities' order, so
  # that it shows) added to each pi_k N(z; mu_k, sigma_k^2), then normalised.
  floored = np.exp(log_joint) + 0.05
  with_floor = vade.vade_log_posterior(z, mu, data["logvar"], log_pi=log_pi, floor=0.05)
  np.testing.assert_allclose(with_floor, np.log(floored / floored.sum(-1, keepdims=True)),
                             rtol=1e-10)
  assert np.abs(with_floor - log_gamma).max() > 0.01


def test_contrastive_loss_terms():
  a = jnp.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.0, 0.0], [2.0, 0.0]])
  b = jnp.array([[3.0, 4.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
  positive = jnp.array([True, False, False, False, True])
  loss, terms = vade.contrastive_loss(a, b, positive)
  # Positives: 25 + 4; negatives: (3 - 1)^2 + 3^2 + 3^2; each divided by the 5 pairs.
  chex.assert_trees_all_close(terms, {"positive": 29.0 / 5, "negative": 22.0 / 5})
  np.testing.assert_allclose(loss, 51.0 / 5, rtol=1e-6)
  _, far = vade.contrastive_loss(a, b + 10.0, jnp.zeros(5, bool), margin=1.0)
  assert far["negative"] == 0.0 and far["positive"] == 0.0
  # Identical embeddings: finite gradients (zero, the subgradient) for both kinds of pair.
  grads = jax.grad(lambda a: vade.contrastive_loss(a, b, positive)[0])(b)
  assert np.all(np.isfinite(grads)) and np.all(grads == 0.0)


def test_float32_jit_and_vmap_match_eager():
  data = {name: jnp.asarray(value, jnp.float32) for name, value in random_inputs(9).items()}
  args = tuple(data[a] for a in ALL)
  eager = dgg_from_logits(*args)
  chex.assert_trees_all_close(jax.jit(dgg_from_logits)(*args), eager, rtol=1e-5)
  for leaf in jax.tree.leaves(eager):
    chex.assert_shape(leaf, ())
    chex.assert_type(leaf, jnp.float32)
  # vmap over runs of one sample each, sharing the mixture.
  runs = jax.vmap(vade_from_logits, in_axes=(0, 0, 0, 0, 0, None, None, None))(
      *(a[:, None] for a in args[:5]), data["mu"], data["logvar"], data["pi_logits"])
  single = [jax.jit(vade_from_logits)(*(a[i:i + 1] for a in args[:5]), data["mu"],
                                      data["logvar"], data["pi_logits"]) for i in range(N)]
  chex.assert_trees_all_close(runs, jax.tree.map(lambda *v: jnp.stack(v), *single), rtol=1e-5)


def test_docstring_examples():
  result = doctest.testmod(vade, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.attempted > 0 and result.failed == 0


def test_clamped_bernoulli_is_pytorchs_cross_entropy_of_the_sigmoid():
  """float32 as VaDE-pytorch runs it: logs floored at -100, no gradient where floored."""
  x = np.array([[1.0, 0.0, 1.0, 0.0, 0.3, 0.7]], np.float32)
  logits = np.array([[-30.0, 30.0, -120.0, 2.0, -1.5, 0.5]], np.float32)
  p = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
  p = p.astype(np.float32)  # formed first, in the working dtype: 1 - p is 0 at logit 30
  with np.errstate(divide="ignore"):
    expected = np.sum(x * np.maximum(np.log(p), -100) + (1 - x) * np.maximum(np.log(1 - p), -100))
  value = vade.clamped_bernoulli_log_likelihood(jnp.asarray(x), jnp.asarray(logits))
  np.testing.assert_allclose(value[0], expected, rtol=1e-5)
  grad = jax.grad(lambda l: vade.clamped_bernoulli_log_likelihood(x, l).sum())(logits)
  unclamped = jax.grad(lambda l: vade.bernoulli_log_likelihood(x, l).sum())(logits)
  assert np.all(np.isfinite(grad))
  saturated = np.array([[False, True, True, False, False, False]])  # logs floored
  np.testing.assert_array_equal(np.asarray(grad)[saturated], 0.0)
  np.testing.assert_allclose(np.asarray(grad)[~saturated], np.asarray(unclamped)[~saturated],
                             rtol=1e-5)
  assert np.all(np.asarray(unclamped)[saturated] != 0.0)
