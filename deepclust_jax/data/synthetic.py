"""Synthetic 2-D sets with known clusters, identical on every call.

All sets are standardized per coordinate (zero mean, unit variance) with
:func:`~deepclust_jax.data.preprocess.standardize`.
"""

from __future__ import annotations

import numpy as np

from deepclust_jax.data.preprocess import standardize

XY = tuple[np.ndarray, np.ndarray]

# scikit-learn's "Comparing different clustering algorithms on toy datasets"
# example draws this many points with these seeds.
_TOY_SAMPLES = 500
_TOY_SEED = 30
_SKEWED_SEED = 170  # The anisotropic and varied-variance sets use this one.


def five_gaussians() -> XY:
  """The CM paper's toy set: 2,000 points in R^2 from 5 bivariate Gaussians, K=5.

  Boubekki, Kampffmeyer, Brefeld, Jenssen (2021), "Joint optimization of an
  autoencoder for clustering and embedding", Fig. 1 and 3. The paper does not
  list the Gaussians' parameters; here 400 points come from each of 5
  isotropic unit-variance Gaussians centred on a regular pentagon of radius 4
  (seed 0), then the coordinates are standardized as the paper does.

  Example:
    >>> x, y = five_gaussians()
    >>> x.shape, np.bincount(y).tolist()
    ((2000, 2), [400, 400, 400, 400, 400])
  """
  rng = np.random.default_rng(0)
  angles = 2 * np.pi * np.arange(5) / 5
  means = 4.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
  y = np.repeat(np.arange(5), 400)
  return standardize(means[y] + rng.standard_normal((len(y), 2))), y


def moons() -> XY:
  """Two interleaved half circles, K=2: ``make_moons(500, noise=0.05, random_state=30)``."""
  from sklearn import datasets  # Lazy: scikit-learn imports slowly.

  x, y = datasets.make_moons(n_samples=_TOY_SAMPLES, noise=0.05, random_state=_TOY_SEED)
  return standardize(x), y


def circles() -> XY:
  """Two concentric circles, K=2: ``make_circles(500, factor=0.5, noise=0.05, random_state=30)``."""
  from sklearn import datasets

  x, y = datasets.make_circles(n_samples=_TOY_SAMPLES, factor=0.5, noise=0.05,
                               random_state=_TOY_SEED)
  return standardize(x), y


def blobs() -> XY:
  """Three isotropic blobs, K=3: ``make_blobs(500, random_state=30)``."""
  from sklearn import datasets

  x, y = datasets.make_blobs(n_samples=_TOY_SAMPLES, random_state=_TOY_SEED)
  return standardize(x), y


def anisotropic() -> XY:
  """Three sheared blobs, K=3: ``make_blobs(500, random_state=170)`` @ [[.6, -.6], [-.4, .8]]."""
  from sklearn import datasets

  x, y = datasets.make_blobs(n_samples=_TOY_SAMPLES, random_state=_SKEWED_SEED)
  return standardize(x @ np.array([[0.6, -0.6], [-0.4, 0.8]])), y


def varied() -> XY:
  """Three blobs of standard deviations 1, 2.5 and 0.5, K=3 (``random_state=170``)."""
  from sklearn import datasets

  x, y = datasets.make_blobs(n_samples=_TOY_SAMPLES, cluster_std=[1.0, 2.5, 0.5],
                             random_state=_SKEWED_SEED)
  return standardize(x), y


def no_structure() -> XY:
  """500 uniform points in the unit square (``RandomState(30).rand(500, 2)``), K=3.

  There are no true clusters: every label is 0, and K=3 is the number of
  clusters the scikit-learn comparison asks each method for.
  """
  x = np.random.RandomState(_TOY_SEED).rand(_TOY_SAMPLES, 2)
  return standardize(x), np.zeros(_TOY_SAMPLES, np.int64)
