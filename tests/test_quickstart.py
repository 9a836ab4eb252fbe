"""The quick start's promise: on digits, every method with a digits preset beats k-means.

Slow (minutes per method on 2 CPU cores): ``pytest -m slow tests/test_quickstart.py``.
k-means's ACC on the same seeds is the bar: the method's mean ACC over 5 seeds
must be higher, and no seed may fall below k-means's ACC for that seed.
"""

from __future__ import annotations

import numpy as np
import pytest

from deepclust_jax import methods, pipeline

SEEDS = 5
QUIET = {"progress": False}
WITH_DIGITS_PRESET = [n for n in methods.names()
                      if "digits" in methods.get(n).presets and n not in ("kmeans", "ae_kmeans")]


@pytest.fixture(scope="module")
def kmeans_acc() -> np.ndarray:
  report = pipeline.fit("kmeans", "digits", runs=SEEDS, seed=0, options=QUIET)
  return np.array([m["acc"] for m in report.result.metrics])


# Known shortfalls, kept visible: the test runs and is reported as xfail.
SHORT_OF_KMEANS: dict[str, str] = {}


@pytest.mark.slow
@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(reason=SHORT_OF_KMEANS[n], strict=True))
    if n in SHORT_OF_KMEANS else n for n in WITH_DIGITS_PRESET])
def test_method_beats_kmeans_on_digits(name, kmeans_acc):
  report = pipeline.fit(name, "digits", runs=SEEDS, seed=0, options=QUIET)
  acc = np.array([m["acc"] for m in report.result.metrics])
  print(f"{name}: ACC {acc.round(3)} vs k-means {kmeans_acc.round(3)}")
  assert acc.mean() > kmeans_acc.mean()
  assert (acc >= kmeans_acc).all(), (acc, kmeans_acc)
  assert not report.result.collapsed


def test_aecm_has_a_digits_preset():
  """The README's quick start runs AE-CM on digits with its own preset."""
  assert "aecm" in WITH_DIGITS_PRESET
