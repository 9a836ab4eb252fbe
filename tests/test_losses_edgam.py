"""EDGaM losses (streamlined EM): gradients, the GMM they reconstruct, jit and vmap."""

from __future__ import annotations

import doctest

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from deepclust_jax.losses import edgam

N, K, P = 6, 3, 2
ETAS = {"eta1": 0.3, "eta2": 0.7, "eta3": 0.2}


def random_inputs(seed: int, covariance: str = "diag") -> dict:
  """float64 numpy arrays and mixture parameters (betas in (0, 1), not 0.9).

  One shape for every test, so op-by-op compilations are cached across tests.
  """
  rng = np.random.default_rng(seed)
  var_shape = (K, P) if covariance == "diag" else (K,)
  return {
      "z": 1.5 * rng.normal(size=(N, P)),
      "x": rng.uniform(size=(N, 4)),
      "x_rec": rng.uniform(0.1, 0.9, size=(N, 4)),
      "logits": rng.normal(size=(N, K)),
      "params": edgam.MixtureParams(mu=rng.normal(size=(K, P)),
                                    log_var=0.3 * rng.normal(size=var_shape),
                                    logits=rng.normal(size=K),
                                    b1=rng.normal(), b2=rng.normal()),
  }


def softmax(logits):
  return jax.nn.softmax(logits, axis=-1)


def full_var(var: np.ndarray) -> np.ndarray:
  """(K, p) variances from diagonal (K, p) or isotropic (K,) ones."""
  var = np.asarray(var)
  return var if var.ndim == 2 else np.repeat(var[:, None], P, axis=1)


def numpy_posterior(z, mu, var, logits) -> np.ndarray:
  """GMM posterior from scipy: p(k | z_n) proportional to pi_k N(z_n | mu_k, diag var_k)."""
  var = full_var(var)
  log_joint = np.stack([multivariate_normal(mu[k], np.diag(var[k])).logpdf(z)
                        for k in range(K)], axis=1) + logits - logsumexp(logits)
  return np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))


def numpy_m_step(z, gamma, isotropic: bool) -> tuple[np.ndarray, np.ndarray]:
  """One exact EM M-step for the means and (diagonal or isotropic) variances."""
  means, variances = [], []
  for k in range(K):
    weights = gamma[:, k] / gamma[:, k].sum()
    means.append(sum(weights[n] * z[n] for n in range(N)))
    variances.append(sum(weights[n] * (z[n] - means[k]) ** 2 for n in range(N)))
  variances = np.array(variances)
  return np.array(means), variances.mean(axis=1) if isotropic else variances


def numpy_streamlined(z, params, T: int, delta: float = 3.0) -> dict:
  """The appendix's forward transcribed with numpy and scipy, for reference."""
  sigmoid = lambda b: 1.0 / (1.0 + np.exp(-b))
  isotropic = np.ndim(params.log_var) == 1
  mu, var = np.asarray(params.mu), np.exp(params.log_var)
  gamma = numpy_posterior(z, mu, var, params.logits)
  correction = 0.0
  for _ in range(T - 1):
    means, variances = numpy_m_step(z, gamma, isotropic)
    mu = sigmoid(params.b1) * mu + (1 - sigmoid(params.b1)) * means
    var = sigmoid(params.b2) * var + (1 - sigmoid(params.b2)) * variances
    correction += (np.sum((params.mu - mu) ** 2) + np.sum((np.exp(params.log_var) - var) ** 2))
    gamma = numpy_posterior(z, mu, var, params.logits)
  counts = np.bincount(gamma.argmax(axis=1), minlength=K)
  weights = (N / np.count_nonzero(counts) + delta) / (counts + delta)
  cluster = sum(weights[k] * gamma[n, k] * np.sum((z[n] - mu[k]) ** 2 / full_var(var)[k])
                for n in range(N) for k in range(K)) / N
  return {
      "gamma": gamma, "mu": mu, "var": var, "z_hat": z + gamma @ mu,
      "terms": {"correction": correction, "cluster": cluster,
                "entropy": -np.sum(gamma * np.log(gamma)) / N},
  }


def total_loss(z, params, x_rec, *, x, **options):
  """``edgam_loss`` after ``streamlined_em`` with T = 3; ``(loss, terms)``."""
  em = edgam.streamlined_em(z, params, 3, **options)
  return edgam.edgam_loss(x, x_rec, em, **ETAS)


