"""The one training loop of the library: phases, vmapped runs, checkpoints, logs.

``train(method, data)`` runs ``method.phases`` in order for ``runs``
independent seeds at once. Per epoch there is exactly one compiled call
(``vmap`` over runs of a ``lax.scan`` over batches) and one small host
transfer: the epoch's mean loss terms, used for the log, the progress bar and
the NaN guard. Scoring epochs, and every epoch of a phase that stops runs early
(``SGDPhase.stop_below``), add one compiled pass that predicts the labels in
chunks; it gives the (classes, clusters) count table per run and the fraction
of each run's labels that changed.

Run ``r`` of seed ``s`` always uses the key ``fold_in(key(s), r)`` and epoch
``e`` of phase ``p`` folds ``p`` and ``e`` into it, so results do not depend on
how runs are chunked or whether training was interrupted and resumed. With
``shared_order`` the batch order of an epoch comes from ``key(s)`` instead, the
same for every run.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import tqdm
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from deepclust_jax import metrics, storage
from deepclust_jax.engine import pretrained as pretrained_lib
from deepclust_jax.engine.checkpoint import Checkpointer, abstract
from deepclust_jax.engine.method import Data, FitPhase, Method, Params, SGDPhase, State
from deepclust_jax.engine.steps import (contingency, criteria_in_chunks, epoch_batches,
                                        predict_in_chunks, sgd_epoch)
from deepclust_jax.errors import ConfigError, InputError, NonFiniteError
from deepclust_jax.validation import check_data

# The clock of TrainOptions.time_limit (a name of its own, so tests can move it).
clock = time.monotonic


@dataclasses.dataclass(frozen=True)
class TrainOptions:
  """How to train, as opposed to what (that is the method's config).

  Attributes:
    runs: independent seeds trained together under ``vmap``.
    seed: base seed; run ``r`` uses ``fold_in(key(seed), r)``.
    chunk_runs: train at most this many runs at once (when memory is short);
      ``None`` trains all runs together.
    shared_order: every run visits the batches in the same order (different
      initialisations, same shuffles). On one device the runs then share each
      batch's products with the data, which makes many runs much cheaper.
    checkpoint_every: save every this many epochs (and at each phase end).
    eval_every: score ACC/NMI/ARI every this many epochs when labels exist,
      and always at the end of each phase.
    predict_chunk: rows per forward pass when predicting on the whole data.
    mesh: a ``Mesh`` with one axis: ``"data"`` for data-parallel training
      (the batch is split over devices, parameters and state replicated), or
      ``"runs"`` to split the runs over devices (each device trains its share
      of the runs on a replicated copy of the data; on a CPU host, one CPU
      device per core puts every core to work on many seeds).
    progress: show a progress bar with ETA.
    time_limit: wall seconds for this call of ``train``: at the first epoch
      end past it, training checkpoints and stops, and the runs are scored as
      they are (``TrainResult.cut_short``; chunks not yet started are left
      out). ``resume`` continues such a run without losing an epoch. ``None``
      trains every epoch.
  """

  runs: int = 1
  seed: int = 0
  chunk_runs: int | None = None
  shared_order: bool = False
  checkpoint_every: int = 10
  eval_every: int = 10
  predict_chunk: int = 4096
  mesh: Mesh | None = None
  progress: bool = True
  time_limit: float | None = None


@dataclasses.dataclass
class TrainResult:
  """What training produced, one leading ``runs`` axis everywhere.

  Attributes:
    params: stacked parameters of all runs.
    state: stacked per-run state (``None`` leaves when the method has none).
    gamma: responsibilities on the training data, (runs, N, K).
    labels: ``argmax gamma``, (runs, N).
    terms: last-epoch loss terms and the method's criteria, each (runs,).
    metrics: ACC/NMI/ARI per run when labels were given, else None (also
      when some run is ``unfitted``).
    collapsed: runs whose partition leaves a cluster empty.
    selected: index of the run with the lowest ``method.select_by`` criterion
      among the runs that did not collapse (among all if every run did).
    seconds: wall seconds of each chunk's training, per run of the chunk.
    epochs: per phase name, the epochs each run trained, (runs,); fewer than
      the phase's when it stopped early (``SGDPhase.stop_below``) or training
      was cut short.
    history: one record per epoch (terms and metrics per run).
    cut_short: ``TrainOptions.time_limit`` ended training before its last epoch.
    warnings: one line per ``Method.warn_below`` diagnostic that fell below
      its threshold in some run (:func:`diagnostic_warnings` of the history).
    unfitted: runs the time limit cut inside pretraining: their clusters are
      the mixture's untrained start, so no run is scored (the scores would
      read as a poor result of the method).
  """

  params: Params
  state: State
  gamma: np.ndarray
  labels: np.ndarray
  terms: dict[str, np.ndarray]
  metrics: list[dict[str, float]] | None
  collapsed: list[int]
  selected: int | None
  seconds: np.ndarray
  epochs: dict[str, np.ndarray]
  history: list[dict[str, Any]]
  cut_short: bool = False
  warnings: list[str] = dataclasses.field(default_factory=list)
  unfitted: list[int] = dataclasses.field(default_factory=list)


def diagnostic_warnings(method: Method, records: Sequence[Mapping[str, Any]]) -> list[str]:
  """One line per diagnostic of ``method.warn_below`` that fell below its threshold.

  Read from the history's ``diagnostics``, so a resumed run keeps the warnings
  of its first part. Names the runs and the first epoch it happened.
  """
  lines = []
  for name, (threshold, hint) in method.warn_below.items():
    first: dict[int, int] = {}  # run: the first epoch it was below
    lowest = float("inf")
    for record in records:
      values = record.get("diagnostics", {}).get(name)
      for run, value in zip(record["runs"], values or ()):
        if value < threshold:
          first.setdefault(run, record["global_epoch"])
          lowest = min(lowest, value)
    if first:
      lines.append(f"{name} fell below {threshold:g} in run(s) {sorted(first)} (first at "
                   f"epoch {min(first.values())}, down to {lowest:.2f}): {hint}")
  return lines


def runs_mesh(num_devices: int) -> Mesh:
  """A mesh that splits the runs over ``num_devices`` devices (``TrainOptions.mesh``).

  On a CPU host it asks JAX for ``num_devices`` CPU devices, which then run
  their shares of the runs in parallel threads (one device per core); that
  only works before JAX has started its CPU backend, so call this first.

  Raises:
    ConfigError: fewer devices than asked for.
  """
  try:
    jax.config.update("jax_num_cpu_devices", num_devices)
  except RuntimeError:  # the CPU backend already started: use the devices it has
    pass
  devices = jax.devices()
  if len(devices) < num_devices:
    raise ConfigError(f"{num_devices} devices asked for, but JAX has {len(devices)} "
                      f"({devices[0].platform}); on a CPU ask before JAX runs anything")
  return Mesh(np.array(devices[:num_devices]), ("runs",))


def join_processes(coordinator: str, num_processes: int, process_id: int) -> Mesh:
  """Joins a training of ``num_processes`` processes; returns the ``data`` mesh of all
  their devices (``TrainOptions.mesh``).

  Every process calls it first, with the same ``coordinator`` (``host:port``,
  served by process 0) and its own ``process_id``; the batch is then split
  over every device of every process, and XLA all-reduces the gradients
  between them (over Gloo on CPUs). Each process holds the whole data set.

  Raises:
    ConfigError: a layout that cannot be right (the message names it).
  """
  if not 0 <= process_id < num_processes:
    raise ConfigError(f"process id {process_id} is not in 0..{num_processes - 1}")
  if ":" not in coordinator:
    raise ConfigError(f"coordinator {coordinator!r} must be HOST:PORT")
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator, num_processes=num_processes, process_id=process_id)
  return Mesh(np.array(jax.devices()), ("data",))


def run_keys(seed: int, runs: Sequence[int]) -> jax.Array:
  base = jax.random.key(seed)
  return jnp.stack([jax.random.fold_in(base, r) for r in runs])


def _fold(key: jax.Array, phase: int, epoch: int) -> jax.Array:
  return jax.random.fold_in(jax.random.fold_in(key, phase), epoch)


def budget(method: Method, num_samples: int) -> list[dict[str, Any]]:
  """Each SGD phase's budget on ``num_samples`` samples: epochs, batch, steps.

  Example:
    >>> from deepclust_jax import methods
    >>> m = methods.build("cm", num_clusters=3, shape=(2,), batch_size=20, epochs=5)
    >>> budget(m, 500)
    [{'phase': 'train', 'epochs': 6, 'batch_size': 20, 'steps_per_epoch': 25, 'steps': 150}]
  """
  out = []
  for phase in method.phases:
    if isinstance(phase, SGDPhase):
      batch_size = min(phase.batch_size, num_samples)
      steps = num_samples // batch_size
      out.append({"phase": phase.name, "epochs": phase.num_epochs, "batch_size": batch_size,
                  "steps_per_epoch": steps, "steps": steps * phase.num_epochs}
                 # A batch beyond N is the whole data set: said, not hidden.
                 | ({"batch_size_asked": phase.batch_size}
                    if phase.batch_size > num_samples else {}))
  return out


def as_data(data: Any, num_clusters: int | None = None) -> dict[str, Any]:
  """``data`` as a checked mapping of per-sample arrays with an ``"x"`` entry.

  An array is taken as ``{"x": data}``. ``x`` is checked by
  :func:`~deepclust_jax.validation.check_data`; every other array must have
  the same number of rows.
  """
  data = dict(data) if isinstance(data, Mapping) else {"x": data}
  if "x" not in data:
    raise InputError(f"data must hold an 'x' array, got keys {sorted(data)}")
  data["x"] = check_data(data["x"], num_clusters)
  n = data["x"].shape[0]
  for name, array in data.items():
    if np.shape(array)[:1] != (n,):
      raise InputError(f"data array {name!r} has shape {np.shape(array)}; every data "
                       f"array needs one row per sample ({n})")
  return data


def _same_structure(before: Any, after: Any) -> str | None:
  """Why ``after`` (abstract) does not match ``before`` (abstract), or None."""
  if jax.tree.structure(before) != jax.tree.structure(after):
    return f"structure {jax.tree.structure(after)} instead of {jax.tree.structure(before)}"
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(before),
                          jax.tree.leaves(after)):
    if (a.shape, a.dtype) != (b.shape, b.dtype):
      return (f"leaf {jax.tree_util.keystr(path)} becomes {b.dtype}{list(b.shape)} "
              f"instead of {a.dtype}{list(a.shape)}")
  return None


def writes(run_dir: pathlib.Path | None) -> bool:
  """Whether this process writes ``run_dir``'s files: process 0 of a distributed run."""
  return run_dir is not None and jax.process_index() == 0


