"""The training engine: scan epochs, vmapped runs, checkpoints, logs, guards."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from deepclust_jax.engine import (FitPhase, Method, SGDPhase, TrainOptions, Update, gather,
                                  select_run, sgd_epoch, stateless, train)
from deepclust_jax import engine, metrics
from deepclust_jax.engine import loop
from deepclust_jax.errors import CheckpointError, ConfigError, InputError, NonFiniteError

K, D = 3, 2


def blobs(n: int = 240, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  rng = np.random.default_rng(seed)
  y = np.arange(n) % K
  centres = np.array([[0.0, 4.0], [4.0, 0.0], [-4.0, -4.0]])
  return (centres[y] + rng.normal(size=(n, D))).astype(np.float32), y


def soft_kmeans(params, batch, key):
  """A small differentiable clustering loss with two named terms."""
  del key
  x = batch["x"]
  d2 = jnp.sum((x[:, None, :] - params["mu"][None]) ** 2, -1)
  gamma = jax.nn.softmax(-d2)
  fit = jnp.sum(gamma * d2)
  spread = jnp.sum(params["mu"] ** 2)
  return fit + 1e-3 * spread, {"fit": fit, "spread": spread}


def counting(params, state, batch, key):
  """soft_kmeans that also counts its steps and keeps a running mean of x in the state."""
  loss, terms = soft_kmeans(params, batch, key)
  state = {"steps": state["steps"] + 1,
           "mean_x": 0.9 * state["mean_x"] + 0.1 * jnp.mean(batch["x"], 0)}
  return loss, (terms, state)


def with_neighbours(idx, data, state, key):
  """A pytree batch: each sample, its neighbour's row gathered on the device, jitter."""
  del state
  return {"x": data["x"][idx],
          "pair": {"nbr": data["x"][data["nbr"][idx]],
                   "jitter": 0.01 * jax.random.normal(key, (idx.shape[0], D))}}


def neighbour_loss(params, state, batch, key):
  """``counting`` on the batch, its neighbours and a jittered copy."""
  pair = batch["pair"]
  both = {"x": jnp.concatenate([batch["x"], pair["nbr"], batch["x"] + pair["jitter"]])}
  return counting(params, state, both, key)


def toy_method(epochs: int = 4, batch_size: int = 32, average: bool = True,
               loss=stateless(soft_kmeans), fit_phase: bool = False,
               batch=gather, stop_below: float | None = None) -> Method:
  def init(key, data):
    x = data["x"]
    idx = jax.random.choice(key, x.shape[0], (K,), replace=False)
    return {"mu": x[idx]}, {"steps": jnp.zeros((), jnp.int32), "mean_x": jnp.zeros(D)}

  def predict(params, state, x):
    del state
    return jax.nn.softmax(-jnp.sum((x[:, None] - params["mu"][None]) ** 2, -1))

  def recentre(params, state, data, key):
    del key
    x = data["x"]
    gamma = predict(params, state, x)
    mu = gamma.T @ x / gamma.sum(0)[:, None]
    return {"mu": mu}, state, {"moved": jnp.sum((mu - params["mu"]) ** 2)}

  phases = (SGDPhase("train", (Update(loss, optax.adam(0.05)),), epochs, batch_size,
                     average, batch, stop_below),)
  if fit_phase:
    phases = (FitPhase("recentre", recentre),) + phases
  criteria = lambda params, state, x, gamma: {"l_sp": jnp.sum(gamma * (1 - gamma), -1)}
  return Method("toy", K, init, phases, predict, criteria, select_by="l_sp")


QUIET = TrainOptions(progress=False)


def max_abs_diff(a: engine.TrainResult, b: engine.TrainResult) -> float:
  """The largest difference between two results' params and state."""
  return max(float(np.max(np.abs(u - v))) for u, v in zip(
      jax.tree.leaves((a.params, a.state)), jax.tree.leaves((b.params, b.state))))


def test_train_shapes_scores_and_selection():
  x, y = blobs()
  result = train(toy_method(), x, y, options=TrainOptions(runs=3, progress=False))
  chex.assert_shape(result.gamma, (3, x.shape[0], K))
  chex.assert_shape(result.labels, (3, x.shape[0]))
  chex.assert_shape(result.params["mu"], (3, K, D))
  assert set(result.terms) == {"loss", "fit", "spread", "l_sp"}
  assert result.selected == select_run(result.terms["l_sp"], result.collapsed)
  assert max(s["ari"] for s in result.metrics) > 0.95
  assert len(result.history) == 5  # 4 epochs + the averaging epoch
  assert result.history[-1]["phase"] == "train"
  assert len(result.history[-1]["metrics"]["acc"]) == 3
  # Scored every eval_every epochs (default 10) and at the end of each phase.
  assert [("metrics" in r) for r in result.history] == [False] * 4 + [True]