# (name, function of the differentiated arguments, names of those arguments).
GRADIENT_CASES = [
    ("e_step", lambda z, p: edgam.e_step(z, p.mu, p.var, p.logits), ("z", "params")),
    ("batch_statistics", lambda z, l: edgam.batch_statistics(z, softmax(l)), ("z", "logits")),
    ("batch_statistics_isotropic",
     lambda z, l: edgam.batch_statistics(z, softmax(l), covariance="isotropic"),
     ("z", "logits")),
    ("moment_update", lambda z, l, p: edgam.moment_update(
        p.mu, p.var, z[:K], jnp.exp(l[:K, :P]), p.b1, p.b2), ("z", "logits", "params")),
    ("correction_full", lambda z, p: edgam.correction_loss(
        p.mu, p.var, jnp.stack([z[:K], z[K:]]), jnp.exp(jnp.stack([z[:K], z[K:]])),
        correction="full"), ("z", "params")),
    ("cluster_loss", lambda z, l, p: edgam.cluster_loss(
        z, softmax(l), p.mu, p.var, jnp.array([0.5, 1.0, 2.0])), ("z", "logits", "params")),
    ("skip_input", lambda z, l, p: edgam.skip_input(z, softmax(l), p.mu),
     ("z", "logits", "params")),
    ("mse", lambda x, r: edgam.reconstruction_loss(x, r), ("x", "x_rec")),
    ("bce", lambda x, r: edgam.reconstruction_loss(x, r, reconstruction="bce"), ("x", "x_rec")),
    ("entropy", lambda l: edgam.entropy_loss(softmax(l)), ("logits",)),
    # The total and every weighted term; "full" because stop-gradients are not
    # derivatives (test_stopgrad_correction_reaches_only_the_layer covers them).
    ("total", lambda z, p, r, x: total_loss(z, p, r, x=x, correction="full"),
     ("z", "params", "x_rec", "x")),
    # v2: the scale-free cluster loss and the v2 total with soft assignments
    # (constant ones and DEC's target are stop-gradients, tested below).
    ("ratio_cluster_loss", lambda z, l, p: edgam.ratio_cluster_loss(
        z, softmax(l), p.mu, p.var, jnp.array([0.5, 1.0, 2.0, 1.0, 1.5, 0.7])),
     ("z", "logits", "params")),
    ("total_variance", edgam.total_variance, ("z",)),
    ("total_v2_soft", lambda z, p, r, x: total_loss(
        z, p, r, x=x, correction="full", cluster_loss="ratio", assign="soft",
        learn_beta="forward"), ("z", "params", "x_rec", "x")),
]


@pytest.mark.parametrize("fn,argnames", [c[1:] for c in GRADIENT_CASES],
                         ids=[c[0] for c in GRADIENT_CASES])
def test_gradients_match_finite_differences(grads_match, fn, argnames):
  data = random_inputs(0)
  args = tuple(jax.tree.map(jnp.asarray, data[a]) for a in argnames)
  grads_match(fn, args)


def test_total_gradient_isotropic_unweighted(grads_match):
  data = random_inputs(1, "isotropic")
  fn = lambda z, p: total_loss(z, p, data["x_rec"], x=data["x"], correction="full",
                               reweight=False)
  grads_match(fn, (data["z"], data["params"]))


def test_stopgrad_correction_reaches_only_the_layer(x64):
  """sg: d L_corr / d mu = 2 sum_t (mu - mu^(t)); nothing reaches z or the betas."""
  data = random_inputs(2)
  z, params = data["z"], jax.tree.map(jnp.asarray, data["params"])
  grads = {mode: jax.grad(lambda z, p: edgam.streamlined_em(
      z, p, 3, correction=mode).terms["correction"], argnums=(0, 1))(z, params)
           for mode in edgam.CORRECTIONS}
  em = edgam.streamlined_em(z, params, 3)
  grad_z, grad_params = grads["stopgrad"]
  np.testing.assert_allclose(grad_z, 0.0)
  np.testing.assert_allclose([grad_params.b1, grad_params.b2], 0.0)
  np.testing.assert_allclose(grad_params.mu, 2 * jnp.sum(params.mu - em.mu[1:], axis=0),
                             rtol=1e-10)
  np.testing.assert_allclose(grad_params.log_var,
                             2 * jnp.sum(params.var - em.var[1:], axis=0) * params.var,
                             rtol=1e-10)
  full_z, full_params = grads["full"]
  assert jnp.all(jnp.abs(full_z) > 0) and abs(full_params.b1) > 0


