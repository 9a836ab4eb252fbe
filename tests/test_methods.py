"""The method registry and every registered method trained through the engine."""

from __future__ import annotations

import dataclasses
import doctest
import importlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture

from deepclust_jax import baselines, data, losses, methods, models
from deepclust_jax.configs import paper
from deepclust_jax.engine import FitPhase, SGDPhase, TrainOptions, check_phases, select_run, train
from deepclust_jax.errors import ConfigError
from deepclust_jax.models import centroids

RUNS = 2


# AE-CM with init "p" on digits, with tiny layers: all four phases in seconds.
AECM_P = {"init": "p", "hidden": "32,32", "latent": 4, "pretrain_epochs": 2, "cm_epochs": 1,
          "epochs": 2, "batch_size": 256}
# Knobs that only make training cheaper, used where a method's config has them.
SMALL = {"epochs": 1, "pretrain_epochs": 1, "cm_epochs": 1, "hidden": (16, 16), "latent": 2,
         "n_init": 3, "kmeans_restarts": 2}


def case(name: str) -> tuple[str, dict]:
  """(dataset, overrides) that make the registered method ``name`` train in seconds."""
  fields = {f.name for f in dataclasses.fields(methods.get(name).config)}
  if name == "aecm":
    return "digits", {**{k: v for k, v in SMALL.items() if k in fields}, **AECM_P}
  return "blobs", {k: v for k, v in SMALL.items() if k in fields}


@pytest.fixture(scope="module")
def blobs():
  return data.load("blobs")


@pytest.fixture(scope="module")
def trained():
  """Trains each method once (lazily, RUNS runs) and caches (dataset, method, result)."""
  cache = {}

  def get(name):
    if name not in cache:
      dataset, overrides = case(name)
      ds = data.load(dataset)
      config = methods.resolve(name, dataset=ds.name, num_classes=ds.num_classes,
                               overrides=overrides)
      method = methods.get(name).build(config, ds.sample_shape)
      result = train(method, ds.x, ds.y,
                     options=TrainOptions(runs=RUNS, seed=0, progress=False))
      cache[name] = (ds, method, result)
    return cache[name]

  return get


# Registry and config resolution.


def test_names_contains_the_paper_methods():
  assert {"kmeans", "gmm", "igmm", "cm", "aecm"} <= set(methods.names())
  assert methods.names() == sorted(methods.names())


def test_unknown_method_suggests_close_name():
  with pytest.raises(ConfigError, match=r"unknown method 'kmeanz'.*did you mean 'kmeans'"):
    methods.get("kmeanz")


def test_resolve_layers_defaults_preset_overrides():
  default = methods.resolve("cm")
  assert (default.alpha, default.batch_size, default.num_clusters) == (10.0, 256, 0)
  preset = methods.resolve("cm", dataset="mnist", num_classes=10)
  assert (preset.alpha, preset.batch_size) == (177.0, 111)
  assert preset.num_clusters == 10
  assert preset.epochs == default.epochs  # not in the preset: the default stays
  over = methods.resolve("cm", dataset="mnist", num_classes=10,
                         overrides={"alpha": "5", "num_clusters": "4"})
  assert (over.alpha, over.batch_size, over.num_clusters) == (5.0, 111, 4)
  # Datasets without a preset keep the defaults; the preset table is unchanged.
  assert methods.resolve("cm", dataset="iris", num_classes=3).alpha == 10.0
  assert paper.CM["mnist"]["alpha"] == 177.0


