"""The scikit-learn estimators: scikit-learn's own checks, Pipelines, pickling, errors."""

from __future__ import annotations

import dataclasses
import doctest
import inspect
import pickle

import jax
import numpy as np
import pytest
import scipy.sparse
from jax.experimental.compilation_cache import compilation_cache
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import get_tags
from sklearn.utils.estimator_checks import parametrize_with_checks

from deepclust_jax import estimators, methods, metrics, pipeline
from deepclust_jax.data import Dataset
from deepclust_jax.errors import ConfigError, InputError
from deepclust_jax.validation import check_data

# Config fields that make any method tiny, where the method has them.
TINY = {"epochs": 1, "pretrain_epochs": 1, "cm_epochs": 1, "hidden": (8,), "latent": 4,
        "batch_size": 16, "pretrain_batch_size": 16, "n_init": 1, "kmeans_restarts": 1,
        "num_iters": 5}
# One of each kind (a FitPhase baseline, SGD, several phases with codes); the
# other methods' tiny fits are slow-marked.
FAST = {"kmeans", "cm", "aecm"}


@pytest.fixture(scope="module", autouse=True)
def compilation_cache_dir(tmp_path_factory):
  """Caches compiled programs on disk for this module's many fits.

  scikit-learn's checks fit fresh estimators on the same few shapes, and each
  fit builds new closures, so without this cache every fit compiles again.
  """
  names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
           "jax_persistent_cache_min_entry_size_bytes")
  before = {name: getattr(jax.config, name) for name in names}
  jax.config.update(names[0], str(tmp_path_factory.mktemp("jax_cache")))
  jax.config.update(names[1], 0)
  jax.config.update(names[2], 0)
  yield
  for name, value in before.items():
    jax.config.update(name, value)
  compilation_cache.reset_cache()


def blobs(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  rng = np.random.default_rng(seed)
  y = np.arange(n) % 3
  x = np.array([[0.0, 4.0], [4.0, 0.0], [-4.0, -4.0]])[y] + rng.normal(size=(n, 2))
  return 10 + 5 * x, y  # far from standardized: the Pipeline test needs the scaler


def tiny(name: str) -> dict:
  fields = {f.name for f in dataclasses.fields(methods.get(name).config)}
  return {k: v for k, v in TINY.items() if k in fields}


# With codes, transform and the transformer checks; Adam pretraining, as SGD at
# the paper's rate diverges on the checks' unscaled data; latent >= K, or the
# centroids cannot be orthonormal and a cluster empties.
TINY_AECM = estimators.AECM(hidden=(8,), latent=4, epochs=3, pretrain_epochs=3, cm_epochs=1,
                            batch_size=10, pretrain_batch_size=10, kmeans_restarts=1,
                            init="p", recipe="adam")


def expected_failures(estimator) -> dict[str, str]:
  del estimator
  return estimators.EXPECTED_FAILED_CHECKS


# One k-means++ seeding and few iterations: quick to compile.
@parametrize_with_checks([estimators.KMeans(n_init=1, num_iters=20)],
                         expected_failed_checks=expected_failures)
def test_sklearn_check(estimator, check):
  check(estimator)


# Slow: every check compiles its fits afresh, and the CM is covered fast below
# (the same result as pipeline.fit, Pipeline, pickling). 20 epochs cost little
# once compiled and let check_clustering's ARI pass.
@pytest.mark.slow
@parametrize_with_checks([estimators.CM(epochs=20, batch_size=10, average=False)],
                         expected_failed_checks=expected_failures)
def test_sklearn_check_cm(estimator, check):
  check(estimator)


@pytest.mark.slow
@parametrize_with_checks([TINY_AECM], expected_failed_checks=expected_failures)
def test_sklearn_check_aecm(estimator, check):
  check(estimator)


def test_a_class_per_registered_method():
  for name in methods.names():
    cls = estimators.estimator_class(name)
    assert getattr(estimators, cls.__name__) is cls and cls.__name__ in estimators.__all__
    assert cls.method == name
    fields = [f.name for f in dataclasses.fields(methods.get(name).config)
              if f.name != "num_clusters"]
    parameters = list(inspect.signature(cls).parameters)
    assert parameters == ["n_clusters", "n_runs", "random_state", "sample_shape", "pretrained",
                          "verbose",
                          *fields]
    assert set(cls().get_params()) == set(parameters)
  assert (estimators.AECM.__name__, estimators.KMeans.__name__) == ("AECM", "KMeans")


def test_skipped_checks_have_reasons():
  assert estimators.EXPECTED_FAILED_CHECKS
  assert all(len(why) > 30 for why in estimators.EXPECTED_FAILED_CHECKS.values())


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=() if n in FAST else pytest.mark.slow) for n in methods.names()])
def test_every_method_fits_predicts_and_pickles(name):
  x, _ = blobs()
  est = estimators.DeepClusterer(name, n_clusters=3, random_state=0, **tiny(name))
  has_transform = hasattr(est, "transform")  # known before fitting
  labels = est.fit_predict(x)
  gamma = est.predict_proba(x)
  assert labels.shape == (60,) and gamma.shape == (60, 3)
  np.testing.assert_allclose(gamma.sum(1), 1, rtol=1e-5)
  np.testing.assert_array_equal(est.predict(x), labels)
  again = pickle.loads(pickle.dumps(est))
  np.testing.assert_allclose(again.predict_proba(x[:7]), gamma[:7], atol=1e-6)
  assert has_transform == est.model_.has_codes == hasattr(est, "transform")
  assert has_transform == hasattr(est, "fit_transform")
  assert has_transform == (get_tags(est).transformer_tags is not None)
  if has_transform:
    z = est.transform(x)
    assert z.shape[0] == 60
    np.testing.assert_allclose(again.transform(x[:7]), z[:7], atol=1e-5)
  if name == "aecm":
    assert z.shape == (60, TINY["latent"])


