"""Dataset + method + engine + run directory: what ``deepclust fit`` does.

A run directory holds everything needed to inspect or resume a run:

* ``config.json``: method, dataset, the fully resolved config and options;
* ``history.jsonl``: one line per epoch (loss terms, ACC/NMI/ARI per run);
* ``metrics.jsonl``: one line per run (seed, scores, final terms, seconds);
* ``labels.npy`` (runs x N) and ``y_true.npy``: predictions and targets;
* ``summary.md``: mean and std over runs, and the selected run;
* ``model.npz``: the selected run's params and state, for :func:`load` and
  ``deepclust predict``;
* ``pretrained/run_R.npz``: methods with an autoencoder, each run's
  autoencoder as pretraining left it (or as ``pretrained=`` gave it), which
  ``fit(..., pretrained=RUN_DIR)`` starts other runs from;
* ``checkpoints/``: orbax checkpoints for ``--resume``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import math
import pathlib
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
import scipy.stats

from deepclust_jax import data as data_lib
from deepclust_jax import methods, rundir
from deepclust_jax.engine import (Method, TrainOptions, TrainResult, budget, collapsed_runs,
                                  predict_in_chunks, select_run, train)
from deepclust_jax.engine.pretrained import leaves_by_path
from deepclust_jax.errors import DeepclustError, InputError, ModelError
from deepclust_jax.metrics import evaluate
from deepclust_jax.validation import check_data

SCORES = ("acc", "nmi", "ari")


@dataclasses.dataclass
class FitReport:
  """A finished ``fit``: its config, the engine's result and the summary.

  ``model`` is the run handed on (:func:`chosen_run`), ready to predict:
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
      whose pretrained autoencoders (run r for run r) replace this method's
      pretraining; refused unless its dataset, data and network agree.
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
  with rundir.lock(run_dir) if run_dir is not None else contextlib.nullcontext():
    if run_dir is not None:
      if overwrite:
        rundir.clear(run_dir)
      _check_resumable(run_dir, resolved, resume)
      rundir.write_text(run_dir / "config.json", json.dumps(resolved, indent=2) + "\n")
    try:
      result = train(model, ds.x, ds.y, options=train_options, run_dir=run_dir,
                     resume=resume, fingerprint={"config": resolved["config"],
                                                 "dataset": ds.name},
                     pretrained=pretrained)
    except BaseException as e:  # NaN, an error, Ctrl-C: said to the next command
      if run_dir is not None:
        rundir.record_failure(run_dir, e)
      raise
    criterion = (np.asarray(result.terms[model.select_by])
                 if model.select_by in (result.terms or {}) else None)
    summary = summarize(result.metrics, result.selected, model.select_by, result.collapsed,
                        with_trained(resolved["budget"], result.epochs), criterion)
    if result.cut_short:
      summary["cut_short"] = True
    if result.warnings:
      summary["warnings"] = result.warnings
    if pretrained is not None:
      summary["pretrained"] = resolved["pretrained"]
    trained = Model.from_result(method, config, ds.sample_shape, result)
    if run_dir is not None:
      _write_run_dir(run_dir, resolved, result, ds.y, summary, trained)
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
    saved = json.loads((source / "config.json").read_text())
  except (OSError, ValueError) as e:
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
  if saved["runs"] < runs:
    raise InputError(f"--pretrained {source}: it has {saved['runs']} run(s), this run "
                     f"needs {runs}")
  config = saved["config"]
  return {"run_dir": str(source), "method": saved["method"], "seed": saved["seed"],
          "recipe": config.get("recipe"), "pretrain_epochs": config.get("pretrain_epochs")}


def _check_resumable(run_dir: pathlib.Path, resolved: dict, resume: bool) -> None:
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
    saved = json.loads(config_path.read_text())
  except (OSError, ValueError) as e:
    raise InputError(f"cannot resume {run_dir}: its config.json is unreadable ({e}); "
                     "pass --overwrite to replace the run") from None
  keys = ("method", "dataset", "runs", "seed", "config", "pretrained")
  diff = [k for k in keys if saved.get(k) != resolved.get(k)]
  if diff:
    raise InputError(f"cannot resume {run_dir}: its {' and '.join(diff)} "
                     f"{'differs' if len(diff) == 1 else 'differ'} from this command's; "
                     "pass --overwrite to replace it")


