"""The run directory: its files, one reader (:func:`read`) and one writer.

A run directory (``deepclust fit ... --out DIR``) holds everything needed to
inspect or resume a run:

* ``config.json``: method, dataset, the fully resolved config and options;
* ``history.jsonl``: one line per epoch (loss terms, ACC/NMI/ARI per run);
* ``metrics.jsonl``: one line per run (seed, scores, final terms, seconds);
* ``labels.npy`` (runs x N) and ``y_true.npy``: predictions and targets;
  ``labels.npy`` is written last and marks a finished run;
* ``summary.md``: mean and std over runs, and the selected run;
* ``model.npz``: the run handed on, for :func:`load_model` and ``deepclust predict``;
* ``pretrained/run_R.npz``: methods with an autoencoder, each run's
  autoencoder as pretraining left it, which ``fit(..., pretrained=RUN_DIR)``
  starts other runs from;
* ``checkpoints/``: orbax checkpoints for ``--resume``;
* ``failed.json``: present while the last fit stopped on an error.

:func:`read` is the one reader of ``evaluate``, ``compare``, ``plot``,
``predict`` and the estimators: a missing, truncated or corrupt file is a
:class:`~deepclust_jax.errors.ModelError` saying which file and what is wrong
with it, never a parser's traceback. ``fit`` holds the directory's lock while
it writes, and writes each file to a temporary name and renames it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import json
import os
import pathlib
import shutil
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from deepclust_jax import methods
from deepclust_jax.engine import collapsed_runs, select_run
from deepclust_jax.engine.pretrained import leaves_by_path
from deepclust_jax.errors import InputError, ModelError
from deepclust_jax.metrics import evaluate
from deepclust_jax.model import Model
from deepclust_jax.storage import (read_json, read_jsonl, read_npy, save_npy, save_npz,
                                   unreadable, write_text)
from deepclust_jax.summary import SCORES, summarize

CONFIG_FILE = "config.json"
HISTORY_FILE = "history.jsonl"
METRICS_FILE = "metrics.jsonl"
MODEL_FILE = "model.npz"


def read_labels(run_dir: str | pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
  """``labels.npy`` (runs x N) and ``y_true.npy`` (N,), checked against each other."""
  run_dir = pathlib.Path(run_dir)
  labels = read_npy(run_dir / "labels.npy", ndim=2)
  y = read_npy(run_dir / "y_true.npy", ndim=1)
  if labels.shape[1] != y.shape[0]:
    raise ModelError(f"{run_dir}: labels.npy has {labels.shape[1]} samples per run, "
                     f"y_true.npy {y.shape[0]}")
  return labels, y


def read_config(run_dir: str | pathlib.Path) -> dict[str, Any]:
  """The ``config.json`` of a run directory, with its required keys."""
  path = pathlib.Path(run_dir) / CONFIG_FILE
  config = read_json(path)
  missing = [k for k in ("method", "dataset", "config", "runs", "seed")
             if not isinstance(config, dict) or k not in config]
  if missing:
    raise ModelError(f"{path} lacks {', '.join(missing)}")
  return config


def load_model(run_dir: str | pathlib.Path, method: str | None = None) -> Model:
  """The model saved in a run directory by ``fit``.

  Args:
    run_dir: a run directory holding ``config.json`` and ``model.npz``.
    method: if given, the method the run must be of.

  Raises:
    ModelError: no model, a corrupt one, one of another method, or params that
      do not fit the method described by ``config.json``.

  Example:
    >>> import tempfile
    >>> from deepclust_jax import data, pipeline
    >>> out = tempfile.mkdtemp() + "/run"
    >>> _ = pipeline.fit("kmeans", "iris", out=out, options={"progress": False})
    >>> load_model(out).predict(data.load("iris").x).shape
    (150,)
  """
  run_dir = pathlib.Path(run_dir)
  resolved = read_config(run_dir)
  name = resolved["method"]
  if method is not None and name != method:
    raise ModelError(f"{run_dir} holds a {name} model, not {method}")
  path = run_dir / MODEL_FILE
  if not path.exists():
    raise ModelError(f"{run_dir} holds no saved model ({MODEL_FILE}): the run did not "
                     "finish, or was made before models were saved")
  try:
    with np.load(path, allow_pickle=False) as saved:
      arrays = {k: saved[k] for k in saved.files}
    meta = json.loads(str(arrays.pop("meta")))
  except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
    raise unreadable(path, e) from None
  if meta.get("method") != name:
    raise ModelError(f"{path} holds a {meta.get('method')} model but {run_dir}/{CONFIG_FILE} "
                     f"describes a {name} run")
  try:
    config = methods.resolve(name, overrides=resolved["config"])
    shape = tuple(resolved["sample_shape"])
    x = jax.ShapeDtypeStruct((resolved["num_samples"], resolved["num_features"]), np.float32)
  except (KeyError, TypeError) as e:
    raise ModelError(f"{run_dir}/{CONFIG_FILE} is incomplete ({e!r})") from None
  params, state = jax.eval_shape(methods.get(name).build(config, shape).init,
                                 jax.random.key(0), {"x": x})
  expected = _arrays(params, state)
  wrong = sorted(k for k in set(expected) | set(arrays)
                 if k not in arrays or k not in expected or arrays[k].shape != expected[k].shape)
  if wrong:
    raise ModelError(f"{path} does not fit the {name} model of {run_dir}/{CONFIG_FILE} "
                     f"(differs in {', '.join(wrong[:3])}{', ...' if len(wrong) > 3 else ''})")
  leaves = [arrays[k] for k in expected]
  params, state = jax.tree.unflatten(jax.tree.structure((params, state)), leaves)
  return Model(name, config, shape, params, state, meta.get("run", 0))


def _arrays(params: Any, state: Any) -> dict[str, Any]:
  """The ``model.npz`` names of a model's leaves."""
  return {**{f"params/{k}": v for k, v in leaves_by_path(params).items()},
          **{f"state/{k}": v for k, v in leaves_by_path(state).items()}}


