"""ACC, NMI and ARI against scikit-learn and a brute-force ACC."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from deepclust_jax import metrics
from deepclust_jax.errors import InputError

AVERAGES = ("arithmetic", "geometric", "min", "max")


def brute_force_acc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
  """ACC by trying every injective map between clusters and classes."""
  classes, clusters = np.unique(y_true), np.unique(y_pred)
  best = 0
  if clusters.size <= classes.size:
    for image in itertools.permutations(classes, clusters.size):
      mapping = dict(zip(clusters, image))
      best = max(best, sum(mapping[p] == t for t, p in zip(y_true, y_pred)))
  else:
    for image in itertools.permutations(clusters, classes.size):
      mapping = dict(zip(classes, image))
      best = max(best, sum(mapping[t] == p for t, p in zip(y_true, y_pred)))
  return best / y_true.size


def assert_matches_references(y_true, y_pred) -> None:
  y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
  for average in AVERAGES:
    expected = normalized_mutual_info_score(y_true, y_pred, average_method=average)
    assert metrics.nmi(y_true, y_pred, average) == pytest.approx(expected, abs=1e-9)
  assert metrics.ari(y_true, y_pred) == pytest.approx(adjusted_rand_score(y_true, y_pred),
                                                      abs=1e-9)
  assert metrics.acc(y_true, y_pred) == pytest.approx(brute_force_acc(y_true, y_pred),
                                                      abs=1e-9)


def test_random_labelings_match_references():
  rng = np.random.default_rng(0)
  for _ in range(150):
    n = int(rng.integers(1, 40))
    num_classes, num_clusters = rng.integers(1, 6, size=2)
    assert_matches_references(rng.integers(0, num_classes, n), rng.integers(0, num_clusters, n))


def test_large_random_labelings_match_scikit_learn():
  rng = np.random.default_rng(1)
  y_true = rng.integers(0, 10, 20_000)
  y_pred = np.where(rng.random(20_000) < 0.7, (y_true * 3) % 10, rng.integers(0, 12, 20_000))
  for average in AVERAGES:
    assert metrics.nmi(y_true, y_pred, average) == pytest.approx(
        normalized_mutual_info_score(y_true, y_pred, average_method=average), abs=1e-9)
  assert metrics.ari(y_true, y_pred) == pytest.approx(adjusted_rand_score(y_true, y_pred),
                                                      abs=1e-9)
  assert metrics.acc(y_true, y_pred) == pytest.approx(0.7 + 0.3 / 12, abs=0.01)


@pytest.mark.parametrize("y_true,y_pred", [
    pytest.param([0, 0, 0, 0], [0, 0, 0, 0], id="one-cluster-both"),
    pytest.param([0, 1, 2, 0, 1], [0, 0, 0, 0, 0], id="one-cluster-predicted"),
    pytest.param([0, 0, 0, 0, 0], [0, 1, 2, 0, 1], id="one-class"),
    pytest.param([0, 0, 1, 1, 2, 2], [2, 2, 0, 0, 1, 1], id="permuted"),
    pytest.param([0, 0, 4, 4, 7, 7], [1, 1, 1, 3, 3, 3], id="empty-classes"),
    pytest.param([0, 0, 0, 1, 1, 1], [0, 1, 2, 3, 4, 4], id="more-clusters-than-classes"),
    pytest.param([0, 1, 2, 3, 4, 4], [0, 0, 0, 1, 1, 1], id="fewer-clusters-than-classes"),
    pytest.param([-5, -5, 100, 100, 3], [42, 42, 42, -1, 9], id="arbitrary-values"),
    pytest.param([0, 1, 2, 3], [3, 2, 1, 0], id="all-singletons"),
    pytest.param([3], [8], id="one-sample"),
])
def test_edge_cases_match_references(y_true, y_pred):
  assert_matches_references(y_true, y_pred)


def test_perfect_and_permuted_labels_score_one():
  y = np.repeat(np.arange(5), 7)
  for y_pred in (y, (y + 2) % 5, 10 * y - 3):
    scores = metrics.evaluate(y, y_pred)
    assert scores == pytest.approx({"acc": 1.0, "nmi": 1.0, "ari": 1.0}, abs=1e-12)


def test_acc_leaves_surplus_clusters_unmatched():
  # Class 0 split over clusters 0 and 1: only the larger part counts.
  assert metrics.acc([0, 0, 0, 1, 1], [0, 0, 1, 2, 2]) == pytest.approx(0.8)
  assert metrics.acc([0, 0, 1, 2, 2], [0, 0, 0, 1, 1]) == pytest.approx(0.8)


def test_evaluate_returns_python_floats():
  scores = metrics.evaluate(np.array([0, 0, 1, 1], np.int32), np.array([1, 1, 0, 1], np.int64))
  assert set(scores) == {"acc", "nmi", "ari"}
  assert all(type(v) is float for v in scores.values())


def test_accepts_jax_arrays():
  import jax.numpy as jnp
  assert metrics.evaluate(jnp.array([0, 1, 1]), jnp.array([1, 0, 0]))["acc"] == 1.0


def test_contingency_matrix_counts():
  counts = metrics.contingency_matrix([5, 5, 2, 2, 2], [0, 1, 1, 1, 9])
  np.testing.assert_array_equal(counts, [[0, 2, 1], [1, 1, 0]])


@pytest.mark.parametrize("y_true,y_pred,match", [
    ([[0, 1], [1, 0]], [0, 1, 1, 0], "1-D"),
    ([0, 1, 1], [0, 1], "same length"),
    ([0.0, 1.0], [0, 1], "integer"),
    ([0, 1], ["a", "b"], "integer"),
    ([], [], "empty"),
])
def test_bad_labels_raise_input_error(y_true, y_pred, match):
  for score in (metrics.acc, metrics.nmi, metrics.ari, metrics.evaluate):
    with pytest.raises(InputError, match=match):
      score(np.asarray(y_true), np.asarray(y_pred))


def test_unknown_average_method_raises_input_error():
  with pytest.raises(InputError, match="average_method"):
    metrics.nmi([0, 1], [0, 1], average_method="harmonic")