def test_label_signals_are_scored_beside_the_methods_own():
  """A method's extra partitions get {name}_acc/nmi/ari at every scoring epoch."""
  x, y = blobs()
  rotated = jnp.asarray((y + 1) % K, jnp.int32)  # the true partition, renamed
  method = dataclasses.replace(toy_method(), label_signals=lambda params, state, x: {
      "truth": rotated, "one": jnp.zeros(x.shape[0], jnp.int32)})
  result = train(method, x, y, options=TrainOptions(runs=2, progress=False, eval_every=2))
  scored = [r["metrics"] for r in result.history if "metrics" in r]
  assert len(scored) == 3  # epochs 2 and 4, and the phase's end
  for m in scored:
    assert m["truth_acc"] == [1.0, 1.0] and m["truth_ari"] == [1.0, 1.0]
    assert m["one_acc"] == pytest.approx([np.mean(y == np.bincount(y).argmax())] * 2)
    assert set(m) == {f"{name}{k}" for name in ("", "truth_", "one_")
                      for k in ("acc", "nmi", "ari")}


def test_diagnostic_warnings_name_the_runs_the_first_epoch_and_the_lowest_value():
  method = dataclasses.replace(toy_method(), warn_below={"health": (0.5, "a hint")})
  records = [{"runs": [0, 1], "global_epoch": 2, "diagnostics": {"health": [0.9, 0.4]}},
             {"runs": [0, 1], "global_epoch": 4, "diagnostics": {"health": [0.3, 0.6]}},
             {"runs": [0, 1], "global_epoch": 5}]  # an epoch without diagnostics
  assert engine.diagnostic_warnings(method, records) == [
      "health fell below 0.5 in run(s) [0, 1] (first at epoch 2, down to 0.30): a hint"]
  assert engine.diagnostic_warnings(method, []) == []
  assert engine.diagnostic_warnings(toy_method(), records) == []


def test_the_engine_knows_no_method():
  """Methods fill hooks; the training loop imports no baseline and no method."""
  source = pathlib.Path(loop.__file__).read_text()
  assert "baselines" not in source and "deepclust_jax.methods" not in source


def test_vmapped_runs_equal_sequential_runs():
  x, _ = blobs()
  together = train(toy_method(), x, options=TrainOptions(runs=4, progress=False))
  one_by_one = train(toy_method(), x,
                     options=TrainOptions(runs=4, chunk_runs=1, progress=False))
  chex.assert_trees_all_close(together.params, one_by_one.params, rtol=1e-5, atol=1e-5)
  single = train(toy_method(), x, options=TrainOptions(runs=1, progress=False))
  chex.assert_trees_all_close(jax.tree.map(lambda a: a[:1], together.params),
                              single.params, rtol=1e-5, atol=1e-5)


def test_compile_count_constant_after_first_epoch():
  x, _ = blobs()
  compiles = []

  def listener(event, duration, **kwargs):
    del duration, kwargs
    if event == "/jax/core/compile/backend_compile_duration":
      compiles.append(event)

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    counts = []
    for epochs in (2, 7):
      jax.clear_caches()
      compiles.clear()
      train(toy_method(epochs=epochs), x, options=QUIET)
      counts.append(len(compiles))
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  assert counts[0] > 0
  assert counts[0] == counts[1], f"compilations grew with epochs: {counts}"