def test_ratio_cluster_loss_is_free_of_scale_and_shift(x64):
  """v2: codes, means and variances scaled and shifted together leave L_clu unchanged;
  v1 falls with the codes' scale (shrinking every code paid)."""
  data = random_inputs(7)
  z, params = data["z"], data["params"]
  a = np.asarray(softmax(data["logits"]))
  w = np.linspace(0.5, 2.0, N)
  base = edgam.ratio_cluster_loss(z, a, params.mu, np.exp(params.log_var), w)
  for c, shift in ((0.1, 3.0), (7.0, -2.0)):
    moved = edgam.ratio_cluster_loss(c * z + shift, a, c * params.mu + shift,
                                     c**2 * np.exp(params.log_var) * 5.0, w)
    np.testing.assert_allclose(moved, base, rtol=1e-10)
  v1 = [edgam.cluster_loss(c * z, a, c * params.mu, np.exp(params.log_var), np.ones(K))
        for c in (1.0, 0.1)]
  np.testing.assert_allclose(v1[1], 0.01 * v1[0], rtol=1e-10)
  # By hand: sum_n w_n sum_k a_nk ||z_n - mu_k||^2_D / (N s2), D = var / mean(var).
  shape = np.exp(params.log_var) / np.exp(params.log_var).mean()
  d = ((z[:, None] - params.mu[None]) ** 2 / shape[None]).sum(-1)
  s2 = ((z - z.mean(0)) ** 2).mean()
  np.testing.assert_allclose(base, (w * (a * d).sum(1)).sum() / (N * s2), rtol=1e-10)


