"""Array transforms shared by several datasets."""

from __future__ import annotations

import numpy as np


def pixels_to_rows(images: np.ndarray) -> np.ndarray:
  """Flattens uint8 images to float32 rows scaled to [0, 1].

  Args:
    images: uint8 array (N, H, W, C); each row of the result is one image in
      row-major H, W, C order.

  Returns:
    float32 array (N, H * W * C).

  Example:
    >>> pixels_to_rows(np.full((2, 4, 4, 1), 255, np.uint8)).max()
    np.float32(1.0)
  """
  rows = images.reshape(len(images), -1).astype(np.float32)
  rows /= 255.0
  return rows


def standardize(x: np.ndarray) -> np.ndarray:
  """z-scores each column (zero mean, unit variance) and returns float32.

  Constant columns are centred but left unscaled instead of divided by zero.

  Example:
    >>> standardize(np.array([[0.0], [2.0]])).ravel().tolist()
    [-1.0, 1.0]
  """
  x = np.asarray(x, np.float64)
  std = x.std(axis=0)
  return ((x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)).astype(np.float32)