def test_epoch_drops_partial_batch_and_averages_steps():
  x = jnp.arange(10.0).reshape(10, 1)
  # loss = mean((w - batch)^2)/2 under SGD(1): each step sets w to the batch mean.
  loss = lambda params, batch, key: (0.5 * jnp.mean((params["w"] - batch["x"]) ** 2), {})
  phase = SGDPhase("p", (Update(stateless(loss), optax.sgd(1.0)),), 1, 4)
  params = {"w": jnp.zeros(())}
  key = jax.random.key(0)
  batches = engine.epoch_batches(key, 10, 4)
  assert batches.shape == (2, 4) and len(set(np.asarray(batches).ravel())) == 8
  opt_states = (optax.sgd(1.0).init(params),)
  run = lambda **kw: sgd_epoch(phase, params, None, opt_states, {"x": x}, key, batches, **kw)
  last, _, _, terms, _ = run()
  avg, *_ = run(average=True)
  means = [x[np.asarray(b)].mean() for b in batches]
  np.testing.assert_allclose(last["w"], means[-1], rtol=1e-6)
  np.testing.assert_allclose(avg["w"], np.mean(means), rtol=1e-6)
  assert set(terms) == {"loss"}
  *_, steps = run(trace=lambda p: p["w"])
  np.testing.assert_allclose(steps, means, rtol=1e-6)


def test_phase_with_two_updates_equals_two_handwritten_optax_updates():
  """Update 2 sees update 1's parameters and the same batch; each has its own Adam."""
  x = jnp.asarray(blobs(n=64)[0])
  noise = lambda idx, data, state, key: {"x": data["x"][idx],
                                         "n": jax.random.normal(key, (idx.shape[0], D))}

  def first(params, batch, key):
    del key
    return jnp.sum((batch["x"] + batch["n"] - params["mu"][0]) ** 2), {"first": 1.0}

  def second(params, batch, key):
    del key
    return jnp.sum(jnp.sin(params["mu"]) * jnp.mean(batch["x"] * batch["n"])), {"second": 2.0}

  tx1, tx2 = optax.adam(0.1), optax.adam(0.03)
  phase = SGDPhase("two", (Update(stateless(first), tx1), Update(stateless(second), tx2)),
                   1, 16, batch=noise)
  params = {"mu": jnp.ones((K, D))}
  key = jax.random.key(3)
  batches = engine.epoch_batches(jax.random.key(4), 64, 16)
  out, _, _, terms, _ = sgd_epoch(phase, params, None, (tx1.init(params), tx2.init(params)),
                                  {"x": x}, key, batches)
  # The same steps written out by hand.
  p, s1, s2 = params, tx1.init(params), tx2.init(params)
  for idx, k in zip(batches, jax.random.split(key, batches.shape[0])):
    batch_key, key1, key2 = jax.random.split(k, 3)
    batch = noise(idx, {"x": x}, None, batch_key)
    g = jax.grad(lambda q: first(q, batch, key1)[0])(p)
    u, s1 = tx1.update(g, s1, p)
    p = optax.apply_updates(p, u)
    g = jax.grad(lambda q: second(q, batch, key2)[0])(p)
    u, s2 = tx2.update(g, s2, p)
    p = optax.apply_updates(p, u)
  chex.assert_trees_all_close(out, p, rtol=1e-6, atol=1e-6)
  assert set(terms) == {"loss", "first", "second"}


def test_fit_phase_then_sgd_phase():
  x, y = blobs()
  result = train(toy_method(fit_phase=True), x, y, options=QUIET)
  assert [r["phase"] for r in result.history][:2] == ["recentre", "train"]
  assert "moved" in result.history[0]["terms"]


def test_progress_bar_shows_a_loss_only_for_phases_that_have_one(capsys):
  x, y = blobs()
  train(toy_method(epochs=1, fit_phase=True), x, y,
        options=dataclasses.replace(QUIET, progress=True))
  err = capsys.readouterr().err
  assert "phase=recentre]" in err and "phase=train, loss=" in err and "nan" not in err


def test_bad_input_is_reported_before_training():
  x, _ = blobs(n=20)
  with pytest.raises(InputError, match="NaN"):
    train(toy_method(), np.where(np.arange(40).reshape(20, 2) == 7, np.nan, x), options=QUIET)
  with pytest.raises(InputError, match="larger than the number of samples"):
    train(toy_method(), x[:2], options=QUIET)
  with pytest.raises(InputError, match="2-D"):
    train(toy_method(), x[:, 0], options=QUIET)