def test_target_distribution_matches_dec(x64):
  gamma = np.asarray(softmax(random_inputs(8)["logits"]))
  weight = gamma**2 / gamma.sum(0)
  p = weight / weight.sum(1, keepdims=True)
  np.testing.assert_allclose(edgam.target_distribution(gamma), p, rtol=1e-12)
  np.testing.assert_allclose(edgam.target_loss(gamma),
                             np.sum(p * np.log(p / gamma)) / N, rtol=1e-12)
  # The target is held constant: the gradient is that of KL(p || gamma) at fixed p.
  logits = jnp.asarray(random_inputs(8)["logits"])
  fixed = lambda l: jnp.sum(p * (jnp.log(p) - jax.nn.log_softmax(l))) / N
  jax.test_util.check_grads(fixed, (logits,), order=1, atol=1e-6, rtol=1e-6)
  np.testing.assert_allclose(jax.grad(lambda l: edgam.target_loss(softmax(l)))(logits),
                             jax.grad(fixed)(logits), rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("learn_beta", edgam.BETA_GRADIENTS)
def test_where_the_betas_learn(x64, learn_beta):
  """forward (v1): eq. (8) moves them; correction (v2): only eq. (7); fixed: nothing."""
  data = random_inputs(9)
  z, params = data["z"], jax.tree.map(jnp.asarray, data["params"])

  def beta_grads(term):
    grads = jax.grad(lambda p: edgam.streamlined_em(
        z, p, 3, learn_beta=learn_beta, cluster_loss="ratio").terms[term])(params)
    return np.abs([grads.b1, grads.b2])

  cluster, correction = beta_grads("cluster"), beta_grads("correction")
  assert (cluster > 0).all() == (learn_beta == "forward")
  assert not (cluster > 0).any() or learn_beta == "forward"
  assert (correction > 0).all() == (learn_beta == "correction")
  assert not (correction > 0).any() or learn_beta == "correction"


@pytest.mark.parametrize("assign", edgam.ASSIGNMENTS)
def test_assignments_in_the_cluster_loss(x64, assign):
  """constant and hard: no gradient through gamma; soft: the gradient of v1."""
  data = random_inputs(10)
  params = jax.tree.map(jnp.asarray, data["params"])
  z = jnp.asarray(data["z"])

  def cluster(z, frozen_gamma):
    em = edgam.streamlined_em(z, params, 1, assign=assign, cluster_loss="ratio")
    if frozen_gamma is None:
      return em.terms["cluster"]
    # The same loss with gamma (and the weights) computed once and held fixed.
    a = edgam.assignment(frozen_gamma, assign)
    w = edgam.cluster_weights(frozen_gamma)[jnp.argmax(frozen_gamma, -1)]
    return edgam.ratio_cluster_loss(z, a, params.mu, params.var, w)

  gamma = edgam.e_step(z, params.mu, params.var, params.logits)
  live = jax.grad(cluster)(z, None)
  held = jax.grad(cluster)(z, gamma)
  if assign == "soft":
    assert not np.allclose(live, held)
  else:
    np.testing.assert_allclose(live, held, rtol=1e-10)
  if assign == "hard":
    np.testing.assert_array_equal(edgam.assignment(gamma, "hard").sum(-1), 1.0)


def test_e_step_is_the_gmm_posterior(x64):
  for covariance in edgam.COVARIANCES:
    data = random_inputs(3, covariance)
    z, params = data["z"], data["params"]
    expected = numpy_posterior(z, params.mu, np.exp(params.log_var), params.logits)
    np.testing.assert_allclose(edgam.e_step(z, params.mu, jnp.exp(params.log_var),
                                            params.logits), expected, rtol=1e-10)


def test_e_step_is_stable_far_from_every_centroid(x64):
  """Log domain: codes 1e4 away from the means still get responsibilities on the simplex."""
  params = jax.tree.map(jnp.asarray, random_inputs(3)["params"])
  gamma = edgam.e_step(jnp.full((N, P), 1e4), params.mu, params.var, params.logits)
  assert jnp.all(jnp.isfinite(gamma))
  np.testing.assert_allclose(gamma.sum(-1), 1.0, rtol=1e-12)


def test_t1_is_a_single_e_step(x64):
  data = random_inputs(4)
  z, params = data["z"], jax.tree.map(jnp.asarray, data["params"])
  em = edgam.streamlined_em(z, params, T=1)
  chex.assert_shape(em.gamma, (1, N, K))
  np.testing.assert_allclose(em.gamma[0], edgam.e_step(z, params.mu, params.var, params.logits),
                             rtol=1e-12)
  np.testing.assert_allclose(em.mu[0], params.mu)
  assert em.terms["correction"] == 0.0
  np.testing.assert_allclose(em.z_hat, z + em.gamma[0] @ params.mu, rtol=1e-12)


@pytest.mark.parametrize("covariance", edgam.COVARIANCES)
def test_moment_update_with_beta_0_on_the_data_set_is_an_em_m_step(x64, covariance):
  data = random_inputs(5, covariance)
  z = data["z"]
  params = data["params"]._replace(b1=-100.0, b2=-100.0)  # beta = sigmoid(-100) ~ 4e-44
  em = edgam.streamlined_em(z, params, T=2, eps=0.0)
  gamma = numpy_posterior(z, params.mu, np.exp(params.log_var), params.logits)
  means, variances = numpy_m_step(z, gamma, covariance == "isotropic")
  np.testing.assert_allclose(em.mu[1], means, rtol=1e-10)
  np.testing.assert_allclose(em.var[1], variances, rtol=1e-10)


@pytest.mark.parametrize("covariance", edgam.COVARIANCES)
def test_forward_matches_a_transcription_of_the_appendix(x64, covariance):
  data = random_inputs(6, covariance)
  z, params = data["z"], data["params"]
  em = edgam.streamlined_em(z, jax.tree.map(jnp.asarray, params), T=3, eps=0.0)
  expected = numpy_streamlined(z, params, T=3)
  chex.assert_trees_all_close(
      {"gamma": em.gamma[-1], "mu": em.mu[-1], "var": em.var[-1], "z_hat": em.z_hat,
       "terms": em.terms}, expected, rtol=1e-7)
  chex.assert_shape([em.gamma, em.mu], [(3, N, K), (3, K, P)])


def test_cluster_weights(x64):
  one_hot = lambda labels: jax.nn.one_hot(jnp.array(labels), K)
  np.testing.assert_allclose(edgam.cluster_weights(one_hot([0, 1, 2, 2, 1, 0])), 1.0)
  # Counts (4, 1, 1): the minority clusters weigh more, the majority less.
  weights = edgam.cluster_weights(one_hot([0, 0, 0, 0, 1, 2]))
  np.testing.assert_allclose(weights, [5.0 / 7.0, 1.25, 1.25], rtol=1e-6)
  # K' counts non-empty clusters only: counts (4, 2, 0), N'/K' = 3.
  np.testing.assert_allclose(edgam.cluster_weights(one_hot([0, 0, 0, 0, 1, 1]), delta=1.0),
                             [0.8, 4.0 / 3.0, 4.0], rtol=1e-6)
  np.testing.assert_allclose(edgam.cluster_weights(one_hot([0] * 6), reweight=False), 1.0)
  grad = jax.grad(lambda l: jnp.sum(edgam.cluster_weights(softmax(l)) * l[0]))(
      jnp.asarray(random_inputs(7)["logits"]))
  np.testing.assert_allclose(grad[1:], 0.0)  # stop-gradient: only l[0]'s own factor


def test_entropy_is_in_0_log_k(x64):
  logits = jnp.asarray(random_inputs(8)["logits"])
  for scale in (0.0, 1.0, 10.0):
    entropy = edgam.entropy_loss(softmax(scale * logits))
    assert 0.0 <= entropy <= np.log(K) + 1e-12
  np.testing.assert_allclose(edgam.entropy_loss(jnp.full((N, K), 1.0 / K)), np.log(K),
                             rtol=1e-12)
  assert edgam.entropy_loss(jax.nn.one_hot(jnp.arange(N) % K, K)) == 0.0
  # Responsibilities that underflow to 0 (e^-1000) still give a finite gradient.
  grad = jax.grad(lambda l: edgam.entropy_loss(softmax(l)))(jnp.array([[0.0, 1e3, 0.0]]))
  assert jnp.all(jnp.isfinite(grad))


def test_prediction_of_one_sample_is_its_row_of_the_batch(x64):
  data = random_inputs(9)
  params, z = jax.tree.map(jnp.asarray, data["params"]), jnp.asarray(data["z"])
  batch = edgam.e_step(z, params.mu, params.var, params.logits)
  for n in (0, N - 1):
    np.testing.assert_allclose(edgam.e_step(z[n:n + 1], params.mu, params.var, params.logits),
                               batch[n:n + 1], rtol=1e-12)


def test_edgam_loss_terms_are_weighted_contributions(x64):
  data = random_inputs(10)
  em = edgam.streamlined_em(data["z"], jax.tree.map(jnp.asarray, data["params"]))
  for reconstruction in edgam.RECONSTRUCTIONS:
    loss, parts = edgam.edgam_loss(data["x"], data["x_rec"], em, reconstruction=reconstruction,
                                   **ETAS)
    assert list(parts) == ["reconstruction", "correction", "cluster", "entropy"]
    expected = {
        "reconstruction": edgam.reconstruction_loss(data["x"], data["x_rec"],
                                                    reconstruction=reconstruction),
        "correction": 0.3 * em.terms["correction"],
        "cluster": 0.7 * em.terms["cluster"],
        "entropy": 0.2 * em.terms["entropy"],
    }
    chex.assert_trees_all_close(parts, expected, rtol=1e-12)
    np.testing.assert_allclose(loss, sum(expected.values()), rtol=1e-12)
  x, x_rec = data["x"], data["x_rec"]
  bce = -np.mean(x * np.log(x_rec) + (1 - x) * np.log(1 - x_rec))
  np.testing.assert_allclose(edgam.reconstruction_loss(x, x_rec, reconstruction="bce"), bce,
                             rtol=1e-12)


def test_jit_and_vmap_match_eager():
  data = [random_inputs(seed) for seed in (11, 12)]
  runs = [jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), (d["z"], d["params"]))
          for d in data]
  eager = [edgam.streamlined_em(z, p, 3) for z, p in runs]
  jitted = jax.jit(edgam.streamlined_em, static_argnames="T")
  chex.assert_trees_all_close([jitted(z, p, T=3) for z, p in runs], eager, rtol=1e-5, atol=1e-6)
  # vmap over a leading runs axis; results keep float32.
  stacked = jax.tree.map(lambda *a: jnp.stack(a), *runs)
  batched = jax.jit(jax.vmap(edgam.streamlined_em, in_axes=(0, 0)))(*stacked)
  chex.assert_trees_all_close(batched, jax.tree.map(lambda *v: jnp.stack(v), *eager),
                              rtol=1e-5, atol=1e-6)
  chex.assert_type(jax.tree.leaves(batched), jnp.float32)


