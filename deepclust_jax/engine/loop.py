"""The one training loop of the library: phases, vmapped runs, checkpoints, logs.

``train(method, x)`` runs ``method.phases`` in order for ``runs`` independent
seeds at once. Per epoch there is exactly one compiled call (``vmap`` over
runs of a ``lax.scan`` over batches) and one small host transfer: the epoch's
mean loss terms, used for the log, the progress bar and the NaN guard.

Run ``r`` of seed ``s`` always uses the key ``fold_in(key(s), r)`` and epoch
``e`` of phase ``p`` folds ``p`` and ``e`` into it, so results do not depend on
how runs are chunked or whether training was interrupted and resumed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import tqdm
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from deepclust_jax import metrics
from deepclust_jax.engine.checkpoint import Checkpointer, abstract
from deepclust_jax.engine.method import FitPhase, Method, Params, SGDPhase
from deepclust_jax.engine.steps import predict_in_chunks, sgd_epoch
from deepclust_jax.errors import InputError, NonFiniteError
from deepclust_jax.validation import check_data


@dataclasses.dataclass(frozen=True)
class TrainOptions:
  """How to train, as opposed to what (that is the method's config).

  Attributes:
    runs: independent seeds trained together under ``vmap``.
    seed: base seed; run ``r`` uses ``fold_in(key(seed), r)``.
    chunk_runs: train at most this many runs at once (when memory is short);
      ``None`` trains all runs together.
    checkpoint_every: save every this many epochs (and at each phase end).
    eval_every: compute ACC/NMI/ARI every this many epochs when labels exist.
    predict_chunk: rows per forward pass when predicting on the whole data.
    mesh: a ``Mesh`` with a ``"data"`` axis for data-parallel training: the
      batch is split over devices, parameters are replicated.
    progress: show a progress bar with ETA.
  """

  runs: int = 1
  seed: int = 0
  chunk_runs: int | None = None
  checkpoint_every: int = 10
  eval_every: int = 1
  predict_chunk: int = 4096
  mesh: Mesh | None = None
  progress: bool = True


@dataclasses.dataclass
class TrainResult:
  """What training produced, one leading ``runs`` axis everywhere.

  Attributes:
    params: stacked parameters of all runs.
    gamma: responsibilities on the training data, (runs, N, K).
    labels: ``argmax gamma``, (runs, N).
    terms: last-epoch loss terms and the method's criteria, each (runs,).
    metrics: ACC/NMI/ARI per run when labels were given, else None.
    selected: index of the run with the lowest ``method.select_by`` criterion.
    seconds: wall seconds of each chunk's training, per run of the chunk.
    history: one record per epoch (terms and metrics per run).
  """

  params: Params
  gamma: np.ndarray
  labels: np.ndarray
  terms: dict[str, np.ndarray]
  metrics: list[dict[str, float]] | None
  selected: int | None
  seconds: np.ndarray
  history: list[dict[str, Any]]


def run_keys(seed: int, runs: Sequence[int]) -> jax.Array:
  base = jax.random.key(seed)
  return jnp.stack([jax.random.fold_in(base, r) for r in runs])


class _Compiled:
  """The vmapped, jitted functions of one method, built once and reused."""

  def __init__(self, method: Method, num_samples: int, mesh: Mesh | None,
               predict_chunk: int):
    self.method = method
    self.mesh = mesh
    replicated = NamedSharding(mesh, P()) if mesh is not None else None
    batch_sharding = NamedSharding(mesh, P("data")) if mesh is not None else None
    constrain = ((lambda b: jax.lax.with_sharding_constraint(b, batch_sharding))
                 if mesh is not None else (lambda b: b))
    self.replicated = replicated
    self.init = jax.jit(jax.vmap(method.init, in_axes=(0, None)))
    self._epochs: dict[tuple[int, bool], Any] = {}
    self._constrain = constrain
    self.opt_init = {}
    self.fit = {}
    for i, phase in enumerate(method.phases):
      if isinstance(phase, SGDPhase):
        steps = num_samples // self.batch_size(phase, num_samples)
        self.opt_init[i] = jax.jit(jax.vmap(phase.tx(steps).init))
      else:
        self.fit[i] = jax.jit(jax.vmap(phase.update, in_axes=(0, None, 0)))
    self.predict = jax.jit(jax.vmap(
        lambda p, x: predict_in_chunks(method.predict, p, x, predict_chunk),
        in_axes=(0, None)))
    criteria = method.criteria
    self.criteria = (jax.jit(jax.vmap(criteria, in_axes=(0, None, 0)))
                     if criteria is not None else None)

  @staticmethod
  def batch_size(phase: SGDPhase, num_samples: int) -> int:
    """The phase's batch size, at most the number of samples."""
    return min(phase.batch_size, num_samples)

  def epoch(self, index: int, batch_size: int, average: bool):
    """The compiled epoch of SGD phase ``index`` (one compilation per flag)."""
    cache_key = (index, average)
    if cache_key not in self._epochs:
      phase = self.method.phases[index]

      def one_run(params, opt_state, x, key):
        return sgd_epoch(phase, batch_size, params, opt_state, x, key,
                         average=average, constrain=self._constrain)

      self._epochs[cache_key] = jax.jit(
          jax.vmap(one_run, in_axes=(0, 0, None, 0)), donate_argnums=(0, 1))
    return self._epochs[cache_key]


def _epoch_keys(keys: jax.Array, phase: int, epoch: int) -> jax.Array:
  return jax.vmap(lambda k: jax.random.fold_in(jax.random.fold_in(k, phase), epoch))(keys)


def _to_host(tree: Any) -> dict[str, np.ndarray]:
  return {k: np.asarray(v, dtype=np.float64) for k, v in jax.device_get(tree).items()}


def _check_finite(terms: dict[str, np.ndarray], where: str, checkpoint: str) -> None:
  for name, values in terms.items():
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
      kind = "NaN" if np.isnan(values[bad[0]]) else "Inf"
      raise NonFiniteError(
          f"loss term {name!r} became {kind} in run(s) {bad.tolist()} {where}; "
          f"training stopped, last good checkpoint: {checkpoint}")


class _History:
  """Epoch records as JSON lines in ``history.jsonl`` (and in memory)."""

  def __init__(self, run_dir: pathlib.Path | None):
    self.path = run_dir / "history.jsonl" if run_dir is not None else None
    self.records: list[dict[str, Any]] = []
    if self.path is not None and self.path.exists():
      self.records = [json.loads(line) for line in self.path.read_text().splitlines()
                      if line.strip()]

  def truncate(self, chunk: int, done_epochs: int) -> None:
    """Forgets records of ``chunk`` past ``done_epochs`` (they will be rerun)."""
    self.records = [r for r in self.records
                    if r["chunk"] != chunk or r["global_epoch"] <= done_epochs]
    if self.path is not None:
      self.path.write_text("".join(json.dumps(r) + "\n" for r in self.records))

  def append(self, record: dict[str, Any]) -> None:
    self.records.append(record)
    if self.path is not None:
      with self.path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def train(
    method: Method,
    x: Any,
    y: Any = None,
    *,
    options: TrainOptions = TrainOptions(),
    run_dir: str | pathlib.Path | None = None,
    resume: bool = False,
    fingerprint: dict[str, Any] | None = None,
) -> TrainResult:
  """Trains ``options.runs`` independent runs of ``method`` on ``x``.

  Args:
    method: the method's pure pieces.
    x: data, (N, D) float; checked for shape, NaN/Inf and ``K <= N``.
    y: optional integer labels, used only for logging ACC/NMI/ARI.
    options: runs, seeds, chunking, checkpoint and logging cadence, mesh.
    run_dir: where ``checkpoints/`` and ``history.jsonl`` go; ``None`` keeps
      everything in memory (no checkpoints).
    resume: continue from the latest checkpoint in ``run_dir``.
    fingerprint: JSON-able description of the run (config, dataset) stored in
      checkpoints; resuming with a different one is refused.

  Returns:
    A :class:`TrainResult`.

  Example:
    >>> from deepclust_jax import methods
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(300, 2)).astype("float32")
    >>> m = methods.build("kmeans", num_clusters=3, num_features=2)
    >>> train(m, x, options=TrainOptions(runs=2, progress=False)).labels.shape
    (2, 300)
  """
  x = check_data(x, method.num_clusters)
  if y is not None:
    y = np.asarray(y)
    if y.shape != (x.shape[0],):
      raise InputError(f"labels y have shape {y.shape}, expected ({x.shape[0]},)")
  run_dir = pathlib.Path(run_dir) if run_dir is not None else None
  runs = list(range(options.runs))
  size = options.chunk_runs or options.runs
  chunks = [runs[i:i + size] for i in range(0, len(runs), size)]
  compiled = _Compiled(method, x.shape[0], options.mesh, options.predict_chunk)
  x_dev = jax.device_put(jnp.asarray(x), compiled.replicated)
  history = _History(run_dir if run_dir is not None else None)
  fingerprint = {**(fingerprint or {}), "method": method.name, "seed": options.seed,
                 "data_shape": list(x.shape)}
  bar = tqdm.tqdm(total=method.num_epochs * len(chunks), disable=not options.progress,
                  desc=method.name, unit="epoch", dynamic_ncols=True)
  parts = []
  try:
    for c, chunk in enumerate(chunks):
      parts.append(_train_chunk(compiled, x_dev, y, chunk, c, options, run_dir,
                                resume, {**fingerprint, "runs": chunk}, history, bar))
  finally:
    bar.close()
  params = jax.tree.map(lambda *a: np.concatenate(a), *[p[0] for p in parts])
  gamma = np.concatenate([p[1] for p in parts])
  terms = {k: np.concatenate([p[2][k] for p in parts]) for k in parts[0][2]}
  seconds = np.concatenate([np.full(len(ch), p[3] / len(ch)) for p, ch in zip(parts, chunks)])
  labels = gamma.argmax(-1)
  scores = [metrics.evaluate(y, labels[r]) for r in runs] if y is not None else None
  selected = (int(np.argmin(terms[method.select_by])) if method.select_by else None)
  return TrainResult(params, gamma, labels, terms, scores, selected, seconds,
                     history.records)


def _train_chunk(compiled: _Compiled, x: jax.Array, y: np.ndarray | None,
                 chunk: list[int], c: int, options: TrainOptions,
                 run_dir: pathlib.Path | None, resume: bool,
                 fingerprint: dict[str, Any], history: _History, bar: tqdm.tqdm):
  """Trains one chunk of runs; returns (params, gamma, terms, seconds)."""
  method = compiled.method
  keys = run_keys(options.seed, chunk)
  params, opt_state = None, None
  start_phase, start_epoch, done = 0, 0, 0
  ckpt = (Checkpointer(run_dir / "checkpoints" / f"chunk_{c}", fingerprint)
          if run_dir is not None else None)
  last_good = "none"
  if ckpt is not None and resume and (step := ckpt.latest_step()) is not None:
    start_phase, start_epoch, done, params, opt_state = _restore(
        compiled, ckpt, step, jax.eval_shape(compiled.init, keys, x))
    last_good = str(ckpt.directory / str(step))
  elif ckpt is not None and ckpt.latest_step() is not None:
    raise InputError(f"{ckpt.directory} already holds checkpoints; pass --resume to "
                     "continue that run or choose another --out directory")
  if params is None:
    params = compiled.init(keys, x)
  if compiled.replicated is not None:
    params, opt_state = jax.device_put((params, opt_state), compiled.replicated)
  history.truncate(c, done)
  bar.update(done)
  # A resumed chunk reports the terms of its last finished epoch, even if no
  # epoch is left to run.
  logged = [r for r in history.records if r["chunk"] == c]
  last_terms = {k: np.asarray(v) for k, v in logged[-1]["terms"].items()} if logged else {}
  tic = time.perf_counter()
  for p in range(start_phase, len(method.phases)):
    phase = method.phases[p]
    first = start_epoch if p == start_phase else 0
    if isinstance(phase, SGDPhase) and not (p == start_phase and opt_state is not None):
      opt_state = compiled.opt_init[p](params)
    for e in range(first, phase.num_epochs):
      ekeys = _epoch_keys(keys, p, e)
      if isinstance(phase, FitPhase):
        params, terms = compiled.fit[p](params, x, ekeys)
      else:
        batch_size = compiled.batch_size(phase, x.shape[0])
        average = phase.average and e == phase.epochs
        params, opt_state, terms = compiled.epoch(p, batch_size, average)(
            params, opt_state, x, ekeys)
      done += 1
      terms = _to_host(terms)
      where = f"at epoch {e + 1} of phase {phase.name!r} (epoch {done} overall)"
      _check_finite(terms, where, last_good)
      last_terms = terms
      record = {"chunk": c, "runs": chunk, "phase": phase.name, "epoch": e + 1,
                "global_epoch": done, "seconds": time.perf_counter() - tic,
                "terms": {k: v.tolist() for k, v in terms.items()}}
      if y is not None and (done % options.eval_every == 0 or done == method.num_epochs):
        labels = np.asarray(compiled.predict(params, x).argmax(-1))
        scores = [metrics.evaluate(y, l) for l in labels]
        record["metrics"] = {k: [s[k] for s in scores] for k in scores[0]}
      history.append(record)
      bar.update(1)
      bar.set_postfix(phase=phase.name, loss=f"{np.mean(terms.get('loss', np.nan)):.4g}")
      phase_end = e + 1 == phase.num_epochs
      if ckpt is not None and (done % options.checkpoint_every == 0 or phase_end):
        position = ({"phase": p + 1, "epoch": 0} if phase_end
                    else {"phase": p, "epoch": e + 1})
        state = {"params": params,
                 "opt_state": opt_state if not phase_end else None}
        ckpt.save(done, state, {**position, "done": done})
        last_good = str(ckpt.directory / str(done))
    opt_state = None
  gamma = compiled.predict(params, x)
  if compiled.criteria is not None:
    last_terms = {**last_terms, **_to_host(compiled.criteria(params, x, gamma))}
  seconds = time.perf_counter() - tic
  if ckpt is not None:
    ckpt.close()
  return jax.device_get(params), np.asarray(gamma), last_terms, seconds


def _restore(compiled: _Compiled, ckpt: Checkpointer, step: int, params: Params):
  """Loads checkpoint ``step`` into the shapes of ``params`` (abstract).

  Returns:
    (phase, epoch, epochs done, params, opt_state) to continue from.
  """
  position = ckpt.read_position(step)
  p, e = position["phase"], position["epoch"]
  # Mid-phase checkpoints also hold the optimiser state, whose structure only
  # the phase's optimiser knows.
  opt_state = jax.eval_shape(compiled.opt_init[p], params) if e > 0 else None
  state = ckpt.restore_state(step, abstract({"params": params, "opt_state": opt_state}))
  return p, e, position["done"], state["params"], state["opt_state"]