def test_nan_guard_names_term_and_epoch_and_keeps_checkpoint(tmp_path):
  x, _ = blobs()

  def exploding(params, batch, key):
    loss, terms = soft_kmeans(params, batch, key)
    # Finite while the epoch-dependent counter is small, then log of a negative.
    count = params["t"]
    return loss + count, {**terms, "blowup": jnp.log(3.5 - count)}

  method = toy_method(epochs=6)
  base_init = method.init

  def init(key, data):
    params, state = base_init(key, data)
    return {**params, "t": jnp.zeros(())}, state

  # One SGD(-1) step per epoch on t increases it by one: NaN at epoch 4.
  tx = optax.multi_transform({"mu": optax.adam(0.05), "t": optax.sgd(-1.0 / 7)},
                             {"mu": "mu", "t": "t"})
  method = Method(method.name, K, init,
                  (SGDPhase("train", (Update(stateless(exploding), tx),), 6, 32),),
                  method.predict)
  with pytest.raises(NonFiniteError, match=r"'blowup' became NaN .* epoch 4 of phase 'train'"):
    train(method, x, options=TrainOptions(checkpoint_every=1, progress=False),
          run_dir=tmp_path)
  assert (tmp_path / "checkpoints" / "chunk_0" / "3").exists()
  assert not (tmp_path / "checkpoints" / "chunk_0" / "4").exists()


class Interrupt(Exception):
  pass


def crash_after(epoch: int, monkeypatch, *args, **kwargs) -> None:
  """Runs ``train(*args, **kwargs)`` until ``epoch`` is logged, then interrupts it."""
  append = loop._History.append

  def crash(self, record):
    append(self, record)
    if record["global_epoch"] == epoch:
      raise Interrupt()

  monkeypatch.setattr(loop._History, "append", crash)
  with pytest.raises(Interrupt):
    train(*args, **kwargs)
  monkeypatch.setattr(loop._History, "append", append)


def test_resume_reaches_same_params_as_uninterrupted(tmp_path, monkeypatch):
  x, y = blobs()
  method = toy_method(epochs=5, fit_phase=True)
  options = TrainOptions(runs=2, checkpoint_every=2, progress=False)
  full = train(method, x, y, options=options, run_dir=tmp_path / "full")
  crash_after(5, monkeypatch, method, x, y, options=options, run_dir=tmp_path / "cut")
  with pytest.raises(InputError, match="--resume"):
    train(method, x, y, options=options, run_dir=tmp_path / "cut")
  resumed = train(method, x, y, options=options, run_dir=tmp_path / "cut", resume=True)
  chex.assert_trees_all_close(full.params, resumed.params, rtol=1e-6, atol=1e-6)
  # Epoch 5 ran twice but is logged once; the log matches the full run's.
  lines = (tmp_path / "cut" / "history.jsonl").read_text().splitlines()
  assert [json.loads(l)["global_epoch"] for l in lines] == list(range(1, 8))
  chex.assert_trees_all_close(resumed.history[-1]["terms"], full.history[-1]["terms"],
                              rtol=1e-5)


def test_time_limit_cuts_at_an_epoch_end_and_resume_loses_nothing(tmp_path, monkeypatch):
  x, y = blobs()
  method = toy_method(epochs=5, fit_phase=True)
  options = TrainOptions(runs=2, checkpoint_every=100, progress=False)
  full = train(method, x, y, options=options, run_dir=tmp_path / "full")
  assert not full.cut_short
  # A clock that passes the limit once 3 epochs are logged: the cut is taken
  # at that epoch's end, with a checkpoint although checkpoint_every is 100.
  now = {"t": 0.0}
  append = loop._History.append

  def tick(self, record):
    append(self, record)
    now["t"] = 100.0 if record["global_epoch"] >= 3 else 0.0

  monkeypatch.setattr(loop._History, "append", tick)
  monkeypatch.setattr(loop, "clock", lambda: now["t"])
  cut = train(method, x, y, options=dataclasses.replace(options, time_limit=50.0),
              run_dir=tmp_path / "cut")
  monkeypatch.undo()
  assert cut.cut_short and len(cut.history) == 3
  np.testing.assert_array_equal(cut.epochs["recentre"], [1, 1])
  np.testing.assert_array_equal(cut.epochs["train"], [2, 2])
  assert cut.metrics is not None and cut.labels.shape == (2, x.shape[0])
  resumed = train(method, x, y, options=options, run_dir=tmp_path / "cut", resume=True)
  assert not resumed.cut_short
  np.testing.assert_array_equal(resumed.epochs["train"], full.epochs["train"])
  chex.assert_trees_all_close(full.params, resumed.params, rtol=1e-6, atol=1e-6)


