"""Small real datasets that ship inside scikit-learn's wheel: no download."""

from __future__ import annotations

import numpy as np

from deepclust_jax.data.preprocess import standardize

XY = tuple[np.ndarray, np.ndarray]


def table(name: str) -> XY:
  """A bundled table (``"iris"``, ``"wine"`` or ``"breast_cancer"``), z-scored per feature.

  Example:
    >>> x, y = table("iris")
    >>> x.shape, int(y.max()) + 1
    ((150, 4), 3)
  """
  from sklearn import datasets  # Lazy: scikit-learn imports slowly.

  x, y = getattr(datasets, f"load_{name}")(return_X_y=True)
  return standardize(x), y


def digits() -> XY:
  """scikit-learn's 8x8 digits (UCI optdigits test set), pixels 0..16 scaled by 1/16.

  1,797 images of 10 digits; ``image_shape`` is (8, 8, 1).
  """
  from sklearn import datasets

  x, y = datasets.load_digits(return_X_y=True)
  return (x / 16.0).astype(np.float32), y
