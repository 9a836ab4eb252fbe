"""Dataset + method + engine + run directory: what ``deepclust fit`` does.

A run directory holds everything needed to inspect or resume a run:

* ``config.json``: method, dataset, the fully resolved config and options;
* ``history.jsonl``: one line per epoch (loss terms, ACC/NMI/ARI per run);
* ``metrics.jsonl``: one line per run (seed, scores, final terms, seconds);
* ``labels.npy`` (runs x N) and ``y_true.npy``: predictions and targets;
* ``summary.md``: mean and std over runs, and the selected run;
* ``checkpoints/``: orbax checkpoints for ``--resume``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from deepclust_jax import data as data_lib
from deepclust_jax import methods
from deepclust_jax.engine import (TrainOptions, TrainResult, collapsed_runs, select_run,
                                  train)
from deepclust_jax.errors import DeepclustError, InputError
from deepclust_jax.metrics import evaluate
from deepclust_jax.validation import check_data

SCORES = ("acc", "nmi", "ari")


@dataclasses.dataclass
class FitReport:
  """A finished ``fit``: its config, the engine's result and the summary."""

  method: str
  dataset: str
  config: Any
  result: TrainResult
  summary: dict[str, Any]
  run_dir: pathlib.Path | None


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

  Example:
    >>> report = fit("kmeans", "iris", runs=2, options={"progress": False})
    >>> sorted(report.summary["mean"])
    ['acc', 'ari', 'nmi']
  """
  ds = dataset if isinstance(dataset, data_lib.Dataset) else data_lib.load(
      dataset, data_dir=data_dir)
  overrides = dict(overrides or {})
  if epochs is not None:
    overrides["epochs"] = epochs
  config = methods.resolve(method, dataset=ds.name, num_classes=ds.num_classes,
                           overrides=overrides)
  if runs < 1:
    raise InputError(f"runs={runs} must be at least 1")
  model = methods.get(method).build(config, ds.sample_shape)
  train_options = TrainOptions(runs=runs, seed=seed, **dict(options or {}))
  run_dir = pathlib.Path(out) if out is not None else None
  resolved = {
      "method": method, "dataset": ds.name, "num_samples": int(ds.x.shape[0]),
      "num_features": int(ds.x.shape[1]), "sample_shape": list(ds.sample_shape),
      "runs": runs, "seed": seed, "select_by": model.select_by,
      "config": dataclasses.asdict(config),
      "options": {k: v for k, v in dataclasses.asdict(train_options).items()
                  if k not in ("mesh", "progress")},
  }
  # As written to and read back from JSON (tuples become lists), so that a
  # resumed run compares equal to the saved config and checkpoint fingerprint.
  resolved = json.loads(json.dumps(resolved))
  # Bad data or K is refused before the run directory is created, so the same
  # --out can be used again once the command is corrected.
  check_data(ds.x, config.num_clusters)
  if run_dir is not None:
    try:
      run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
      raise InputError(f"cannot create run directory {run_dir}: {e}") from e
    _check_resumable(run_dir, resolved, resume)
    (run_dir / "config.json").write_text(json.dumps(resolved, indent=2) + "\n")
  result = train(model, ds.x, ds.y, options=train_options, run_dir=run_dir,
                 resume=resume, fingerprint={"config": resolved["config"],
                                             "dataset": ds.name})
  summary = summarize(result.metrics, result.selected, model.select_by, result.collapsed)
  if run_dir is not None:
    _write_run_dir(run_dir, resolved, result, ds.y, summary)
  return FitReport(method, ds.name, config, result, summary, run_dir)


def _check_resumable(run_dir: pathlib.Path, resolved: dict, resume: bool) -> None:
  config_path = run_dir / "config.json"
  if not config_path.exists():
    return
  if not resume:
    raise InputError(f"{run_dir} already holds a run; pass --resume to continue it "
                     "or choose another --out directory")
  saved = json.loads(config_path.read_text())
  keys = ("method", "dataset", "runs", "seed", "config")
  if any(saved.get(k) != resolved[k] for k in keys):
    diff = [k for k in keys if saved.get(k) != resolved[k]]
    raise InputError(f"cannot resume {run_dir}: its {', '.join(diff)} differ from "
                     "this command's")


def summarize(scores: Sequence[Mapping[str, float]] | None, selected: int | None,
              select_by: str | None = None,
              collapsed: Sequence[int] = ()) -> dict[str, Any]:
  """Mean and std over runs of each score, the selected run and the collapsed runs."""
  if not scores:
    return {}
  table = {k: np.array([s[k] for s in scores]) for k in SCORES}
  summary = {"runs": len(scores),
             "mean": {k: float(v.mean()) for k, v in table.items()},
             "std": {k: float(v.std()) for k, v in table.items()},
             "collapsed": [int(r) for r in collapsed]}
  if selected is not None:
    summary["selected"] = {"run": selected, "by": select_by,
                           **{k: float(table[k][selected]) for k in SCORES}}
  return summary


def format_summary(summary: Mapping[str, Any], title: str = "") -> str:
  """A Markdown table of ``summarize``'s output, scores x100 as in the papers."""
  if not summary:
    return f"{title}\n(no labels: nothing to score)\n"
  lines = [title, "", "| | ACC | NMI | ARI |", "|---|---|---|---|"]
  row = " | ".join(f"{100 * summary['mean'][k]:.1f} ± {100 * summary['std'][k]:.1f}"
                   for k in SCORES)
  lines.append(f"| mean ± std over {summary['runs']} run(s) | {row} |")
  if "selected" in summary:
    sel = summary["selected"]
    row = " | ".join(f"{100 * sel[k]:.1f}" for k in SCORES)
    lines.append(f"| selected run {sel['run']} (lowest {sel['by']}) | {row} |")
  collapsed = summary.get("collapsed", [])
  if collapsed:
    lines += ["", f"{len(collapsed)} run(s) collapsed (a cluster left empty), never "
                  f"selected unless all did: {collapsed}"]
  return "\n".join(lines) + "\n"


def _write_run_dir(run_dir: pathlib.Path, resolved: dict, result: TrainResult,
                   y: np.ndarray, summary: dict) -> None:
  np.save(run_dir / "labels.npy", result.labels.astype(np.int32))
  np.save(run_dir / "y_true.npy", np.asarray(y))
  with (run_dir / "metrics.jsonl").open("w") as f:
    for r in range(result.labels.shape[0]):
      line = {"run": r, "seed": resolved["seed"], "key": f"fold_in(key({resolved['seed']}), {r})",
              **(result.metrics[r] if result.metrics else {}),
              "terms": {k: float(v[r]) for k, v in result.terms.items()},
              "seconds": float(result.seconds[r])}
      f.write(json.dumps(line) + "\n")
  title = f"# {resolved['method']} on {resolved['dataset']}"
  text = format_summary(summary, title)
  text += "\n## Config\n\n```json\n" + json.dumps(resolved, indent=2) + "\n```\n"
  (run_dir / "summary.md").write_text(text)


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
  labels = np.load(needed[0])
  y = np.load(needed[1])
  lines = [json.loads(l) for l in needed[2].read_text().splitlines() if l.strip()]
  config = json.loads((run_dir / "config.json").read_text())
  num_clusters = config["config"]["num_clusters"]
  scores = [evaluate(y, l) for l in labels]
  collapsed = collapsed_runs(labels, num_clusters)
  select_by = config.get("select_by")
  selected = (select_run([line["terms"][select_by] for line in lines], collapsed)
              if select_by else None)
  return summarize(scores, selected, select_by, collapsed)
