"""Images through TensorFlow Datasets (TFDS), reached only with ``download=True``.

TFDS pulls in TensorFlow and, offline, retries DNS look-ups for minutes before
it fails, so it is imported here on demand and never at package import. With
no network, TFDS still builds MNIST from the four original ``.gz`` files placed
in ``<tfds data_dir>/downloads/manual/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

import numpy as np

from deepclust_jax.errors import DatasetError


def import_tfds() -> ModuleType | None:
  """Imports and returns ``tensorflow_datasets``, or None when not installed."""
  try:
    import tensorflow_datasets
  except ImportError:
    return None
  return tensorflow_datasets


def load_images(tfds: ModuleType, tfds_name: str, label_key: str, parts: Sequence[str],
                data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
  """Downloads (if needed) and reads whole splits of a TFDS image dataset.

  Args:
    tfds: the module returned by :func:`import_tfds`.
    tfds_name: the TFDS builder name, e.g. ``"cifar100"``.
    label_key: the feature holding the label, e.g. ``"coarse_label"``.
    parts: TFDS split names, read in this order and concatenated.
    data_dir: TFDS data directory; None is TFDS's default
      (``~/tensorflow_datasets`` or ``$TFDS_DATA_DIR``).

  Returns:
    uint8 images (N, H, W, C) and their labels.
  """
  images, labels = [], []
  for part in parts:
    try:
      arrays = tfds.as_numpy(tfds.load(tfds_name, split=part, data_dir=data_dir,
                                       batch_size=-1, download=True))
    except Exception as e:  # TFDS fails with many types (network, checksums, manual dir).
      raise DatasetError(f"TFDS could not prepare {tfds_name!r} split {part!r}: {e}") from e
    images.append(np.asarray(arrays["image"]))
    labels.append(np.asarray(arrays[label_key]))
  return np.concatenate(images), np.concatenate(labels)
