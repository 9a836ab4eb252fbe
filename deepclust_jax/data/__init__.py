"""Benchmark datasets for deep clustering, loaded offline and preprocessed as the papers do.

Example:
  >>> from deepclust_jax import data
  >>> ds = data.load("wine")
  >>> ds.x.shape, ds.num_classes
  ((178, 13), 3)
"""

from __future__ import annotations

from deepclust_jax.data.registry import (
    DATASETS,
    SPLITS,
    Dataset,
    DatasetSpec,
    DatasetStatus,
    describe,
    get,
    load,
    names,
)
from deepclust_jax.data.sources import ENV_VAR
from deepclust_jax.errors import DatasetError

__all__ = [
    "DATASETS",
    "ENV_VAR",
    "SPLITS",
    "Dataset",
    "DatasetSpec",
    "DatasetError",
    "DatasetStatus",
    "describe",
    "get",
    "load",
    "names",
]