def place(tree: Any, sharding: NamedSharding | None) -> Any:
  """``tree`` on ``sharding``'s devices; also across processes (``jax.distributed``),
  where each process holds the same host values and keeps its own shards."""
  if sharding is None or sharding.is_fully_addressable:
    return jax.device_put(tree, sharding)

  def one(a: Any) -> jax.Array:
    if jax.dtypes.issubdtype(getattr(a, "dtype", None), jax.dtypes.prng_key):
      return jax.random.wrap_key_data(one(jax.random.key_data(a)),
                                      impl=jax.random.key_impl(a))
    value = np.asarray(a)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])
  return jax.tree.map(one, tree)


class Compiled:
  """The vmapped, jitted functions of one method, built once and reused."""

  def __init__(self, method: Method, data: Data, options: TrainOptions,
               num_classes: int):
    self.method = method
    self.num_samples = data["x"].shape[0]
    mesh = options.mesh
    axes = tuple(mesh.axis_names) if mesh is not None else ()
    if axes not in ((), ("data",), ("runs",)):
      raise ConfigError(f"the mesh must have one axis, 'data' or 'runs'; got {axes}")
    self.replicated = NamedSharding(mesh, P()) if mesh is not None else None
    # Arrays with a leading runs axis (params, state, optimiser states, keys).
    self.per_run = NamedSharding(mesh, P("runs")) if axes == ("runs",) else self.replicated
    self.run_devices = mesh.shape["runs"] if axes == ("runs",) else 1
    batch_sharding = NamedSharding(mesh, P("data")) if axes == ("data",) else None
    self._constrain = ((lambda b: jax.tree.map(
        lambda a: jax.lax.with_sharding_constraint(a, batch_sharding), b))
                       if batch_sharding is not None else (lambda b: b))
    self.shared_order = options.shared_order
    self.init = jax.jit(jax.vmap(method.init, in_axes=(0, None)))
    self._epochs: dict[tuple[int, bool], Any] = {}
    self.opt_init = {}
    self.fit = {}
    for i, phase in enumerate(method.phases):
      if isinstance(phase, SGDPhase):
        steps = self.num_samples // self.batch_size(phase)
        txs = [update.tx(steps) for update in phase.updates]
        self.opt_init[i] = jax.jit(jax.vmap(
            lambda params, txs=txs: tuple(tx.init(params) for tx in txs)))
      else:
        self.fit[i] = jax.jit(jax.vmap(phase.update, in_axes=(0, 0, None, 0)))
    chunk = options.predict_chunk

    def predict(params, state, x):
      return predict_in_chunks(method.predict, params, state, x, chunk)

    self.predict = jax.jit(jax.vmap(predict, in_axes=(0, 0, None)))

    self.labels = jax.jit(jax.vmap(
        lambda params, state, x: jnp.argmax(predict(params, state, x), -1).astype(jnp.int32),
        in_axes=(0, 0, None)))
    num_clusters = method.num_clusters
    self.label_signals = (jax.jit(jax.vmap(method.label_signals, in_axes=(0, 0, None)))
                          if method.label_signals is not None else None)
    self.diagnostics = (jax.jit(jax.vmap(method.diagnostics, in_axes=(0, 0, None)))
                        if method.diagnostics is not None else None)
    self.score = jax.jit(jax.vmap(
        lambda labels, y: contingency(labels, y, num_clusters, num_classes),
        in_axes=(0, None)))
    self.criteria = None
    if method.criteria is not None:
      self.criteria = jax.jit(jax.vmap(
          lambda params, state, x, gamma: criteria_in_chunks(
              method.criteria, params, state, x, gamma, chunk),
          in_axes=(0, 0, None, 0)))

  def batch_size(self, phase: SGDPhase) -> int:
    """The phase's batch size, at most the number of samples."""
    return min(phase.batch_size, self.num_samples)

  def epoch(self, index: int, average: bool):
    """The compiled epoch of SGD phase ``index`` (one compilation per flag)."""
    cache_key = (index, average)
    if cache_key not in self._epochs:
      phase = self.method.phases[index]
      batch_size = self.batch_size(phase)

      def one_run(params, state, opt_states, data, key, shared_batches):
        order_key, step_key = jax.random.split(key)
        batches = (shared_batches if shared_batches is not None
                   else epoch_batches(order_key, self.num_samples, batch_size))
        params, state, opt_states, terms, _ = sgd_epoch(
            phase, params, state, opt_states, data, step_key, batches,
            average=average, constrain=self._constrain)
        return params, state, opt_states, terms

      def all_runs(params, state, opt_states, data, keys, order_key, active):
        shared = (epoch_batches(order_key, self.num_samples, batch_size)
                  if self.shared_order else None)
        new = jax.vmap(one_run, in_axes=(0, 0, 0, None, 0, None))(
            params, state, opt_states, data, keys, shared)
        if phase.stop_below is None:
          return new
        # A run that stopped keeps what it had; the others move on.
        def keep(n, o):
          return jnp.where(active.reshape((-1,) + (1,) * (n.ndim - 1)), n, o)
        kept = jax.tree.map(keep, new[:3], (params, state, opt_states))
        return (*kept, new[3])

      self._epochs[cache_key] = jax.jit(all_runs, donate_argnums=(0, 1, 2))
    return self._epochs[cache_key]