@pytest.mark.parametrize("name", ["cm", "aecm"])
def test_defaults_scale_with_data_without_a_preset(name):
  def resolve(n, shape=(784,), dataset="table", **overrides):
    return methods.resolve(name, dataset=dataset, num_classes=3, num_samples=n, shape=shape,
                           overrides=overrides)

  default = methods.resolve(name)
  # MNIST-sized data keeps the defaults the configs were written for.
  mnist = resolve(70_000)
  assert (mnist.batch_size, mnist.epochs) == (default.batch_size, default.epochs)
  # A table of 500 rows: batches of N/25 and the step budget, at most MAX_EPOCHS passes.
  small = resolve(500)
  assert small.batch_size == 20
  assert small.epochs == importlib.import_module(f"deepclust_jax.methods.{name}").MAX_EPOCHS
  middle = resolve(30_000)
  steps = 150 * (70_000 // 256)
  assert middle.batch_size == 256 and middle.epochs == -(-steps // (30_000 // 256))
  assert resolve(100).batch_size == 16  # at least 16
  # What the user sets is kept, and the epochs follow the user's batch.
  mine = resolve(5_000, batch_size="50")
  assert mine.batch_size == 50 and mine.epochs == -(-steps // 100)
  assert resolve(500, epochs="7").epochs == 7
  # A preset is the paper's: no scaling.
  assert resolve(500, dataset="mnist").batch_size == methods.get(name).presets["mnist"][
      "batch_size"]


def test_aecm_uses_the_papers_d_2k_d_autoencoder_on_narrow_tables():
  narrow = methods.resolve("aecm", dataset="wine", num_classes=3, num_samples=178, shape=(13,))
  assert (narrow.hidden, narrow.latent) == ((), 6)
  assert (narrow.pretrain_batch_size, narrow.pretrain_epochs) == (16, 500)
  wide = methods.resolve("aecm", dataset="t", num_classes=3, num_samples=178, shape=(64,))
  assert (wide.hidden, wide.latent) == ((500, 500, 2000), 10)
  mine = methods.resolve("aecm", dataset="wine", num_classes=3, num_samples=178, shape=(13,),
                         overrides={"hidden": "20"})
  assert mine.hidden == (20,)


def test_quadratic_encoder_sees_the_degree_2_monomials():
  x = jnp.array([[2.0, 3.0], [-1.0, 0.5]])
  features = models.quadratic_features(x)
  expected = [[1, 2, 3, 4, 6, 9], [1, -1, 0.5, 1, -0.5, 0.25]]
  np.testing.assert_allclose(features, expected)
  # The two circles: one linear function of the monomials (x1^2 + x2^2)
  # separates them, which no linear function of x can.
  method = methods.build("aecm", num_clusters=2, shape=(2,), hidden=(), latent=3,
                         quadratic=True)
  params, _ = method.init(jax.random.key(0), {"x": x})
  kernel = params["autoencoder"]["encoder"]["dense_0"]["kernel"]
  assert kernel.shape == (6, 3)


def test_aecm_preset_applies():
  config = methods.resolve("aecm", dataset="usps", num_classes=10)
  assert (config.alpha, config.beta, config.batch_size) == (20.0, 0.5, 256)


@pytest.mark.parametrize("key, text, expected", [
    ("batch_size", "64", 64),
    ("batch_size", "64.0", 64),
    ("alpha", "1e-2", 0.01),
    ("average", "false", False),
    ("average", "Yes", True),
    ("average", "0", False),
    ("terms", "e1, e2", ("e1", "e2")),
    ("frequencies", "0.25,0.75", (0.25, 0.75)),
    ("init", "p", "p"),
    ("optimizer", "sgd", "sgd"),
])
def test_override_strings_are_coerced(key, text, expected):
  config = methods.resolve("cm", num_classes=2, overrides={key: text})
  value = getattr(config, key)
  assert value == expected
  assert type(value) is type(expected)
  if isinstance(value, tuple):
    assert all(type(v) is type(e) for v, e in zip(value, expected))


def test_tuple_of_int_from_string_and_json_list():
  assert methods.resolve("aecm", num_classes=3, overrides={"hidden": "32,16"}).hidden == (32, 16)
  assert methods.resolve("aecm", num_classes=3, overrides={"hidden": [8, 4]}).hidden == (8, 4)
  assert methods.resolve("aecm", num_classes=3, overrides={"hidden": 8}).hidden == (8,)
  assert methods.resolve("aecm", num_classes=3, overrides={"hidden": "8"}).hidden == (8,)
  with pytest.raises(ConfigError, match="not a valid int"):
    methods.resolve("aecm", num_classes=3, overrides={"hidden": "8,x"})


@pytest.mark.parametrize("key, text, message", [
    ("batch_size", "7.5", "not a valid int"),
    ("batch_size", "ten", "not a valid int"),
    ("alpha", "abc", "not a valid float"),
    ("average", "maybe", "not a valid bool"),
    ("init", "q", r"not one of \['r', 'p'\]"),
    ("terms", "e1,e9", "unknown CM loss terms"),
    ("alpha", "-1", "must be positive"),
    ("alpah", "3", r"unknown cm config key 'alpah'.*did you mean 'alpha'"),
])
def test_bad_overrides_raise_config_error(key, text, message):
  with pytest.raises(ConfigError, match=message):
    methods.resolve("cm", num_classes=3, overrides={key: text})


def test_parse_overrides():
  assert methods.parse_overrides(["alpha=5", " init = p ", "terms=e1,e2", "x=a=b"]) == {
      "alpha": "5", "init": "p", "terms": "e1,e2", "x": "a=b"}
  for bad in ("alpha", "=3"):
    with pytest.raises(ConfigError, match="key=value"):
      methods.parse_overrides([bad])


def test_igmm_is_spherical_with_uniform_weights():
  config = methods.resolve("igmm", num_classes=3)
  assert (config.covariance, config.uniform_weights) == ("spherical", True)
  assert methods.resolve("gmm", num_classes=3).covariance == "full"


# Training through the engine.


@pytest.mark.parametrize("name", methods.names())
def test_every_method_trains(name, trained):
  ds, method, result = trained(name)
  n, k = ds.x.shape[0], ds.num_classes
  assert method.num_clusters == k
  chex.assert_shape(result.labels, (RUNS, n))
  chex.assert_shape(result.gamma, (RUNS, n, k))
  np.testing.assert_allclose(result.gamma.sum(-1), 1.0, atol=1e-4)
  np.testing.assert_array_equal(result.labels, result.gamma.argmax(-1))
  assert len(result.metrics) == RUNS
  assert result.terms
  for terms in result.terms.values():
    chex.assert_shape(terms, (RUNS,))
    assert np.isfinite(terms).all()
  # One history record per epoch of every phase, in order.
  expected = [p.name for p in method.phases for _ in range(p.num_epochs)]
  assert [r["phase"] for r in result.history] == expected


@pytest.mark.parametrize("name, reference", [
    ("kmeans", lambda x: KMeans(3, n_init=10, random_state=0).fit_predict(x)),
    ("gmm", lambda x: GaussianMixture(3, covariance_type="full",
                                      random_state=0).fit(x).predict(x)),
])
def test_classic_methods_agree_with_sklearn(name, reference, trained, blobs):
  _, _, result = trained(name)
  ari_sklearn = adjusted_rand_score(blobs.y, reference(blobs.x))
  for labels in result.labels:
    assert abs(adjusted_rand_score(blobs.y, labels) - ari_sklearn) <= 0.05


def test_cm_l_sp_is_sparsity_criterion_of_prediction(trained, blobs):
  _, method, result = trained("cm")
  assert result.selected == select_run(result.terms["l_sp"], result.collapsed)
  for r in range(RUNS):
    params = jax.tree.map(lambda a: jnp.asarray(a[r]), result.params)
    gamma = method.predict(params, None, jnp.asarray(blobs.x))
    np.testing.assert_allclose(result.gamma[r], gamma, atol=1e-5)
    expected = losses.sparsity_criterion(gamma, centroids(params))
    np.testing.assert_allclose(result.terms["l_sp"][r], expected, rtol=1e-4)


def test_cm_init_p_is_one_lloyd_step_from_kmeanspp_seeds():
  ds = data.load("five_gaussians")
  x = jnp.asarray(ds.x[::4])
  config = methods.resolve("cm", num_classes=5, overrides={"init": "p"})
  method = methods.get("cm").build(config, x.shape[1:])
  key = jax.random.key(3)
  params, _ = method.init(key, {"x": x})
  mu = params["decoder"]["kernel"]
  chex.assert_shape(mu, (5, 2))
  expected = baselines.lloyd(x, baselines.kmeans_plusplus(key, x, 5), num_iters=1).mu
  np.testing.assert_allclose(mu, expected, atol=1e-5)
  # Independently: each row is the mean of the points nearest to its seed.
  seeds = np.asarray(baselines.kmeans_plusplus(key, x, 5))
  xn = np.asarray(x)
  nearest = np.argmin(((xn[:, None] - seeds[None]) ** 2).sum(-1), axis=1)
  means = np.stack([xn[nearest == k].mean(0) for k in range(5)])
  np.testing.assert_allclose(mu, means, atol=1e-5)
  np.testing.assert_allclose(params["encoder"]["kernel"], np.linalg.pinv(np.asarray(mu)),
                             atol=1e-4)
  np.testing.assert_array_equal(params["decoder"]["bias"], 0.0)
  np.testing.assert_array_equal(params["encoder"]["bias"], 0.0)
  np.testing.assert_allclose(centroids(params), mu)
  # Init "r" is random: different centroids.
  random_init, _ = methods.get("cm").build(methods.resolve("cm", num_classes=5), (2,)).init(
      key, {"x": x})
  assert not np.allclose(centroids(random_init), mu, atol=1e-2)


def test_aecm_init_p_runs_four_phases_and_ends_with_averaging_epoch(trained):
  ds, method, result = trained("aecm")
  assert ds.name == "digits"
  assert [p.name for p in method.phases] == ["pretrain", "mixture", "cm", "joint"]
  assert isinstance(method.phases[1], FitPhase)
  assert all(isinstance(method.phases[i], SGDPhase) for i in (0, 2, 3))
  assert [(r["phase"], r["epoch"]) for r in result.history] == [
      ("pretrain", 1), ("pretrain", 2), ("mixture", 1), ("cm", 1),
      ("joint", 1), ("joint", 2), ("joint", 3)]  # joint 3: the averaging epoch
  assert [r["global_epoch"] for r in result.history] == list(range(1, 8))
  assert set(result.history[0]["terms"]) == {"loss", "reconstruction"}
  assert "inertia" in result.history[2]["terms"]
  assert {"e1", "e2", "e3", "e4"} <= set(result.history[3]["terms"])
  chex.assert_shape(result.params["cm"]["decoder"]["kernel"], (RUNS, 10, 4))
  assert result.selected == select_run(result.terms["l_sp"], result.collapsed)


def test_aecm_init_r_is_joint_training_only():
  config = methods.resolve("aecm", num_classes=3, overrides={"epochs": 4})
  method = methods.get("aecm").build(config, (5,))
  assert [p.name for p in method.phases] == ["joint"]
  assert method.num_epochs == 5


def test_polynomial_decay_matches_optax_and_stays_finite_past_its_end():
  from deepclust_jax.methods.common import polynomial_decay
  ours = jax.jit(jax.vmap(polynomial_decay(1e-3, 1e-4, 0.4, 34)))
  reference = optax.polynomial_schedule(1e-3, 1e-4, power=0.4, transition_steps=34)
  counts = jnp.arange(0, 60, dtype=jnp.int32)
  values = ours(counts)
  assert np.all(np.isfinite(values))
  np.testing.assert_allclose(values[:34], [reference(int(c)) for c in counts[:34]], rtol=1e-5)
  np.testing.assert_allclose(values[34:], 1e-4, rtol=1e-6)


def test_aecm_with_lr_decay_survives_the_averaging_epoch():
  ds = data.load("digits")
  config = methods.aecm.AECMConfig(num_clusters=10, epochs=1, batch_size=200, lr_decay=True,
                              hidden=(32,), latent=5)
  result = train(methods.aecm.build(config, ds.sample_shape), ds.x[:600],
                 options=TrainOptions(runs=1, progress=False))
  assert np.all(np.isfinite(result.terms["loss"]))


@pytest.mark.parametrize("init", ["r", "p"])
@pytest.mark.parametrize("name", ["cm", "aecm"])
def test_cm_and_aecm_build_and_trace_for_every_registered_dataset(name, init):
  """Each dataset's preset is a valid config and every phase traces at its width."""
  key = jax.random.key(0)
  for dataset in data.names():
    spec = data.get(dataset)
    width = spec.num_features or 2000  # 20news: at most 2,000 words
    config = methods.resolve(name, dataset=dataset, num_classes=spec.num_classes,
                             overrides={"init": init})
    assert config.num_clusters == spec.num_classes, dataset
    shape = spec.image_shape or (width,)
    method = methods.get(name).build(config, shape)
    x = jax.ShapeDtypeStruct((64, width), jnp.float32)
    check_phases(method, {"x": x}, key)


def test_registry_doctests():
  assert doctest.testmod(methods.registry, raise_on_error=True).attempted >= 5


@pytest.mark.parametrize("name,key,value,message", [
    ("vade", "hidden", (500, 0), r"hidden=\(500, 0\): every layer width must be a positive"),
    ("aecm", "hidden", (-5,), "every layer width must be a positive integer"),
    ("edgam", "hidden", (0,), "every layer width must be a positive integer"),
    ("ae_kmeans", "latent", 0, "latent=0 must be positive"),
    ("cm", "learning_rate", float("nan"), "learning_rate=nan must be a finite number"),
    ("nmm_em", "em_learning_rate", 0.0, "em_learning_rate=0.0 must be positive"),
    ("edgam", "pretrain_batch_size", 0, "pretrain_batch_size=0 must be positive"),
    ("dgg", "siamese_epochs", -1, "siamese_epochs=-1 must be >= 0"),
    ("dgg", "posterior_sample", "independent",
     "posterior_sample='independent' needs posterior='mixture'"),
    ("edgam", "eta3", float("inf"), "eta3=inf must be a finite number"),
])
def test_numeric_config_fields_are_checked_before_training(name, key, value, message):
  with pytest.raises(ConfigError, match=message):
    methods.resolve(name, overrides={key: value})


def test_graph_neighbours_must_be_fewer_than_the_samples():
  method = methods.build("dgg", shape=(64,), num_clusters=3, hidden=(8,), num_neighbours=40,
                         siamese_neighbours=2)
  x = jnp.zeros((30, 64))
  params, state = method.init(jax.random.key(0), {"x": x})
  graph_phase = next(p for p in method.phases if p.name == "graph")
  with pytest.raises(ConfigError, match="num_neighbours=40 needs more samples than neighbours; "
                                        "the data has 30"):
    graph_phase.update(params, state, {"x": x}, jax.random.key(1))
