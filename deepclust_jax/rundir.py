"""Reading the files of a run directory, each problem named with its file in one line.

A run directory (``deepclust fit ... --out DIR``) is read by ``evaluate``,
``compare``, ``plot``, ``predict`` and the estimators; a missing, truncated or
corrupt file there is a :class:`~deepclust_jax.errors.ModelError` saying which
file and what is wrong with it, never a parser's traceback.
"""

from __future__ import annotations

import json
import pathlib
import zipfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from deepclust_jax.errors import ModelError


def _unreadable(path: pathlib.Path, e: BaseException) -> ModelError:
  if isinstance(e, FileNotFoundError):
    return ModelError(f"{path.parent} is not a finished run directory (no {path.name})")
  return ModelError(f"{path} is corrupt or unreadable ({type(e).__name__}: {e})")


def read_json(path: str | pathlib.Path) -> Any:
  """The JSON value in ``path``.

  Example:
    >>> import tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> (folder / "config.json").write_text('{"method": "cm"')
    15
    >>> read_json(folder / "config.json")
    Traceback (most recent call last):
    ...
    deepclust_jax.errors.ModelError: .../config.json is corrupt or unreadable (JSONDecodeError: ...)
  """
  path = pathlib.Path(path)
  try:
    return json.loads(path.read_text())
  except (OSError, ValueError) as e:
    raise _unreadable(path, e) from None


def read_jsonl(path: str | pathlib.Path, keys: Sequence[str] = ()) -> list[dict[str, Any]]:
  """The records of ``path``, one JSON object a line, each holding ``keys``."""
  path = pathlib.Path(path)
  try:
    lines = path.read_text().splitlines()
  except (OSError, ValueError) as e:
    raise _unreadable(path, e) from None
  records = []
  for number, line in enumerate(lines, 1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except ValueError as e:
      raise ModelError(f"{path} line {number} is corrupt ({e})") from None
    missing = [k for k in keys if not isinstance(record, dict) or k not in record]
    if missing:
      raise ModelError(f"{path} line {number} lacks {', '.join(missing)}")
    records.append(record)
  return records


def read_npy(path: str | pathlib.Path, ndim: int | None = None) -> np.ndarray:
  """The array in ``path`` (no pickles), of ``ndim`` dimensions where given."""
  path = pathlib.Path(path)
  try:
    array = np.load(path, allow_pickle=False)
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    raise _unreadable(path, e) from None
  if ndim is not None and array.ndim != ndim:
    raise ModelError(f"{path} holds an array of shape {array.shape}, expected {ndim} axes")
  return array


def read_labels(run_dir: str | pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
  """``labels.npy`` (runs x N) and ``y_true.npy`` (N,), checked against each other."""
  run_dir = pathlib.Path(run_dir)
  labels = read_npy(run_dir / "labels.npy", ndim=2)
  y = read_npy(run_dir / "y_true.npy", ndim=1)
  if labels.shape[1] != y.shape[0]:
    raise ModelError(f"{run_dir}: labels.npy has {labels.shape[1]} samples per run, "
                     f"y_true.npy {y.shape[0]}")
  return labels, y