def check_phases(method: Method, data: Data, key: jax.Array) -> None:
  """Refuses, before training, phases that change params' or state's structure.

  Traced for one run with abstract values (``data`` may hold
  ``jax.ShapeDtypeStruct`` s): nothing is computed. Also checks that every
  loss and logged term is a scalar.

  Raises:
    ConfigError: naming the phase and what it changes.
  """
  num_samples = data["x"].shape[0]
  params, state = jax.eval_shape(method.init, key, data)

  def refuse(phase, what):
    raise ConfigError(f"phase {phase.name!r} of method {method.name!r} {what}")

  for phase in method.phases:
    if isinstance(phase, FitPhase):
      new_params, new_state, terms = jax.eval_shape(phase.update, params, state, data, key)
      changed = [("params", _same_structure(params, new_params)),
                 ("state", _same_structure(state, new_state))]
    else:
      idx = jax.ShapeDtypeStruct((min(phase.batch_size, num_samples),), jnp.int32)
      batch = jax.eval_shape(phase.batch, idx, data, state, key)
      changed, terms = [], {}
      for update in phase.updates:
        loss, (update_terms, new_state) = jax.eval_shape(
            update.loss, params, state, batch, key)
        terms = {**terms, "loss": loss, **update_terms}
        changed.append(("state", _same_structure(state, new_state)))
    for what, why in changed:
      if why is not None:
        refuse(phase, f"changes the {what}: {why}; phases must keep the shapes that "
                      "init gives")
    for name, term in terms.items():
      if term.shape != ():
        refuse(phase, f"logs {name!r} of shape {term.shape}; losses and terms must be "
                      "scalars")


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
      self.records = storage.read_jsonl(self.path, keys=("chunk", "global_epoch"))

  def truncate(self, chunk: int, done_epochs: int) -> None:
    """Forgets records of ``chunk`` past ``done_epochs`` (they will be rerun)."""
    self.records = [r for r in self.records
                    if r["chunk"] != chunk or r["global_epoch"] <= done_epochs]
    if self.path is not None:
      storage.write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.records))

  def append(self, record: dict[str, Any]) -> None:
    self.records.append(record)
    if self.path is not None:
      with self.path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def _labels(y: Any, n: int) -> np.ndarray:
  y = np.asarray(y)
  if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer) or (y < 0).any():
    raise InputError(f"labels y must be {n} non-negative integers, got shape {y.shape} "
                     f"and dtype {y.dtype}")
  return y.astype(np.int32)