def test_options_are_validated():
  data = random_inputs(13)
  params = jax.tree.map(jnp.asarray, data["params"])
  with pytest.raises(ValueError, match="T=0"):
    edgam.streamlined_em(data["z"], params, T=0)
  with pytest.raises(ValueError, match="correction"):
    edgam.streamlined_em(data["z"], params, correction="none")
  with pytest.raises(ValueError, match="covariance"):
    edgam.init_mixture(jax.random.key(0), K, P, "full")
  with pytest.raises(ValueError, match="reconstruction"):
    edgam.reconstruction_loss(data["x"], data["x_rec"], reconstruction="l1")


def test_init_mixture():
  for covariance, var_shape in (("diag", (K, P)), ("isotropic", (K,))):
    params = edgam.init_mixture(jax.random.key(1), K, P, covariance)
    assert params.covariance == covariance
    chex.assert_shape([params.mu, params.log_var, params.logits], [(K, P), var_shape, (K,)])
    np.testing.assert_allclose(jax.nn.sigmoid(jnp.stack([params.b1, params.b2])), 0.9,
                               rtol=1e-6)
    np.testing.assert_allclose(params.var, 1.0)
    assert jnp.all(jnp.abs(params.mu) <= np.sqrt(6.0 / (K + P)))  # Glorot-uniform bound


def test_docstring_examples():
  result = doctest.testmod(edgam, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.attempted > 0 and result.failed == 0