@dataclasses.dataclass(frozen=True)
class Run:
  """A finished run directory as :func:`read` found it.

  ``history``, ``model`` (rebuilding the method) and ``summary`` (scoring
  every run) are read or computed on first use, so that a command fails only
  on a file it needs.
  """

  path: pathlib.Path
  config: dict[str, Any]
  metrics: list[dict[str, Any]]
  labels: np.ndarray  # (runs, N)
  y_true: np.ndarray  # (N,)

  @property
  def method(self) -> str:
    return self.config["method"]

  @property
  def dataset(self) -> str:
    return self.config["dataset"]

  @functools.cached_property
  def history(self) -> list[dict[str, Any]]:
    """The epoch records of ``history.jsonl``."""
    return read_jsonl(self.path / HISTORY_FILE, keys=("phase", "terms", "global_epoch"))

  @functools.cached_property
  def model(self) -> Model:
    """The saved model (:func:`load_model`)."""
    return load_model(self.path)

  @functools.cached_property
  def summary(self) -> dict[str, Any]:
    """The fit's summary, recomputed from the saved labels and criteria."""
    scores = [evaluate(self.y_true, labels) for labels in self.labels]
    collapsed = collapsed_runs(self.labels, self.config["config"]["num_clusters"])
    select_by = self.config.get("select_by")
    criterion = None
    if select_by:
      try:
        criterion = [line["terms"][select_by] for line in self.metrics]
      except (KeyError, TypeError):
        raise ModelError(f"{self.path / METRICS_FILE} lacks the criterion "
                         f"{select_by!r} of some run") from None
    selected = select_run(criterion, collapsed) if select_by else None
    return summarize(scores, selected, select_by, collapsed, self.config.get("budget", ()),
                     criterion)


def read(path: str | pathlib.Path) -> Run:
  """The finished run in directory ``path``.

  Raises:
    ModelError: ``path`` is not a finished run directory, or one of its files
      is missing, truncated or corrupt (the message names it).

  Example:
    >>> import tempfile
    >>> from deepclust_jax import pipeline
    >>> out = tempfile.mkdtemp() + "/run"
    >>> _ = pipeline.fit("kmeans", "iris", runs=2, out=out, options={"progress": False})
    >>> run = read(out)
    >>> run.method, run.labels.shape, round(run.summary["mean"]["acc"], 2) > 0.5
    ('kmeans', (2, 150), True)
  """
  path = pathlib.Path(path)
  needed = [path / n for n in (CONFIG_FILE, "labels.npy", "y_true.npy", METRICS_FILE)]
  missing = [p.name for p in needed if not p.exists()]
  if missing:
    raise ModelError(f"{path} is not a finished run directory (no {', '.join(missing)})")
  labels, y = read_labels(path)
  metrics = read_jsonl(path / METRICS_FILE, keys=("terms", "seconds"))
  if len(metrics) != labels.shape[0]:
    raise ModelError(f"{path / METRICS_FILE} has {len(metrics)} run(s), labels.npy "
                     f"{labels.shape[0]}")
  return Run(path, read_config(path), metrics, labels, y)


def compare(paths: Sequence[str | pathlib.Path]) -> str:
  """One Markdown table of several finished runs, side by side as in the papers' tables.

  Per run directory: method, dataset, runs, mean ± std of ACC/NMI/ARI (x100),
  the selected run and its ACC, the epochs of training and its wall time (all
  runs together).

  Raises:
    ModelError: one of ``paths`` is not a finished run directory.
  """
  lines = ["| run directory | method | dataset | runs | ACC | NMI | ARI | selected run "
           "| epochs | wall time |", "|---|---|---|---|---|---|---|---|---|---|"]
  for run in map(read, paths):
    summary = run.summary
    scores = [f"{100 * summary['mean'][k]:.1f} ± {100 * summary['std'][k]:.1f}"
              for k in SCORES]
    selected = summary.get("selected")
    chosen = (f"{selected['run']} (lowest {selected['by']}): ACC {100 * selected['acc']:.1f}"
              if selected else "none")
    epochs = max((r["global_epoch"] for r in run.history), default=0)
    seconds = sum(m["seconds"] for m in run.metrics)
    lines.append(f"| {run.path} | {run.method} | {run.dataset} | {summary['runs']} | "
                 f"{' | '.join(scores)} | {chosen} | {epochs} | {seconds:.1f} s |")
  return "\n".join(lines) + "\n"


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


def write_finished(run_dir: str | pathlib.Path, resolved: dict[str, Any], labels: np.ndarray,
                   y: np.ndarray, metrics: Sequence[Mapping[str, Any]], model: Model,
                   summary_text: str) -> None:
  """Writes a finished fit's files, each atomically; ``labels.npy``, the mark of a
  finished run, after the others, and ``failed.json`` goes."""
  run_dir = pathlib.Path(run_dir)
  write_text(run_dir / METRICS_FILE, "".join(json.dumps(m) + "\n" for m in metrics))
  save_npy(run_dir / "y_true.npy", np.asarray(y))
  save_npz(run_dir / MODEL_FILE, meta=np.array(json.dumps({"method": model.method,
                                                            "run": model.run})),
           **_arrays(model.params, model.state))
  write_text(run_dir / "summary.md",
             summary_text + "\n## Config\n\n```json\n" + json.dumps(resolved, indent=2)
             + "\n```\n")
  save_npy(run_dir / "labels.npy", np.asarray(labels).astype(np.int32))
  (run_dir / FAILED_FILE).unlink(missing_ok=True)