def train(
    method: Method,
    data: Any,
    y: Any = None,
    *,
    options: TrainOptions = TrainOptions(),
    run_dir: str | pathlib.Path | None = None,
    resume: bool = False,
    fingerprint: dict[str, Any] | None = None,
    pretrained: str | pathlib.Path | None = None,
) -> TrainResult:
  """Trains ``options.runs`` independent runs of ``method`` on ``data``.

  Args:
    method: the method's pure pieces.
    data: an (N, D) array, or a mapping of per-sample arrays with an ``"x"``
      entry (see :func:`as_data`); ``x`` is checked for shape, NaN/Inf and
      ``K <= N``.
    y: optional integer labels, used only for logging ACC/NMI/ARI.
    options: runs, seeds, chunking, checkpoint and logging cadence, mesh.
    run_dir: where ``checkpoints/`` and ``history.jsonl`` go; ``None`` keeps
      everything in memory (no checkpoints).
    resume: continue from the latest checkpoint in ``run_dir``.
    fingerprint: JSON-able description of the run (config, dataset) stored in
      checkpoints; resuming with a different one is refused.
    pretrained: a run directory whose saved autoencoders (one per run, see
      :mod:`deepclust_jax.engine.pretrained`) replace the method's
      ``autoencoder`` group after ``init``; the pretraining phases are then
      skipped, and every later phase uses the keys it would have had, so
      the run equals one that pretrained itself to the same parameters.

  Returns:
    A :class:`TrainResult`.

  Example:
    >>> from deepclust_jax import methods
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(300, 2)).astype("float32")
    >>> m = methods.build("kmeans", num_clusters=3, shape=(2,))
    >>> train(m, x, options=TrainOptions(runs=2, progress=False)).labels.shape
    (2, 300)
  """
  data = as_data(data, method.num_clusters)
  if pretrained is not None and method.autoencoder is None:
    raise ConfigError(f"method {method.name!r} pretrains no autoencoder to start from")
  n = data["x"].shape[0]
  y = _labels(y, n) if y is not None else None
  run_dir = pathlib.Path(run_dir) if run_dir is not None else None
  runs = list(range(options.runs))
  size = options.chunk_runs or options.runs
  chunks = [runs[i:i + size] for i in range(0, len(runs), size)]
  num_classes = int(y.max()) + 1 if y is not None else 1
  compiled = Compiled(method, data, options, num_classes)
  if any(len(chunk) % compiled.run_devices for chunk in chunks):
    raise ConfigError(f"{options.runs} runs in chunks of {size} cannot be split evenly over "
                      f"the mesh's {compiled.run_devices} 'runs' devices")
  data_dev = place({k: np.asarray(v) for k, v in data.items()}, compiled.replicated)
  y_dev = jnp.asarray(y) if y is not None else None
  check_phases(method, data_dev, run_keys(options.seed, [0])[0])
  # Across processes (jax.distributed) every process trains and checkpoints
  # (orbax writes collectively); process 0 alone writes the other files.
  history = _History(run_dir if writes(run_dir) else None)
  fingerprint = {**(fingerprint or {}), "method": method.name, "seed": options.seed,
                 "shared_order": options.shared_order,
                 "data_shape": {k: list(np.shape(v)) for k, v in data.items()}}
  bar = tqdm.tqdm(total=method.num_epochs * len(chunks), disable=not options.progress,
                  desc=method.name, unit="epoch", dynamic_ncols=True)
  deadline = (clock() + options.time_limit
              if options.time_limit is not None else None)
  parts = []
  try:
    for c, chunk in enumerate(chunks):
      parts.append(_train_chunk(compiled, data_dev, y_dev, chunk, c, options, run_dir,
                                resume, {**fingerprint, "runs": chunk}, history, bar,
                                deadline, pretrained))
      if parts[-1].cut_short:
        break
  finally:
    bar.close()
  cut_short = parts[-1].cut_short
  chunks = chunks[:len(parts)]
  runs = [r for chunk in chunks for r in chunk]
  params, state = jax.tree.map(lambda *a: np.concatenate(a),
                               *[(p.params, p.state) for p in parts])
  gamma = np.concatenate([p.gamma for p in parts])
  terms = {k: np.concatenate([p.terms[k] for p in parts]) for k in parts[0].terms}
  seconds = np.concatenate([np.full(len(ch), p.seconds / len(ch))
                            for p, ch in zip(parts, chunks)])
  labels = gamma.argmax(-1)
  epochs = _epochs_per_run(method, history.records, len(runs))
  # Runs cut before any phase after pretraining: their clusters are untrained.
  clustering = method.phases[method.pretrain_phases:]
  unfitted = ([r for r in range(len(runs))
               if not any(epochs[phase.name][r] for phase in clustering)]
              if cut_short and method.pretrain_phases else [])
  scores = ([metrics.evaluate(y, labels[r]) for r in runs]
            if y is not None and not unfitted else None)
  collapsed = collapsed_runs(labels, method.num_clusters)
  selected = (select_run(terms[method.select_by], collapsed)
              if method.select_by else None)
  return TrainResult(params, state, gamma, labels, terms, scores, collapsed, selected,
                     seconds, epochs, history.records, cut_short,
                     diagnostic_warnings(method, history.records), unfitted)