def with_trained(plan: Sequence[Mapping[str, Any]],
                 epochs: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
  """``engine.budget``'s plan with the epochs the runs trained, where they stopped early."""
  out = []
  for phase in plan:
    if "from" in phase:  # pretrained elsewhere
      out.append(dict(phase))
      continue
    trained = np.asarray(epochs[phase["phase"]])
    extra = ({"trained": [int(trained.min()), float(trained.mean()), int(trained.max())]}
             if (trained < phase["epochs"]).any() else {})
    out.append({**phase, **extra})
  return out


def summarize(scores: Sequence[Mapping[str, float]] | None, selected: int | None,
              select_by: str | None = None, collapsed: Sequence[int] = (),
              budget: Sequence[Mapping[str, Any]] = (),
              criterion: Sequence[float] | None = None) -> dict[str, Any]:
  """Mean and std over runs of each score, the selected run, the collapsed runs.

  ``budget`` (each SGD phase's epochs and steps, see
  :func:`~deepclust_jax.engine.budget`) is kept as it is, scores or not.
  With each run's ``criterion`` (the selection's, lower is better) and at
  least 3 runs that did not collapse, ``selected["spearman_acc"]`` is
  Spearman's rank correlation of minus the criterion with ACC over those
  runs: 1 when the criterion ranks the runs as ACC does, so that selecting
  by it picks the best run; near 0 when it says nothing about ACC.
  """
  summary: dict[str, Any] = {"budget": list(budget)} if budget else {}
  if not scores:
    return summary
  table = {k: np.array([s[k] for s in scores]) for k in SCORES}
  summary |= {"runs": len(scores),
             "mean": {k: float(v.mean()) for k, v in table.items()},
             "std": {k: float(v.std()) for k, v in table.items()},
             "collapsed": [int(r) for r in collapsed]}
  if selected is not None:
    summary["selected"] = {"run": selected, "by": select_by,
                           **{k: float(table[k][selected]) for k in SCORES}}
    kept = np.setdiff1d(np.arange(len(scores)), np.asarray(collapsed, int))
    if criterion is not None and len(kept) >= 3:
      rho = scipy.stats.spearmanr(-np.asarray(criterion, float)[kept], table["acc"][kept])[0]
      summary["selected"]["spearman_acc"] = None if np.isnan(rho) else float(rho)
  return summary


def format_budget(budget: Sequence[Mapping[str, Any]]) -> str:
  """One line per SGD phase: epochs x steps of a batch, and where runs stopped early."""
  lines = []
  for b in budget:
    if "from" in b:
      lines.append(f"- {b['phase']}: pretrained in {b['from']}")
      continue
    line = (f"- {b['phase']}: {b['epochs']} epochs x {b['steps_per_epoch']} steps of "
            f"{b['batch_size']} = {b['steps']} steps")
    if "batch_size_asked" in b:
      line += f" (batch_size {b['batch_size_asked']} asked, more than the N samples)"
    if "trained" in b:
      low, mean, high = b["trained"]
      line += f"; runs trained {low} to {high} of them (mean {mean:.1f})"
    lines.append(line)
  return "\n".join(lines)


def format_summary(summary: Mapping[str, Any], title: str = "") -> str:
  """A Markdown table of ``summarize``'s output, scores x100 as in the papers."""
  budget = (f"\nBudget:\n{format_budget(summary['budget'])}\n"
            if summary.get("budget") else "")
  if summary.get("pretrained"):
    source = summary["pretrained"]
    budget += (f"\nStarted from the pretrained autoencoders of {source['run_dir']} "
               f"({source['method']}, recipe {source['recipe']}, "
               f"{source['pretrain_epochs']} epochs, seed {source['seed']}).\n")
  if summary.get("cut_short"):
    budget += ("\nCut short by the time limit: scores are of the epochs trained "
               "(above); --resume continues from the last checkpoint.\n")
  if summary.get("warnings"):
    budget += "\nWarnings:\n" + "".join(f"- {line}\n" for line in summary["warnings"])
  if "mean" not in summary:
    return f"{title}\n(no labels: nothing to score)\n{budget}"
  lines = [title, "", "| | ACC | NMI | ARI |", "|---|---|---|---|"]
  row = " | ".join(f"{100 * summary['mean'][k]:.1f} ± {100 * summary['std'][k]:.1f}"
                   for k in SCORES)
  lines.append(f"| mean ± std over {summary['runs']} run(s) | {row} |")
  if "selected" in summary:
    sel = summary["selected"]
    row = " | ".join(f"{100 * sel[k]:.1f}" for k in SCORES)
    lines.append(f"| selected run {sel['run']} (lowest {sel['by']}) | {row} |")
    if sel.get("spearman_acc") is not None:
      lines += ["", f"Rank correlation of -{sel['by']} with ACC over the runs that did "
                    f"not collapse (Spearman): {sel['spearman_acc']:+.2f}"]
  collapsed = summary.get("collapsed", [])
  if collapsed:
    lines += ["", f"{len(collapsed)} run(s) collapsed (a cluster left empty), never "
                  f"selected unless all did: {collapsed}"]
  return "\n".join(lines) + "\n" + budget


def _write_run_dir(run_dir: pathlib.Path, resolved: dict, result: TrainResult,
                   y: np.ndarray, summary: dict, model: Model) -> None:
  # Each file atomically; labels.npy, which marks a finished run, after the model.
  lines = [{"run": r, "seed": resolved["seed"],
            "key": f"fold_in(key({resolved['seed']}), {r})",
            **(result.metrics[r] if result.metrics else {}),
            "terms": {k: float(v[r]) for k, v in result.terms.items()},
            "seconds": float(result.seconds[r])} for r in range(result.labels.shape[0])]
  rundir.write_text(run_dir / "metrics.jsonl", "".join(json.dumps(l) + "\n" for l in lines))
  rundir.save_npy(run_dir / "y_true.npy", np.asarray(y))
  model.save(run_dir / MODEL_FILE)
  title = f"# {resolved['method']} on {resolved['dataset']}"
  text = format_summary(summary, title)
  text += "\n## Config\n\n```json\n" + json.dumps(resolved, indent=2) + "\n```\n"
  rundir.write_text(run_dir / "summary.md", text)
  rundir.save_npy(run_dir / "labels.npy", result.labels.astype(np.int32))
  (run_dir / rundir.FAILED_FILE).unlink(missing_ok=True)


def evaluate_run_dir(run_dir: str | pathlib.Path) -> dict[str, Any]:
  """Recomputes the summary of a finished run from its saved labels.

  Raises:
    DeepclustError: the directory is not a finished run.
  """
  run_dir = pathlib.Path(run_dir)
  needed = [run_dir / n for n in ("labels.npy", "y_true.npy", "metrics.jsonl")]
  missing = [str(p) for p in needed if not p.exists()]
  if missing:
    raise DeepclustError(f"{run_dir} is not a finished run directory (missing "
                         f"{', '.join(missing)})")
  labels, y = rundir.read_labels(run_dir)
  lines = rundir.read_jsonl(needed[2], keys=("terms",))
  config = read_config(run_dir)
  num_clusters = config["config"]["num_clusters"]
  scores = [evaluate(y, l) for l in labels]
  collapsed = collapsed_runs(labels, num_clusters)
  select_by = config.get("select_by")
  criterion = [line["terms"][select_by] for line in lines] if select_by else None
  selected = select_run(criterion, collapsed) if select_by else None
  return summarize(scores, selected, select_by, collapsed, config.get("budget", ()), criterion)


MODEL_FILE = "model.npz"


def chosen_run(result: TrainResult) -> int:
  """The run a fit hands on: the selected one, else the first that did not collapse.

  Methods without a selection criterion (k-means) have no selected run; the
  first run whose partition fills every cluster stands for them.
  """
  if result.selected is not None:
    return result.selected
  return select_run(np.zeros(result.labels.shape[0]), result.collapsed)


class Model:
  """One trained run of a method, ready to cluster new data.

  The method is rebuilt from its registry name and config; ``params`` and
  ``state`` are numpy pytrees, so a Model pickles and saves without any JAX
  object. The compiled functions are made on first use.

  Example:
    >>> report = fit("kmeans", "iris", options={"progress": False})
    >>> report.model.predict(data_lib.load("iris").x[:4]).shape
    (4,)
  """

  def __init__(self, method: str, config: Any, sample_shape: Sequence[int], params: Any,
               state: Any, run: int = 0):
    self.method = method
    self.config = config
    self.sample_shape = tuple(int(s) for s in sample_shape)
    self.params, self.state = jax.device_get((params, state))
    self.run = run
    self._compiled: dict[str, Any] = {}

  @classmethod
  def from_result(cls, method: str, config: Any, sample_shape: Sequence[int],
                  result: TrainResult) -> Model:
    """The :func:`chosen_run` of a training result."""
    run = chosen_run(result)
    params, state = jax.tree.map(lambda a: np.asarray(a)[run], (result.params, result.state))
    return cls(method, config, sample_shape, params, state, run)

  def __getstate__(self) -> dict[str, Any]:
    return {k: v for k, v in self.__dict__.items() if k != "_compiled"}

  def __setstate__(self, saved: dict[str, Any]) -> None:
    self.__dict__.update(saved, _compiled={})

  @property
  def built(self) -> Method:
    """The method's pure pieces (rebuilt, then cached)."""
    if "method" not in self._compiled:
      self._compiled["method"] = methods.get(self.method).build(self.config, self.sample_shape)
    return self._compiled["method"]

  def _rowwise(self, name: str, x: Any) -> np.ndarray:
    """``built.<name>(params, state, x)`` in chunks, compiled once per model."""
    if name not in self._compiled:
      fn = getattr(self.built, name)
      self._compiled[name] = jax.jit(
          lambda params, state, x: predict_in_chunks(fn, params, state, x))
    return np.asarray(self._compiled[name](self.params, self.state, self.check(x)))

  def check(self, x: Any) -> np.ndarray:
    """``x`` checked like training data, and for the width the model was trained on."""
    x = check_data(x)
    width = math.prod(self.sample_shape)
    if x.shape[1] != width:
      raise InputError(f"X has {x.shape[1]} features, but {self.method} is expecting "
                       f"{width} features as input")
    return x

  def predict_proba(self, x: Any) -> np.ndarray:
    """Responsibilities gamma, (n, K), of the rows of ``x``."""
    return self._rowwise("predict", x)

  def predict(self, x: Any) -> np.ndarray:
    """Cluster labels ``argmax gamma``, (n,)."""
    return self.predict_proba(x).argmax(-1)

  @property
  def has_codes(self) -> bool:
    return self.built.encode is not None

  def transform(self, x: Any) -> np.ndarray:
    """The codes z, (n, p), of methods that cluster a learned representation."""
    if not self.has_codes:
      raise ModelError(f"method {self.method!r} has no codes to transform into")
    return self._rowwise("encode", x)

  def decoded_centroids(self) -> np.ndarray | None:
    """The K centres in input space, (K, D), or None if the method has none."""
    fn = self.built.decoded_centroids
    return None if fn is None else np.asarray(jax.jit(fn)(self.params, self.state))

  def save(self, path: str | pathlib.Path) -> None:
    """Writes params, state and which method and run they are to an ``.npz`` file."""
    meta = {"method": self.method, "run": self.run}
    arrays = {**{f"params/{k}": v for k, v in leaves_by_path(self.params).items()},
              **{f"state/{k}": v for k, v in leaves_by_path(self.state).items()}}
    rundir.save_npz(path, meta=np.array(json.dumps(meta)), **arrays)


def read_config(run_dir: str | pathlib.Path) -> dict[str, Any]:
  """The ``config.json`` of a run directory, or :class:`ModelError` saying why not."""
  config = rundir.read_json(pathlib.Path(run_dir) / "config.json")
  missing = [k for k in ("method", "dataset", "config") if k not in config]
  if missing:
    raise ModelError(f"{pathlib.Path(run_dir) / 'config.json'} lacks {', '.join(missing)}")
  return config


def load(run_dir: str | pathlib.Path, method: str | None = None) -> Model:
  """The model saved in a run directory by :func:`fit`.

  Args:
    run_dir: a run directory holding ``config.json`` and ``model.npz``.
    method: if given, the method the run must be of.

  Raises:
    ModelError: no model, a corrupt one, one of another method, or params that
      do not fit the method described by ``config.json``.

  Example:
    >>> import tempfile
    >>> out = tempfile.mkdtemp() + "/run"
    >>> _ = fit("kmeans", "iris", out=out, options={"progress": False})
    >>> load(out).predict(data_lib.load("iris").x).shape
    (150,)
  """
  run_dir = pathlib.Path(run_dir)
  resolved = read_config(run_dir)
  name = resolved.get("method")
  if method is not None and name != method:
    raise ModelError(f"{run_dir} holds a {name} model, not {method}")
  path = run_dir / MODEL_FILE
  if not path.exists():
    raise ModelError(f"{run_dir} holds no saved model ({MODEL_FILE}): the run did not "
                     "finish, or was made before models were saved")
  try:
    with np.load(path) as saved:
      arrays = {k: saved[k] for k in saved.files}
    meta = json.loads(str(arrays.pop("meta")))
  except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
    raise ModelError(f"{path} is corrupt or unreadable ({type(e).__name__}: {e})") from None
  if meta.get("method") != name:
    raise ModelError(f"{path} holds a {meta.get('method')} model but {run_dir}/config.json "
                     f"describes a {name} run")
  try:
    config = methods.resolve(name, overrides=resolved["config"])
    shape = tuple(resolved["sample_shape"])
    x = jax.ShapeDtypeStruct((resolved["num_samples"], resolved["num_features"]), np.float32)
  except (KeyError, TypeError) as e:
    raise ModelError(f"{run_dir}/config.json is incomplete ({e!r})") from None
  params, state = jax.eval_shape(methods.get(name).build(config, shape).init,
                                 jax.random.key(0), {"x": x})
  expected = {**{f"params/{k}": v for k, v in leaves_by_path(params).items()},
              **{f"state/{k}": v for k, v in leaves_by_path(state).items()}}
  wrong = sorted(k for k in set(expected) | set(arrays)
                 if k not in arrays or k not in expected or arrays[k].shape != expected[k].shape)
  if wrong:
    raise ModelError(f"{path} does not fit the {name} model of {run_dir}/config.json "
                     f"(differs in {', '.join(wrong[:3])}{', ...' if len(wrong) > 3 else ''})")
  leaves = [arrays[k] for k in expected]
  params, state = jax.tree.unflatten(jax.tree.structure((params, state)), leaves)
  return Model(name, config, shape, params, state, meta.get("run", 0))


def compare(run_dirs: Sequence[str | pathlib.Path]) -> str:
  """One Markdown table of several finished runs, side by side as in the papers' tables.

  Per run directory: method, dataset, runs, mean ± std of ACC/NMI/ARI (x100),
  the selected run and its ACC, the epochs of training and its wall time (all
  runs together).

  Raises:
    DeepclustError: one of ``run_dirs`` is not a finished run directory.
  """
  lines = ["| run directory | method | dataset | runs | ACC | NMI | ARI | selected run "
           "| epochs | wall time |", "|---|---|---|---|---|---|---|---|---|---|"]
  for run_dir in map(pathlib.Path, run_dirs):
    summary = evaluate_run_dir(run_dir)
    config = read_config(run_dir)
    history = rundir.read_jsonl(run_dir / "history.jsonl", keys=("global_epoch",))
    seconds = sum(r["seconds"] for r in rundir.read_jsonl(run_dir / "metrics.jsonl",
                                                          keys=("seconds",)))
    scores = [f"{100 * summary['mean'][k]:.1f} ± {100 * summary['std'][k]:.1f}"
              for k in SCORES]
    selected = summary.get("selected")
    chosen = (f"{selected['run']} (lowest {selected['by']}): ACC {100 * selected['acc']:.1f}"
              if selected else "none")
    epochs = max((r["global_epoch"] for r in history), default=0)
    lines.append(f"| {run_dir} | {config['method']} | {config['dataset']} | "
                 f"{summary['runs']} | {' | '.join(scores)} | {chosen} | {epochs} | "
                 f"{seconds:.1f} s |")
  return "\n".join(lines) + "\n"
