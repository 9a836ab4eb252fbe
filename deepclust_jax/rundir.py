"""The files of a run directory: read with each problem named, written atomically.

A run directory (``deepclust fit ... --out DIR``) is read by ``evaluate``,
``compare``, ``plot``, ``predict`` and the estimators; a missing, truncated or
corrupt file there is a :class:`~deepclust_jax.errors.ModelError` saying which
file and what is wrong with it, never a parser's traceback. ``fit`` holds the
directory's lock while it writes, writes each file to a temporary name and
renames it, and leaves ``failed.json`` when training stops on an error.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pathlib
import shutil
import zipfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from deepclust_jax.errors import InputError, ModelError


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


# ---- writing ---------------------------------------------------------------

LOCK_FILE = ".lock"
FAILED_FILE = "failed.json"


@contextlib.contextmanager
def lock(run_dir: str | pathlib.Path) -> Iterator[None]:
  """Holds ``run_dir`` for one writer: a second ``fit`` on it gets one line.

  An advisory ``flock`` on ``run_dir/.lock``; the kernel releases it when the
  process ends, however it ends, so no stale lock survives a ``kill -9``.

  Raises:
    InputError: another process holds the directory.
  """
  path = pathlib.Path(run_dir) / LOCK_FILE
  with open(path, "a+") as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      f.seek(0)
      holder = f.read().strip() or "unknown"
      raise InputError(f"{run_dir} is in use by another deepclust process (pid {holder}); "
                       "wait for it to end or choose another --out directory") from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


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


def record_failure(run_dir: str | pathlib.Path, error: BaseException) -> None:
  """Notes in ``run_dir`` that its fit stopped on ``error`` (for the next command)."""
  write_text(pathlib.Path(run_dir) / FAILED_FILE,
             json.dumps({"error": type(error).__name__, "message": str(error)}) + "\n")


def failure(run_dir: str | pathlib.Path) -> str | None:
  """How the last fit in ``run_dir`` failed, or None."""
  path = pathlib.Path(run_dir) / FAILED_FILE
  if not path.exists():
    return None
  try:
    record = json.loads(path.read_text())
    return f"{record['error']}: {record['message']}"
  except (OSError, ValueError, KeyError, TypeError):
    return "unknown (its failed.json is unreadable)"


def clear(run_dir: str | pathlib.Path) -> None:
  """Removes what a run wrote in ``run_dir`` (for ``--overwrite``), keeping the lock."""
  for path in pathlib.Path(run_dir).iterdir():
    if path.name == LOCK_FILE:
      continue
    if path.is_dir() and not path.is_symlink():
      shutil.rmtree(path)
    else:
      path.unlink()