def _epochs_per_run(method: Method, records: Sequence[dict[str, Any]],
                    runs: int) -> dict[str, np.ndarray]:
  """Per phase, how many epochs each run trained (a stopped run is not counted,
  a phase that training never reached has 0)."""
  epochs = {phase.name: np.zeros(runs, np.int64) for phase in method.phases}
  for record in records:
    if max(record["runs"]) < runs:  # chunks left out after a cut are not reported
      epochs[record["phase"]][record["runs"]] += record.get("active", True)
  return epochs


def collapsed_runs(labels: np.ndarray, num_clusters: int) -> list[int]:
  """Runs (rows of ``labels``) whose partition leaves one of K clusters empty."""
  return [r for r, row in enumerate(labels)
          if np.unique(row).size < num_clusters]


def select_run(criterion: np.ndarray, collapsed: Sequence[int]) -> int:
  """The run with the lowest ``criterion`` among those that did not collapse.

  A collapsed run can have the lowest value of a sparsity criterion (one
  cluster holding every sample has L_sp = 0), so it is only chosen when every
  run collapsed.
  """
  criterion = np.asarray(criterion, dtype=np.float64)
  allowed = np.ones(criterion.shape, bool)
  allowed[list(collapsed)] = False
  if not allowed.any():
    allowed[:] = True
  return int(np.argmin(np.where(allowed, criterion, np.inf)))


