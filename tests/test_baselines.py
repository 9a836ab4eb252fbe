"""k-means and GMM baselines against scikit-learn, plus JAX transformations and errors."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import multivariate_normal
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.mixture import GaussianMixture

from deepclust_jax import baselines
from deepclust_jax.errors import ConfigError, InputError
from deepclust_jax.metrics import ari

# name: (features, centres, cluster_std, seed, anisotropic)
DATASETS = {
    "blobs2d": (2, 3, 1.5, 0, False),
    "blobs5d": (5, 4, 2.5, 1, False),
    "blobs10d": (10, 5, 3.0, 2, False),
    # scikit-learn's anisotropic example: k-means fails, a full GMM does not.
    "anisotropic": (2, 3, 1.0, 170, True),
}


# Long EM runs from k-means++ seeds; the tests that use them share one compile.
LONG_EM = {"num_iters": 40, "tol": 0.0, "init": "kmeans++"}


@functools.cache
def dataset(name: str) -> tuple[np.ndarray, np.ndarray, int]:
  features, centres, std, seed, anisotropic = DATASETS[name]
  x, y = make_blobs(1500, n_features=features, centers=centres, cluster_std=std,
                    random_state=seed)
  if anisotropic:
    x = x @ np.array([[0.6, -0.6], [-0.4, 0.8]])
  return x.astype(np.float32), y, centres


@pytest.mark.parametrize("name", ["blobs2d", "blobs5d", "blobs10d"])
def test_kmeans_matches_scikit_learn(name):
  x, y, K = dataset(name)
  result = baselines.kmeans(jax.random.key(0), x, K)
  reference = KMeans(K, n_init=10, random_state=0).fit(x)
  chex.assert_shape((result.mu, result.labels), [(K, x.shape[1]), (x.shape[0],)])
  assert abs(ari(y, np.asarray(result.labels)) - ari(y, reference.labels_)) <= 0.02
  assert float(result.inertia) == pytest.approx(reference.inertia_, rel=0.01)


@pytest.mark.parametrize("name,covariance", [
    ("blobs2d", "full"), ("blobs2d", "diag"), ("blobs2d", "spherical"), ("blobs5d", "full"),
    ("anisotropic", "full"),
])
def test_gmm_matches_scikit_learn(name, covariance):
  x, y, K = dataset(name)
  result = baselines.gmm(jax.random.key(0), x, K, covariance=covariance)
  reference = GaussianMixture(K, covariance_type=covariance, random_state=0).fit(x)
  assert abs(ari(y, np.asarray(result.labels)) - ari(y, reference.predict(x))) <= 0.02
  assert float(result.log_likelihood) == pytest.approx(reference.score(x), rel=1e-3)
  shapes = {"full": (K, 2, 2), "diag": (K, 2), "spherical": (K,)}
  if x.shape[1] == 2:
    chex.assert_shape(result.covariances, shapes[covariance])
  np.testing.assert_allclose(result.gamma.sum(axis=1), 1.0, rtol=1e-5)
  assert float(result.weights.sum()) == pytest.approx(1.0, rel=1e-5)


def test_full_gmm_separates_anisotropic_blobs_where_kmeans_cannot():
  x, y, K = dataset("anisotropic")
  assert ari(y, np.asarray(baselines.gmm(jax.random.key(0), x, K).labels)) > 0.95
  assert ari(y, np.asarray(baselines.kmeans(jax.random.key(0), x, K).labels)) < 0.8


def test_kmeans_plusplus_seeds_are_distinct_data_points():
  x, _, K = dataset("blobs10d")
  for seed in range(3):
    seeds = np.asarray(baselines.kmeans_plusplus(jax.random.key(seed), x, K))
    chex.assert_shape(seeds, (K, 10))
    matches = (seeds[:, None, :] == x[None]).all(axis=2)
    assert matches.any(axis=1).all()  # every seed is a row of x
    assert len(np.unique(seeds, axis=0)) == K


def test_kmeans_plusplus_never_repeats_a_point_despite_duplicates():
  # Three distinct points, 50 copies each: the seeds must be exactly those three.
  x = np.repeat(np.array([[0.0, 0.0], [3.0, 1.0], [-2.0, 5.0]], np.float32), 50, axis=0)
  for seed in range(5):
    seeds = np.asarray(baselines.kmeans_plusplus(jax.random.key(seed), x, 3))
    assert len(np.unique(seeds, axis=0)) == 3


def test_greedy_seeding_lowers_the_potential():
  x, _, K = dataset("blobs10d")
  keys = jax.random.split(jax.random.key(0), 16)

  def potential(trials):
    seeds = [baselines.kmeans_plusplus(k, x, K, n_local_trials=trials) for k in keys]
    return np.mean([float(baselines.sq_distances(x, s).min(axis=1).sum()) for s in seeds])

  assert potential(None) < potential(1)  # None: 2 + floor(log K) = 3 trials


def _sorted_rows(mu) -> np.ndarray:
  """Centroids in lexicographic order: equal up to a permutation iff equal here."""
  mu = np.asarray(mu)
  return mu[np.lexsort(mu.T[::-1])]


def test_vmap_over_keys_equals_separate_calls():
  """vmapped fits equal one-by-one fits in what the fit defines.

  Not to the bit: vmapping changes the summation order, and where two
  k-means++ seedings tie to rounding, one CPU (an AMD Zen 4, say) keeps
  another restart than the next, returning the same centroids in another
  order; and a point equidistant to two centroids to rounding may end in
  either (on an AMD EPYC: one point of 1,500, centroids 0.005 apart, the same
  inertia). So: the same objective, the same partition but for such points
  (ARI >= 0.99), centroids up to a permutation and those points' pull.
  """
  x, _, K = dataset("blobs2d")
  keys = jax.random.split(jax.random.key(7), 4)
  fits = {
      "kmeans": (lambda k: baselines.kmeans(k, x, K), "inertia"),
      "igmm": (lambda k: baselines.igmm(k, x, K, **LONG_EM), "log_likelihood"),
  }
  for name, (fit, objective) in fits.items():
    batched = jax.vmap(fit)(keys)
    for r, key in enumerate(keys):
      separate = fit(key)
      np.testing.assert_allclose(getattr(batched, objective)[r], getattr(separate, objective),
                                 rtol=1e-5, err_msg=name)
      assert ari(np.asarray(separate.labels), np.asarray(batched.labels[r])) >= 0.99, name
      np.testing.assert_allclose(_sorted_rows(batched.mu[r]), _sorted_rows(separate.mu),
                                 atol=2e-2, err_msg=name)


def test_jit_with_traced_data_matches_eager():
  x, _, K = dataset("blobs2d")
  key = jax.random.key(1)
  eager = baselines.kmeans(key, x, K)
  jitted = jax.jit(baselines.kmeans, static_argnums=2)
  chex.assert_trees_all_close(jitted(key, x, K), eager, rtol=1e-5, atol=1e-5)


def test_one_lloyd_step_is_one_assignment_and_one_mean():
  x, _, K = dataset("blobs2d")
  mu = x[:K]
  step = baselines.lloyd(x, mu, num_iters=1)
  labels = ((x[:, None, :] - mu[None]) ** 2).sum(axis=2).argmin(axis=1)
  expected = np.stack([x[labels == k].mean(axis=0) for k in range(K)])
  np.testing.assert_allclose(step.mu, expected, rtol=1e-5, atol=1e-5)
  assert int(step.n_iter) == 1


def test_lloyd_stops_at_a_fixed_point_with_consistent_labels():
  x, _, K = dataset("blobs2d")
  result = baselines.lloyd(x, x[:K], num_iters=100, tol=0.0)
  assert int(result.n_iter) < 100
  np.testing.assert_array_equal(result.labels, baselines.kmeans_predict(result.mu, x))
  chex.assert_trees_all_close(baselines.lloyd(x, result.mu, num_iters=1).mu, result.mu)
  d2 = baselines.sq_distances(x, result.mu)
  assert float(result.inertia) == pytest.approx(float(d2.min(axis=1).sum()), rel=1e-6)


def test_empty_cluster_moves_to_the_farthest_point():
  x, _, _ = dataset("blobs2d")
  mu = np.stack([x[0], x[1], np.full(2, 1e3, np.float32)])  # the third gets no sample
  step = baselines.lloyd(x, mu, num_iters=1)
  nearest = ((x[:, None, :] - mu[None, :2]) ** 2).sum(axis=2).min(axis=1)
  np.testing.assert_array_equal(step.mu[2], x[nearest.argmax()])
  final = baselines.lloyd(x, mu, num_iters=100, tol=0.0)
  assert np.bincount(np.asarray(final.labels), minlength=3).min() > 0


@pytest.mark.parametrize("covariance,uniform_weights", [
    ("full", False), ("diag", False), ("spherical", True)])
def test_gmm_log_likelihood_never_decreases(covariance, uniform_weights):
  x, _, K = dataset("blobs2d")
  result = baselines.gmm(jax.random.key(2), x, K, covariance=covariance,
                         uniform_weights=uniform_weights, **LONG_EM)
  history = np.append(np.asarray(result.history), float(result.log_likelihood))
  assert int(result.n_iter) == 40 and np.isfinite(history).all()
  assert np.diff(history).min() >= -1e-5
  assert history[-1] > history[0]


def test_gmm_history_is_nan_after_convergence():
  x, _, K = dataset("blobs5d")
  result = baselines.gmm(jax.random.key(0), x, K)
  n_iter = int(result.n_iter)
  assert 0 < n_iter < 100
  assert np.isfinite(result.history[:n_iter]).all() and np.isnan(result.history[n_iter:]).all()


def test_igmm_is_spherical_with_uniform_weights():
  x, y, K = dataset("blobs2d")  # equal-sized clusters, as the model assumes
  result = baselines.igmm(jax.random.key(0), x, K, **LONG_EM)
  np.testing.assert_array_equal(result.weights, np.full(K, 1 / K, np.float32))
  chex.assert_shape(result.covariances, (K,))
  assert result.covariance == "spherical"
  reference = GaussianMixture(K, covariance_type="spherical", random_state=0).fit(x)
  assert ari(y, np.asarray(result.labels)) >= ari(y, reference.predict(x)) - 0.02


def test_predict_helpers_reproduce_the_fit():
  x, _, K = dataset("blobs2d")
  km = baselines.kmeans(jax.random.key(0), x, K)
  np.testing.assert_array_equal(baselines.kmeans_predict(km.mu, x), km.labels)
  fit = baselines.gmm(jax.random.key(0), x, K, covariance="full")
  np.testing.assert_allclose(baselines.gmm_predict(fit, x), fit.gamma, atol=1e-4)
  chex.assert_shape(baselines.gmm_predict(fit, x[:1]), (1, K))


@pytest.mark.parametrize("covariance", ["full", "diag", "spherical"])
def test_gaussian_log_prob_matches_scipy(covariance):
  rng = np.random.default_rng(0)
  x, mu = rng.normal(size=(6, 3)), rng.normal(size=(2, 3))
  a = rng.normal(size=(2, 3, 3))
  full = a @ a.transpose(0, 2, 1) + np.eye(3)
  if covariance == "full":
    variances = dense = full
  elif covariance == "diag":
    variances = rng.uniform(0.5, 2, (2, 3))
    dense = [np.diag(v) for v in variances]
  else:
    variances = rng.uniform(0.5, 2, 2)
    dense = [v * np.eye(3) for v in variances]
  expected = np.stack([multivariate_normal(m, c).logpdf(x) for m, c in zip(mu, dense)], 1)
  got = baselines.gaussian_log_prob(jnp.asarray(x, jnp.float32), jnp.asarray(mu, jnp.float32),
                                    jnp.asarray(variances, jnp.float32), covariance)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_sq_distances_matches_differences():
  rng = np.random.default_rng(0)
  x, mu, p = rng.normal(size=(7, 4)), rng.normal(size=(3, 4)), rng.uniform(0.5, 2, (3, 4))
  diff2 = (x[:, None, :] - mu[None]) ** 2
  f32 = functools.partial(jnp.asarray, dtype=jnp.float32)
  np.testing.assert_allclose(baselines.sq_distances(f32(x), f32(mu)), diff2.sum(2), rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_allclose(baselines.sq_distances(f32(x), f32(mu), precision=f32(p)),
                             (diff2 * p[None]).sum(2), rtol=1e-5, atol=1e-5)


def _bad(value, row=3):
  x = dataset("blobs2d")[0].copy()
  x[row, 1] = value
  return x


FITS = {
    "kmeans": lambda x, K: baselines.kmeans(jax.random.key(0), x, K),
    "kmeans_plusplus": lambda x, K: baselines.kmeans_plusplus(jax.random.key(0), x, K),
    "gmm": lambda x, K: baselines.gmm(jax.random.key(0), x, K),
    "igmm": lambda x, K: baselines.igmm(jax.random.key(0), x, K),
}


@pytest.mark.parametrize("fit", FITS.values(), ids=FITS.keys())
@pytest.mark.parametrize("x,K,match", [
    pytest.param(_bad(np.nan), 3, "NaN values in 1 row.*row 3", id="nan"),
    pytest.param(_bad(np.inf, row=0), 3, "Inf values", id="inf"),
    pytest.param(np.zeros((4, 2), np.float32), 5, "larger than the number of samples",
                 id="K>N"),
    pytest.param(np.zeros((4, 2), np.float32), 1, "at least 2", id="K<2"),
    pytest.param(np.zeros((4, 2), np.float32), 2.0, "must be an integer", id="K-float"),
    pytest.param(np.zeros(10, np.float32), 2, "2-D", id="1-D"),
    pytest.param(np.zeros((4, 2, 2), np.float32), 2, "2-D", id="3-D"),
    pytest.param(np.zeros((0, 2), np.float32), 2, "empty", id="empty"),
    pytest.param(np.array([["a", "b"], ["c", "d"]]), 2, "numeric", id="strings"),
])
def test_bad_data_raises_input_error(fit, x, K, match):
  with pytest.raises(InputError, match=match):
    fit(x, K)


def test_bad_centroids_raise_input_error():
  x = np.zeros((5, 2), np.float32)
  with pytest.raises(InputError, match=r"shape \(K, 2\)"):
    baselines.lloyd(x, np.zeros((2, 3), np.float32))
  with pytest.raises(InputError, match=r"shape \(K, 2\)"):
    baselines.kmeans_predict(np.zeros(2, np.float32), x)
  with pytest.raises(InputError, match="larger than the number of samples"):
    baselines.lloyd(x, np.zeros((6, 2), np.float32))


@pytest.mark.parametrize("call,match", [
    (lambda x: baselines.kmeans(jax.random.key(0), x, 2, n_init=0), "n_init"),
    (lambda x: baselines.kmeans(jax.random.key(0), x, 2, num_iters=-1), "num_iters"),
    (lambda x: baselines.kmeans(jax.random.key(0), x, 2, tol=-1.0), "tol"),
    (lambda x: baselines.kmeans_plusplus(jax.random.key(0), x, 2, n_local_trials=0),
     "n_local_trials"),
    (lambda x: baselines.gmm(jax.random.key(0), x, 2, covariance="tied"), "covariance"),
    (lambda x: baselines.gmm(jax.random.key(0), x, 2, init="random"), "init"),
    (lambda x: baselines.gmm(jax.random.key(0), x, 2, reg_covar=float("nan")), "reg_covar"),
])
def test_bad_options_raise_config_error(call, match):
  with pytest.raises(ConfigError, match=match):
    call(np.zeros((5, 2), np.float32))