def test_time_limit_leaves_out_chunks_not_started():
  x, y = blobs()
  options = TrainOptions(runs=4, chunk_runs=2, time_limit=0.0, progress=False)
  cut = train(toy_method(epochs=3), x, y, options=options)
  assert cut.cut_short and cut.labels.shape[0] == 2 and len(cut.metrics) == 2
  np.testing.assert_array_equal(cut.epochs["train"], [1, 1])


def test_runs_stop_once_labels_settle_and_keep_their_params():
  x, y = blobs()
  options = TrainOptions(runs=3, progress=False)
  stopped = train(toy_method(epochs=40, average=False, stop_below=0.01), x, y,
                  options=options)
  epochs = stopped.epochs["train"]
  assert (epochs < 40).all() and (epochs >= 1).all(), epochs
  records = [r for r in stopped.history if "changed" in r]
  for run, count in enumerate(epochs):
    changed = [r["changed"][run] for r in records if r["active"][run]]
    assert len(changed) == count
    assert changed[-1] < 0.01 and all(c >= 0.01 for c in changed[:-1])
  # A stopped run's parameters are those it had after its last epoch: the
  # same runs trained for exactly that many epochs end where it did.
  for run, count in enumerate(epochs):
    plain = train(toy_method(epochs=int(count), average=False), x, y, options=options)
    chex.assert_trees_all_close(jax.tree.map(lambda a: a[run], stopped.params),
                                jax.tree.map(lambda a: a[run], plain.params),
                                rtol=1e-5, atol=1e-6)


def test_stopped_runs_stay_stopped_after_resume(tmp_path, monkeypatch):
  x, y = blobs()
  method = toy_method(epochs=40, stop_below=0.01)
  options = TrainOptions(runs=3, checkpoint_every=1, progress=False)
  full = train(method, x, y, options=options, run_dir=tmp_path / "full")
  crash_after(int(full.epochs["train"].min()) + 1, monkeypatch, method, x, y,
              options=options, run_dir=tmp_path / "cut")
  resumed = train(method, x, y, options=options, run_dir=tmp_path / "cut", resume=True)
  np.testing.assert_array_equal(resumed.epochs["train"], full.epochs["train"])
  chex.assert_trees_all_close(full.params, resumed.params, rtol=1e-6, atol=1e-6)


def test_budget_counts_steps_of_each_sgd_phase():
  method = toy_method(epochs=5, batch_size=32, fit_phase=True)
  assert engine.budget(method, 240) == [{"phase": "train", "epochs": 6, "batch_size": 32,
                                         "steps_per_epoch": 7, "steps": 42}]
  assert engine.budget(method, 20)[0]["batch_size"] == 20


def test_resume_finished_run_trains_nothing(tmp_path):
  x, _ = blobs()
  options = TrainOptions(checkpoint_every=3, progress=False)
  first = train(toy_method(), x, options=options, run_dir=tmp_path)
  again = train(toy_method(), x, options=options, run_dir=tmp_path, resume=True)
  chex.assert_trees_all_close(first.params, again.params)
  assert len(again.history) == len(first.history)


def _latest(tmp_path: pathlib.Path) -> pathlib.Path:
  steps = [p for p in (tmp_path / "checkpoints" / "chunk_0").iterdir() if p.name.isdigit()]
  return max(steps, key=lambda p: int(p.name))


def test_corrupt_or_foreign_checkpoint_is_refused(tmp_path):
  x, _ = blobs()
  options = TrainOptions(checkpoint_every=2, progress=False)
  train(toy_method(), x, options=options, run_dir=tmp_path)
  with pytest.raises(CheckpointError, match="different run"):
    train(toy_method(), x, options=TrainOptions(seed=1, checkpoint_every=2, progress=False),
          run_dir=tmp_path, resume=True)
  for f in _latest(tmp_path).rglob("*"):
    if f.is_file():
      f.write_bytes(b"\0garbage")
  with pytest.raises(CheckpointError, match="corrupt"):
    train(toy_method(), x, options=options, run_dir=tmp_path, resume=True)


def test_corrupt_checkpoint_arrays_are_one_short_line(tmp_path):
  """Only the arrays damaged (the position reads fine): orbax's TensorStore error is cut
  to one line without its spec dump."""
  x, _ = blobs()
  options = TrainOptions(checkpoint_every=2, progress=False)
  train(toy_method(), x, options=options, run_dir=tmp_path)
  arrays = [f for f in (_latest(tmp_path) / "state").rglob("*")
            if f.is_file() and f.parent.name == "d"]
  assert arrays
  for f in arrays:
    f.write_bytes(b"garbage")
  with pytest.raises(CheckpointError, match="corrupt") as error:
    train(toy_method(), x, options=options, run_dir=tmp_path, resume=True)
  message = str(error.value)
  assert "tensorstore_spec" not in message and "\n" not in message
  assert len(message) < 500 and "run without --resume" in message


