"""Files read with each problem named, and written atomically.

The primitives under the run directory (:mod:`deepclust_jax.rundir`) and the
engine's checkpoint side files: a missing, truncated or corrupt file is a
:class:`~deepclust_jax.errors.ModelError` naming the file and the problem,
never a parser's traceback; a write goes to a temporary name and is renamed,
so a reader sees the old file or the new one.
"""

from __future__ import annotations

import json
import os
import pathlib
import zipfile
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from deepclust_jax.errors import ModelError


def unreadable(path: pathlib.Path, e: BaseException) -> ModelError:
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
    raise unreadable(path, e) from None


def read_jsonl(path: str | pathlib.Path, keys: Sequence[str] = ()) -> list[dict[str, Any]]:
  """The records of ``path``, one JSON object a line, each holding ``keys``."""
  path = pathlib.Path(path)
  try:
    lines = path.read_text().splitlines()
  except (OSError, ValueError) as e:
    raise unreadable(path, e) from None
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
    raise unreadable(path, e) from None
  if ndim is not None and array.ndim != ndim:
    raise ModelError(f"{path} holds an array of shape {array.shape}, expected {ndim} axes")
  return array


def _atomic(path: pathlib.Path, write: Callable[[pathlib.Path], None]) -> None:
  """``write(tmp)`` then rename over ``path``: a reader sees the old file or the new."""
  tmp = path.with_name(f".{path.name}.tmp")
  write(tmp)
  os.replace(tmp, path)


def write_text(path: str | pathlib.Path, text: str) -> None:
  """Writes ``text`` to ``path`` atomically."""
  _atomic(pathlib.Path(path), lambda tmp: tmp.write_text(text))


def save_npy(path: str | pathlib.Path, array: np.ndarray) -> None:
  """Writes ``array`` to the ``.npy`` file ``path`` atomically."""
  def write(tmp: pathlib.Path) -> None:
    with open(tmp, "wb") as f:
      np.save(f, array)
  _atomic(pathlib.Path(path), write)


def save_npz(path: str | pathlib.Path, **arrays: np.ndarray) -> None:
  """Writes ``arrays`` to the ``.npz`` file ``path`` atomically."""
  def write(tmp: pathlib.Path) -> None:
    with open(tmp, "wb") as f:
      np.savez(f, **arrays)
  _atomic(pathlib.Path(path), write)
