"""A run directory's pretrained autoencoders: one ``.npz`` per run.

``pretrained/run_R.npz`` holds run R's autoencoder parameters (the method's
``Method.autoencoder`` group) as they were when its pretraining phases ended,
one array per leaf, named by its path. Each file is written to a temporary
name and renamed, so a crash leaves a whole file or none. A directory that
holds a single one (``run_0.npz``) starts every run of a later one: its runs
then share the autoencoder and differ from the mixture start on.
"""

from __future__ import annotations

import pathlib
import zipfile
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from deepclust_jax import storage
from deepclust_jax.errors import InputError

DIRECTORY = "pretrained"


def path(run_dir: str | pathlib.Path, run: int) -> pathlib.Path:
  return pathlib.Path(run_dir) / DIRECTORY / f"run_{run}.npz"


def leaves_by_path(tree: Any) -> dict[str, Any]:
  """``{"cm/encoder/kernel": leaf, ...}``: the leaves of ``tree`` named by path, in order.

  The names of the arrays of every ``.npz`` a run directory holds.
  """
  return {jax.tree_util.keystr(path, simple=True, separator="/"): leaf
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def save(run_dir: str | pathlib.Path, runs: Sequence[int], tree: Any) -> None:
  """Writes ``tree`` (leaves with a leading axis over ``runs``) one file per run."""
  leaves = [(name, np.asarray(leaf)) for name, leaf in leaves_by_path(tree).items()]
  for i, run in enumerate(runs):
    target = path(run_dir, run)
    target.parent.mkdir(parents=True, exist_ok=True)
    storage.save_npz(target, **{name: leaf[i] for name, leaf in leaves})


def saved_runs(run_dir: str | pathlib.Path) -> list[int]:
  """The runs whose autoencoder ``run_dir`` holds, in order."""
  folder = pathlib.Path(run_dir) / DIRECTORY
  names = (f.stem.removeprefix("run_") for f in folder.glob("run_*.npz"))
  return sorted(int(name) for name in names if name.isdigit())


def load(run_dir: str | pathlib.Path, runs: Sequence[int], like: Any) -> Any:
  """Runs ``runs``'s saved trees, stacked, in the structure, shapes and dtypes of ``like``.

  ``like`` is one run's tree (arrays or shape/dtype structs). Where
  ``run_dir`` holds run 0's tree alone, every run gets it.

  Raises:
    InputError: a file is missing, unreadable, or holds other leaves or shapes.
  """
  expected = leaves_by_path(like)
  shared = saved_runs(run_dir) == [0]
  per_run = []
  for run in runs:
    file = path(run_dir, 0 if shared else run)
    if not file.exists():
      raise InputError(f"{run_dir} has no pretrained autoencoder for run {run} ({file} is "
                       "missing: its pretraining did not finish, or it has fewer runs)")
    try:
      with np.load(file) as saved:
        arrays = dict(saved)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
      raise InputError(f"{file} is not a readable pretrained autoencoder ({e})") from None
    leaves = []
    for name, leaf in expected.items():
      if name not in arrays or arrays[name].shape != tuple(leaf.shape):
        found = arrays[name].shape if name in arrays else "nothing"
        raise InputError(f"{file} does not fit this model: {name} should be "
                         f"{tuple(leaf.shape)}, found {found}")
      leaves.append(arrays[name].astype(leaf.dtype))
    per_run.append(leaves)
  stacked = [np.stack(column) for column in zip(*per_run)]
  return jax.tree.unflatten(jax.tree.structure(like), stacked)