def test_unfinished_checkpoint_write_is_ignored(tmp_path):
  """A crash mid-write leaves orbax's temporary directory, never a bad latest step."""
  x, _ = blobs()
  options = TrainOptions(checkpoint_every=2, progress=False)
  full = train(toy_method(), x, options=options, run_dir=tmp_path)
  latest = _latest(tmp_path)
  partial = latest.parent / f"{int(latest.name) + 1}.orbax-checkpoint-tmp-123"
  partial.mkdir()
  (partial / "garbage").write_bytes(b"half written")
  again = train(toy_method(), x, options=options, run_dir=tmp_path, resume=True)
  chex.assert_trees_all_close(full.params, again.params)


def test_stateful_run_resumes_exactly(tmp_path, monkeypatch):
  """Params, state (an int counter, a running mean) and Adam survive an interruption."""
  x, y = blobs()
  method = toy_method(epochs=5, fit_phase=True, loss=counting)
  options = TrainOptions(runs=2, checkpoint_every=2, progress=False)
  full = train(method, x, y, options=options, run_dir=tmp_path / "full")
  crash_after(4, monkeypatch, method, x, y, options=options, run_dir=tmp_path / "cut")
  resumed = train(method, x, y, options=options, run_dir=tmp_path / "cut", resume=True)
  steps_per_epoch = x.shape[0] // 32
  np.testing.assert_array_equal(full.state["steps"], 6 * steps_per_epoch)
  chex.assert_trees_all_equal(full.state, resumed.state)
  chex.assert_trees_all_equal(full.params, resumed.params)


def test_vmapped_runs_with_state_equal_sequential_runs():
  x, _ = blobs()
  method = toy_method(loss=counting)
  together = train(method, x, options=TrainOptions(runs=3, progress=False))
  one_by_one = train(method, x, options=TrainOptions(runs=3, chunk_runs=1, progress=False))
  chex.assert_trees_all_close((together.params, together.state),
                              (one_by_one.params, one_by_one.state), rtol=1e-5, atol=1e-5)
  assert not np.allclose(together.state["mean_x"][0], together.state["mean_x"][1])


def test_batch_function_sees_side_arrays_state_and_key():
  x, _ = blobs(n=64)

  def batch(idx, data, state, key):
    return {"x": data["x"][idx] + 0.0 * data["w"][idx][:, None],
            "w": data["w"][idx], "u": jax.random.uniform(key, ())}

  def loss(params, b, key):
    del key
    # w[idx] == idx, so the batch's w must be the gathered indices.
    return jnp.sum(params["mu"] ** 2), {"w_sum": jnp.sum(b["w"]), "u": b["u"]}

  method = toy_method(epochs=1, average=False, loss=stateless(loss), batch=batch)
  data = {"x": x, "w": np.arange(64, dtype=np.float32)}
  result = train(method, data, options=TrainOptions(runs=2, progress=False))
  terms = result.history[0]["terms"]
  # Two batches of 32 without replacement: each epoch's w sums to all indices / 2.
  np.testing.assert_allclose(terms["w_sum"], [64 * 63 / 2 / 2] * 2, rtol=1e-6)
  assert terms["u"][0] != terms["u"][1]
  with pytest.raises(InputError, match="'w'.*one row per sample"):
    train(method, {"x": x, "w": np.zeros(3)}, options=QUIET)


def test_phase_that_changes_structure_is_refused_before_training():
  x, _ = blobs()
  method = toy_method(fit_phase=True)
  grow = FitPhase("grow", lambda params, state, data, key: (
      {"mu": jnp.concatenate([params["mu"], params["mu"]])}, state, {}))
  bad = dataclasses.replace(method, phases=(grow,) + method.phases)
  with pytest.raises(ConfigError, match=r"phase 'grow' .* changes the params: leaf \['mu'\]"):
    train(bad, x, options=QUIET)

  def new_state(params, state, batch, key):
    loss, terms = soft_kmeans(params, batch, key)
    return loss, (terms, {**state, "extra": jnp.zeros(())})

  with pytest.raises(ConfigError, match="phase 'train' .* changes the state"):
    train(toy_method(loss=new_state), x, options=QUIET)