class ChunkResult(NamedTuple):
  """One chunk of runs after training (arrays on the host, a leading runs axis).

  Attributes:
    params, state: the final parameters and state.
    gamma: (runs, N, K) the final soft assignments.
    terms: the last epoch's terms and the criteria, (runs,) each.
    seconds: the chunk's training time.
    cut_short: the time limit stopped it before its last epoch.
  """

  params: Params
  state: State
  gamma: np.ndarray
  terms: dict[str, np.ndarray]
  seconds: float
  cut_short: bool


def _train_chunk(compiled: Compiled, data: Data, y: jax.Array | None,
                 chunk: list[int], c: int, options: TrainOptions,
                 run_dir: pathlib.Path | None, resume: bool,
                 fingerprint: dict[str, Any], history: _History, bar: tqdm.tqdm,
                 deadline: float | None,
                 pretrained: str | pathlib.Path | None = None) -> ChunkResult:
  """Trains one chunk of runs until it ends or ``clock()`` passes ``deadline``."""
  method = compiled.method
  keys = run_keys(options.seed, chunk)
  order_key = jax.random.key(options.seed)
  params, state, opt_states = None, None, None
  start_phase, start_epoch, done = 0, 0, 0
  ckpt = (Checkpointer(run_dir / "checkpoints" / f"chunk_{c}", fingerprint)
          if run_dir is not None else None)
  last_good = "none"
  if ckpt is not None and resume and (step := ckpt.latest_step()) is not None:
    start_phase, start_epoch, done, params, state, opt_states = _restore(
        compiled, ckpt, step, jax.eval_shape(compiled.init, keys, data))
    last_good = str(ckpt.directory / str(step))
  elif ckpt is not None and ckpt.latest_step() is not None:
    raise InputError(f"{ckpt.directory} already holds checkpoints; pass --resume to "
                     "continue that run or choose another --out directory")
  if params is None:
    params, state = compiled.init(keys, data)
    if pretrained is not None:
      group = method.autoencoder
      like = jax.tree.map(lambda a: a[0], params[group])
      params = {**params, group: jax.tree.map(jnp.asarray,
                                              pretrained_lib.load(pretrained, chunk, like))}
      start_phase = method.pretrain_phases
      skipped = sum(phase.num_epochs for phase in method.phases[:start_phase])
      bar.update(skipped)
      if writes(run_dir):  # the run directory keeps the autoencoder it started from
        pretrained_lib.save(run_dir, chunk, params[group])
  if compiled.per_run is not None:
    params, state, opt_states, keys = place((params, state, opt_states, keys),
                                            compiled.per_run)
  history.truncate(c, done)
  bar.update(done)
  # A resumed chunk reports the terms of its last finished epoch, even if no
  # epoch is left to run.
  logged = [r for r in history.records if r["chunk"] == c]
  last_terms = {k: np.asarray(v) for k, v in logged[-1]["terms"].items()} if logged else {}
  tic = time.perf_counter()
  cut_short = False
  for p in range(start_phase, len(method.phases)):
    if cut_short:
      break
    phase = method.phases[p]
    first = start_epoch if p == start_phase else 0
    if isinstance(phase, SGDPhase) and not (p == start_phase and opt_states is not None):
      opt_states = compiled.opt_init[p](params)
    stopping = isinstance(phase, SGDPhase) and phase.stop_below is not None
    if stopping:
      active = _active_after(logged if first else [], phase, len(chunk))
      labels = compiled.labels(params, state, data["x"])
    for e in range(first, phase.num_epochs):
      ekeys = jax.vmap(lambda k: _fold(k, p, e))(keys)
      ordinary = isinstance(phase, SGDPhase) and e < phase.epochs
      if stopping and ordinary and not active.any():
        done += 1  # every run stopped: the phase's remaining ordinary epochs are skipped
        bar.update(1)
        continue
      if isinstance(phase, FitPhase):
        params, state, terms = compiled.fit[p](params, state, data, ekeys)
      else:
        average = phase.average and e == phase.epochs
        trains = active if stopping and ordinary else np.ones(len(chunk), bool)
        params, state, opt_states, terms = compiled.epoch(p, average)(
            params, state, opt_states, data, ekeys, _fold(order_key, p, e),
            jnp.asarray(trains))
      done += 1
      terms = _to_host(terms)
      where = f"at epoch {e + 1} of phase {phase.name!r} (epoch {done} overall)"
      _check_finite(terms, where, last_good)
      last_terms = terms
      record = {"chunk": c, "runs": chunk, "phase": phase.name, "epoch": e + 1,
                "global_epoch": done, "seconds": time.perf_counter() - tic,
                "terms": {k: v.tolist() for k, v in terms.items()}}
      # One prediction pass serves both the stopping rule and the scores.
      now = None
      if stopping and ordinary:
        now = compiled.labels(params, state, data["x"])
        changed = np.asarray(jnp.mean(now != labels, axis=1))
        labels = now
        record |= {"active": active.tolist(), "changed": changed.tolist()}
        active = _active_after([record], phase, len(chunk))
      phase_end = e + 1 == phase.num_epochs
      # Saved before the phase-end checkpoint, so a resumed run always has it.
      if phase_end and writes(run_dir) and p + 1 == method.pretrain_phases:
        pretrained_lib.save(run_dir, chunk, params[method.autoencoder])
      scoring = done % options.eval_every == 0 or phase_end
      if scoring and compiled.diagnostics is not None:
        values = _to_host(compiled.diagnostics(params, state, data["x"]))
        record["diagnostics"] = {k: v.tolist() for k, v in values.items()}
        if options.progress:
          for line in diagnostic_warnings(method, [record]):
            bar.write(f"warning: {line}")
      if y is not None and scoring:
        if now is None:
          now = compiled.labels(params, state, data["x"])
        scores = [metrics.from_contingency(t) for t in np.asarray(compiled.score(now, y))]
        if compiled.label_signals is not None:
          for name, signal in compiled.label_signals(params, state, data["x"]).items():
            scores = [s | {f"{name}_{k}": v for k, v in metrics.from_contingency(t).items()}
                      for s, t in zip(scores, np.asarray(compiled.score(signal, y)))]
        record["metrics"] = {k: [s[k] for s in scores] for k in scores[0]}
      history.append(record)
      bar.update(1)
      # Graph and initialisation phases have no loss to show.
      bar.set_postfix({"phase": phase.name}
                      | ({"loss": f"{np.mean(terms['loss']):.4g}"} if "loss" in terms else {}))
      cut_short = (deadline is not None and clock() > deadline
                   and not (phase_end and p + 1 == len(method.phases)))
      if ckpt is not None and (done % options.checkpoint_every == 0 or phase_end
                               or cut_short):
        position = ({"phase": p + 1, "epoch": 0} if phase_end
                    else {"phase": p, "epoch": e + 1})
        saved = {"params": params, "state": state,
                 "opt_states": opt_states if not phase_end else None}
        ckpt.save(done, saved, {**position, "done": done})
        last_good = str(ckpt.directory / str(done))
      if cut_short:
        break
    opt_states = None
  gamma = compiled.predict(params, state, data["x"])
  if compiled.criteria is not None:
    last_terms = {**last_terms,
                  **_to_host(compiled.criteria(params, state, data["x"], gamma))}
  seconds = time.perf_counter() - tic
  if ckpt is not None:
    ckpt.close()
  params, state = jax.device_get((params, state))
  return ChunkResult(params, state, np.asarray(gamma), last_terms, seconds, cut_short)