def test_same_result_as_pipeline_fit_and_selected_run():
  x, y = blobs()
  config = {"epochs": 2, "batch_size": 20}
  est = estimators.CM(n_clusters=3, n_runs=3, random_state=5, **config).fit(x)
  ds = Dataset(x=x.astype(np.float32), y=y.astype(np.int32), name="blobs3", num_classes=3)
  report = pipeline.fit("cm", ds, runs=3, seed=5, overrides=config,
                        options={"progress": False})
  assert est.selected_run_ == report.result.selected
  np.testing.assert_array_equal(est.labels_, report.result.labels[est.selected_run_])
  assert est.collapsed_runs_ == report.result.collapsed


def test_pipeline_with_standard_scaler():
  x, y = blobs()
  pipe = make_pipeline(StandardScaler(), estimators.KMeans(n_clusters=3, random_state=0))
  labels = pipe.fit(x).predict(x)
  assert metrics.acc(y, labels) > 0.95
  pipe.set_params(kmeans__n_init=2)
  assert pipe[-1].n_init == 2
  # The config of the every-method test: its compiled programs are cached.
  cm = make_pipeline(StandardScaler(), estimators.CM(n_clusters=3, random_state=0,
                                                     **tiny("cm")))
  assert cm.fit_predict(x).shape == (60,)
  np.testing.assert_array_equal(pickle.loads(pickle.dumps(cm)).predict(x), cm.predict(x))


def test_verbose_shows_the_progress_bar(capsys):
  x, _ = blobs()
  estimators.KMeans(n_clusters=3, random_state=0).fit(x)
  assert "kmeans" not in capsys.readouterr().err  # silent by default
  estimators.KMeans(n_clusters=3, random_state=0, verbose=True).fit(x)
  assert "kmeans" in capsys.readouterr().err  # tqdm's bar, named by the method


def test_generic_estimator_params_and_clone():
  est = estimators.DeepClusterer("cm", n_clusters=3, alpha=2.0)
  assert est.get_params() == {"method": "cm", "n_clusters": 3, "n_runs": 1,
                              "random_state": None, "sample_shape": None, "pretrained": None,
                              "verbose": False, "alpha": 2.0}
  est.set_params(epochs=4, n_runs=2)
  assert (est.epochs, est.n_runs) == (4, 2)
  assert clone(est).get_params() == est.get_params()
  with pytest.raises(ConfigError, match="unknown cm estimator parameter 'alpah'"):
    est.set_params(alpah=3)
  with pytest.raises(ConfigError, match="unknown aecm config key 'alpah'"):
    estimators.AECM(alpah=3)
  with pytest.raises(ConfigError, match="unknown kmeans estimator parameter 'method'"):
    estimators.KMeans().set_params(method="cm")


def test_input_errors_are_the_command_lines():
  x, _ = blobs()
  bad = x.copy()
  bad[5, 1] = np.nan
  with pytest.raises(InputError) as caught:
    estimators.KMeans(n_clusters=3).fit(bad)
  with pytest.raises(InputError) as expected:
    check_data(bad)
  assert str(caught.value) == str(expected.value)
  for est, message in [(estimators.KMeans(n_clusters=1), "K=1 must be at least 2"),
                       (estimators.KMeans(n_clusters=61), "larger than the number of samples"),
                       (estimators.CM(n_clusters=3, n_runs=0), "n_runs=0 must be a positive"),
                       (estimators.CM(n_clusters=3, alpha=-1.0), "alpha=-1.0 must be positive"),
                       (estimators.CM(n_clusters=3, init="x"), "init='x' is not one of")]:
    with pytest.raises(ValueError, match=message):
      est.fit(x)
  with pytest.raises(InputError, match="sparse X is not supported"):
    estimators.KMeans(n_clusters=3).fit(scipy.sparse.csr_matrix(x))


def test_properties_of_the_checks_skipped_for_k1():
  """check_fit2d_predict1d, check_methods_subset_invariance and
  check_dont_overwrite_parameters, with K = 2 instead of 1."""
  x, _ = blobs()
  est = estimators.KMeans(n_clusters=2, random_state=1)
  params = est.get_params()
  est.fit(x)
  assert est.get_params() == params
  assert all(k.endswith("_") or k.startswith("_") or k in params for k in vars(est))
  with pytest.raises(InputError, match="2-D array"):
    est.predict(x[0])
  with pytest.raises(InputError, match="X has 1 features, but kmeans is expecting 2"):
    est.predict(x[:, :1])
  np.testing.assert_array_equal(est.predict_proba(x[10:20]), est.predict_proba(x)[10:20])


def test_doctests():
  result = doctest.testmod(estimators, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.attempted > 0 and result.failed == 0