def test_shared_order_runs_see_the_same_batches():
  x, _ = blobs(n=64)
  loss = lambda params, b, key: (jnp.sum(params["mu"] ** 2), {"first": b["x"][0, 0]})
  method = toy_method(epochs=2, average=False, loss=stateless(loss))
  shared = train(method, x, options=TrainOptions(runs=3, shared_order=True, progress=False))
  own = train(method, x, options=TrainOptions(runs=3, progress=False))
  for record in shared.history:
    assert len(set(record["terms"]["first"])) == 1
  assert len(set(own.history[0]["terms"]["first"])) > 1


def test_criteria_are_summed_in_chunks_and_scores_come_from_device_counts():
  x, y = blobs(n=250)
  method = toy_method(epochs=1)
  whole = train(method, x, y, options=TrainOptions(runs=2, progress=False))
  chunked = train(method, x, y, options=TrainOptions(runs=2, predict_chunk=64, progress=False))
  expected = np.sum(whole.gamma * (1 - whole.gamma), axis=(1, 2))
  np.testing.assert_allclose(chunked.terms["l_sp"], expected, rtol=1e-5)
  np.testing.assert_allclose(whole.terms["l_sp"], expected, rtol=1e-5)
  last = chunked.history[-1]["metrics"]
  for r in range(2):
    for name, value in metrics.evaluate(y, chunked.labels[r]).items():
      assert abs(last[name][r] - value) < 1e-9


def test_selection_skips_collapsed_runs():
  assert engine.collapsed_runs(np.array([[0, 1, 2], [0, 0, 0], [1, 1, 2]]), 3) == [1, 2]
  assert engine.select_run(np.array([5.0, 0.0, 1.0]), [1, 2]) == 0
  assert engine.select_run(np.array([5.0, 0.0]), [0, 1]) == 1


@pytest.mark.slow  # about a minute; the resume and vmap tests guard the engine in CI
def test_cm_and_aecm_parameters_pinned_to_values_before_engine_v2():
  """Recorded from main at bb5fa5d (engine v1): iris, 2 runs, seed 3, float32."""
  from deepclust_jax import data, methods
  cases = {
      "cm_r": ("cm", dict(init="r", epochs=3, batch_size=32)),
      "cm_p": ("cm", dict(init="p", epochs=3, batch_size=32)),
      "aecm_r": ("aecm", dict(init="r", epochs=2, batch_size=32, hidden=(8, 8), latent=2)),
      "aecm_p": ("aecm", dict(init="p", epochs=2, batch_size=32, hidden=(8, 8), latent=2,
                              pretrain_epochs=2, pretrain_batch_size=32, cm_epochs=2,
                              kmeans_restarts=2)),
  }
  pinned = np.load(pathlib.Path(__file__).parent / "fixtures" / "pinned_cm_aecm.npz")
  x = data.load("iris").x
  for case, (name, overrides) in cases.items():
    config = methods.resolve(name, num_classes=3, overrides=overrides)
    result = train(methods.get(name).build(config, (4,)), x,
                   options=TrainOptions(runs=2, seed=3, progress=False))
    leaves = jax.tree_util.tree_leaves_with_path(result.params)
    assert sorted(case + jax.tree_util.keystr(p) for p, _ in leaves) == sorted(
        k for k in pinned.files if k.startswith(case + "["))
    for path, leaf in leaves:
      np.testing.assert_allclose(leaf, pinned[case + jax.tree_util.keystr(path)],
                                 rtol=1e-6, atol=1e-6, err_msg=f"{case} {path}")


@pytest.mark.parametrize("chunk", [1, 4, 5, 7, 23, 30])
def test_chunked_passes_cover_every_row_once(chunk):
  x = jnp.arange(23 * 3, dtype=jnp.float32).reshape(23, 3)
  predicted = engine.predict_in_chunks(lambda p, s, x: 2 * x, None, None, x, chunk)
  np.testing.assert_array_equal(predicted, 2 * x)
  summed = engine.criteria_in_chunks(lambda p, s, x, g: {"a": x[:, 0] + g[:, 1]},
                                     None, None, x, x, chunk)
  assert float(summed["a"]) == float(jnp.sum(x[:, 0] + x[:, 1]))
