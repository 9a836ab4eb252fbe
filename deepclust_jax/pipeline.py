"""Dataset + method + engine + run directory: what ``deepclust fit`` does.

:func:`fit` resolves the config, checks the data and a ``pretrained`` source,
trains, summarises (:mod:`deepclust_jax.summary`) and writes the run
directory (:mod:`deepclust_jax.rundir`, which also reads it back).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from deepclust_jax import data as data_lib
from deepclust_jax import methods, rundir, storage
from deepclust_jax.engine import Method, TrainOptions, TrainResult, budget, train, writes
from deepclust_jax.engine import pretrained as pretrained_lib
from deepclust_jax.errors import DeepclustError, InputError
from deepclust_jax.model import Model
from deepclust_jax.summary import format_summary, summarize, with_trained
from deepclust_jax.validation import check_data


@dataclasses.dataclass
class FitReport:
  """A finished ``fit``: its config, the engine's result and the summary.

  ``model`` is the run handed on (:func:`~deepclust_jax.model.chosen_run`), ready to predict:
  ``report.model.predict(x)``.
  """

  method: str
  dataset: str
  config: Any
  result: TrainResult
  summary: dict[str, Any]
  run_dir: pathlib.Path | None
  model: Model


def default_run_dir(method: str, dataset: str) -> pathlib.Path:
  stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
  return pathlib.Path("runs") / f"{method}-{dataset}-{stamp}"


def fit(
    method: str,
    dataset: str | data_lib.Dataset,
    *,
    runs: int = 1,
    seed: int = 0,
    epochs: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    data_dir: str | None = None,
    out: str | pathlib.Path | None = None,
    resume: bool = False,
    options: Mapping[str, Any] | None = None,
    pretrained: str | pathlib.Path | None = None,
    overwrite: bool = False,
    download: bool = False,
) -> FitReport:
  """Trains ``runs`` runs of ``method`` on ``dataset`` and summarises them.

  Args:
    method: registry name (``deepclust_jax.methods.names()``).
    dataset: registry name or an already loaded :class:`~deepclust_jax.data.Dataset`.
    runs, seed: independent runs, trained together; run r uses fold_in(seed, r).
    epochs: overrides the config's ``epochs``.
    overrides: config values (strings are parsed as on the command line).
    data_dir: where dataset files are looked up first.
    out: run directory; ``None`` keeps everything in memory.
    resume: continue the run in ``out`` from its last checkpoint.
    options: extra :class:`~deepclust_jax.engine.TrainOptions` fields
      (chunk_runs, shared_order, checkpoint_every, eval_every, progress, mesh).
    pretrained: a run directory of an autoencoder method on the same data
      whose pretrained autoencoders (run r for run r; a source of one run
      for every run) replace this method's pretraining; refused unless its
      dataset, data and network agree.
    overwrite: replace whatever run ``out`` holds (finished, failed or another
      config's) by this one.
    download: fetch a missing dataset (``data.load(..., download=True)``).

  Example:
    >>> report = fit("kmeans", "iris", runs=2, options={"progress": False})
    >>> sorted(report.summary["mean"])
    ['acc', 'ari', 'nmi']
  """
  ds = dataset if isinstance(dataset, data_lib.Dataset) else data_lib.load(
      dataset, data_dir=data_dir, download=download)
  overrides = dict(overrides or {})
  if epochs is not None:
    overrides["epochs"] = epochs
  config = methods.resolve(method, dataset=ds.name, num_classes=ds.num_classes,
                           overrides=overrides, num_samples=ds.x.shape[0],
                           shape=ds.sample_shape)
  if runs < 1:
    raise InputError(f"runs={runs} must be at least 1")
  model = methods.get(method).build(config, ds.sample_shape)
  train_options = TrainOptions(runs=runs, seed=seed, **dict(options or {}))
  run_dir = pathlib.Path(out) if out is not None else None
  resolved = {
      "method": method, "dataset": ds.name, "num_samples": int(ds.x.shape[0]),
      "num_features": int(ds.x.shape[1]), "sample_shape": list(ds.sample_shape),
      "runs": runs, "seed": seed, "select_by": model.select_by,
      "config": dataclasses.asdict(config), "budget": budget(model, ds.x.shape[0]),
      "options": {k: v for k, v in dataclasses.asdict(train_options).items()
                  if k not in ("mesh", "progress")},
  }
  if model.autoencoder is not None:
    resolved |= {"network": config.network(), "data_sha256": data_digest(ds.x)}
  if pretrained is not None:
    resolved["pretrained"] = check_pretrained(
        pretrained, model, method=method, runs=runs, network=resolved.get("network"),
        data_sha256=resolved.get("data_sha256"), dataset=ds.name)
    n_pre = model.pretrain_phases
    skipped = {phase.name for phase in model.phases[:n_pre]}
    resolved["budget"] = [{**b, "from": str(pretrained)} if b["phase"] in skipped else b
                          for b in resolved["budget"]]
  # As written to and read back from JSON (tuples become lists), so that a
  # resumed run compares equal to the saved config and checkpoint fingerprint.
  resolved = json.loads(json.dumps(resolved))
  # Bad data or K is refused before the run directory is created, so the same
  # --out can be used again once the command is corrected.
  check_data(ds.x, config.num_clusters)
  if resume and overwrite:
    raise InputError("--resume continues a run and --overwrite replaces it: pass one")
  if run_dir is not None:
    try:
      run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
      raise InputError(f"cannot create run directory {run_dir}: {e}") from e
  # One writer per run directory; the lock goes with the process, however it ends.
  # Across processes (jax.distributed), process 0 is that writer; the others
  # share only the checkpoints, which orbax writes collectively.
  writer = writes(run_dir)
  with rundir.lock(run_dir) if writer else contextlib.nullcontext():
    if writer:
      if overwrite:
        rundir.clear(run_dir)
      _check_resumable(run_dir, resolved, resume, config_defaults(config))
    if resume:
      # Every process trains under the config the checkpoints were made with.
      resolved["config"] = _saved_config(run_dir) or resolved["config"]
    if writer:
      storage.write_text(run_dir / "config.json", json.dumps(resolved, indent=2) + "\n")
    try:
      result = train(model, ds.x, ds.y, options=train_options, run_dir=run_dir,
                     resume=resume, fingerprint={"config": resolved["config"],
                                                 "dataset": ds.name},
                     pretrained=pretrained)
    except BaseException as e:  # NaN, an error, Ctrl-C: said to the next command
      if writer:
        rundir.record_failure(run_dir, e)
      raise
    criterion = (np.asarray(result.terms[model.select_by])
                 if model.select_by in (result.terms or {}) else None)
    summary = summarize(result.metrics, result.selected, model.select_by, result.collapsed,
                        with_trained(resolved["budget"], result.epochs), criterion)
    if result.cut_short:
      summary["cut_short"] = True
    if result.unfitted:
      summary["unfitted"] = result.unfitted
    if result.warnings:
      summary["warnings"] = result.warnings
    if pretrained is not None:
      summary["pretrained"] = resolved["pretrained"]
    trained = Model.from_result(method, config, ds.sample_shape, result)
    if writer:
      metrics = [{"run": r, "seed": seed, "key": f"fold_in(key({seed}), {r})",
                  **(result.metrics[r] if result.metrics else {}),
                  "terms": {k: float(v[r]) for k, v in result.terms.items()},
                  "seconds": float(result.seconds[r])} for r in range(runs)]
      rundir.write_finished(run_dir, resolved, result.labels, ds.y, metrics, trained,
                            format_summary(summary, f"# {method} on {ds.name}"))
  return FitReport(method, ds.name, config, result, summary, run_dir, trained)


def data_digest(x: np.ndarray) -> str:
  """SHA-256 of the data as the method sees it (shape, dtype and values)."""
  x = np.ascontiguousarray(x)
  digest = hashlib.sha256(f"{x.shape}{x.dtype}".encode())
  digest.update(memoryview(x).cast("B"))
  return digest.hexdigest()


def check_pretrained(source: str | pathlib.Path, model: Method, *, method: str, runs: int,
                     network: Any, data_sha256: str | None, dataset: str | None = None
                     ) -> dict[str, Any]:
  """What run directory ``source`` pretrained, after checking it can start ``runs``
  runs of ``model`` (registered as ``method``) on the data of digest ``data_sha256``.

  ``dataset`` (None: not checked, as for the estimators) must be the source's.

  Raises:
    InputError: one line naming what is missing or what differs.
  """
  source = pathlib.Path(source)
  if model.autoencoder is None:
    raise InputError(f"--pretrained: method {method!r} has no autoencoder "
                     "to start from a pretrained one")
  try:
    saved = rundir.read_config(source)
  except DeepclustError as e:
    raise InputError(f"--pretrained {source}: not a readable run directory ({e})") from None
  if "network" not in saved:
    raise InputError(f"--pretrained {source}: that run trains no autoencoder to start from")
  ours = {"dataset": dataset, "data_sha256": data_sha256,
          "network": json.loads(json.dumps(network))}
  for key, what in (("dataset", "dataset"), ("data_sha256", "data (preprocessing)"),
                    ("network", "network")):
    if ours[key] is not None and saved.get(key) != ours[key]:
      raise InputError(f"--pretrained {source}: its {what} differs from this run's "
                       f"(it has {saved.get(key)}, this run {ours[key]})")
  if 1 < saved["runs"] < runs:
    raise InputError(f"--pretrained {source}: it has {saved['runs']} runs, this run "
                     f"needs {runs} (or a source of one run, which every run shares)")
  missing = sorted(set(range(saved["runs"])) - set(pretrained_lib.saved_runs(source)))
  if missing:
    raise InputError(f"--pretrained {source}: it holds no autoencoder of run(s) "
                     f"{', '.join(map(str, missing))} (its pretraining did not finish, "
                     "or the files were removed)")
  config = saved["config"]
  return {"run_dir": str(source), "method": saved["method"], "seed": saved["seed"],
          "recipe": config.get("recipe"), "pretrain_epochs": config.get("pretrain_epochs"),
          **({"shared": True} if saved["runs"] == 1 and runs > 1 else {})}


def config_defaults(config) -> dict:
  """The default of each key of ``config``'s dataclass, as JSON reads it back."""
  defaults = {f.name: f.default for f in dataclasses.fields(config)
              if f.default is not dataclasses.MISSING}
  return json.loads(json.dumps(defaults))


def _saved_config(run_dir: pathlib.Path | None) -> dict | None:
  """The method config saved in ``run_dir`` (None: no run there yet).

  A resumed run goes on under it, not under the command's: they can differ by
  keys added to the library since, at their defaults (see ``_check_resumable``),
  and the checkpoints' fingerprint holds the saved one.
  """
  if run_dir is None or not (run_dir / "config.json").exists():
    return None
  return rundir.read_config(run_dir).get("config")


def _check_resumable(run_dir: pathlib.Path, resolved: dict, resume: bool,
                     defaults: dict) -> None:
  """Refuses a run directory this command cannot continue.

  A config key added to the library after the run was made is absent from its
  saved config; at its default (which keeps the behaviour the run had) it is
  no difference.
  """
  config_path = run_dir / "config.json"
  if not config_path.exists():
    return
  failed = rundir.failure(run_dir)
  if not resume:
    if failed is not None:
      state = f"a run that failed ({failed})"
    elif (run_dir / "labels.npy").exists():
      state = "a finished run"
    else:
      state = "an unfinished run (interrupted)"
    raise InputError(f"{run_dir} holds {state}; pass --resume to continue it from its "
                     "last checkpoint, --overwrite to replace it, or choose another --out")
  try:
    saved = rundir.read_config(run_dir)
  except DeepclustError as e:
    raise InputError(f"cannot resume {run_dir}: {e}; pass --overwrite to replace "
                     "the run") from None
  saved_config = saved.get("config")
  if isinstance(saved_config, dict):
    saved = {**saved, "config": {**defaults, **saved_config}}
  keys = ("method", "dataset", "runs", "seed", "config", "pretrained")
  diff = [k for k in keys if saved.get(k) != resolved.get(k)]
  if diff:
    raise InputError(f"cannot resume {run_dir}: its {' and '.join(diff)} "
                     f"{'differs' if len(diff) == 1 else 'differ'} from this command's; "
                     "pass --overwrite to replace it")
