"""Small real datasets that ship inside scikit-learn's wheel: no download."""

from __future__ import annotations

import importlib.util
import pathlib

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


def _wheel_file(name: str) -> pathlib.Path | None:
  """A data file of scikit-learn's wheel, found without importing scikit-learn."""
  spec = importlib.util.find_spec("sklearn")
  for folder in (spec and spec.submodule_search_locations) or ():
    path = pathlib.Path(folder) / "datasets" / "data" / name
    if path.is_file():
      return path
  return None


def digits() -> XY:
  """scikit-learn's 8x8 digits (UCI optdigits test set), pixels 0..16 scaled by 1/16.

  1,797 images of 10 digits; ``image_shape`` is (8, 8, 1). Read straight
  from the wheel's CSV where it is found: importing scikit-learn would cost
  a small command most of a second.
  """
  path = _wheel_file("digits.csv.gz")
  if path is None:
    from sklearn import datasets

    x, y = datasets.load_digits(return_X_y=True)
  else:
    table = np.loadtxt(path, delimiter=",")
    x, y = table[:, :-1], table[:, -1].astype(np.int64)
  return (x / 16.0).astype(np.float32), y