def _active_after(records: Sequence[dict[str, Any]], phase: SGDPhase,
                  runs: int) -> np.ndarray:
  """Which runs still train after the last of ``records`` (all at a phase start).

  Read back from the history on resume, so a stopped run stays stopped.
  """
  last = [r for r in records if r["phase"] == phase.name and "changed" in r]
  if not last:
    return np.ones(runs, bool)
  return np.asarray(last[-1]["active"]) & (np.asarray(last[-1]["changed"]) >= phase.stop_below)


def _restore(compiled: Compiled, ckpt: Checkpointer, step: int,
             initial: tuple[Params, State]):
  """Loads checkpoint ``step`` into the shapes of ``initial`` (abstract).

  Returns:
    (phase, epoch, epochs done, params, state, opt_states) to continue from.
  """
  position = ckpt.read_position(step)
  p, e = position["phase"], position["epoch"]
  params, state = initial
  # Mid-phase checkpoints also hold the optimiser states, whose structure only
  # the phase's optimisers know.
  opt_states = jax.eval_shape(compiled.opt_init[p], params) if e > 0 else None
  saved = ckpt.restore_state(step, abstract(
      {"params": params, "state": state, "opt_states": opt_states}))
  return p, e, position["done"], saved["params"], saved["state"], saved["opt_states"]
