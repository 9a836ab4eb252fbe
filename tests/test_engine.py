"""The training engine: scan epochs, vmapped runs, checkpoints, logs, guards."""

from __future__ import annotations

import json
import pathlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from deepclust_jax.engine import FitPhase, Method, SGDPhase, TrainOptions, sgd_epoch, train
from deepclust_jax.engine import loop
from deepclust_jax.errors import CheckpointError, InputError, NonFiniteError

K, D = 3, 2


def blobs(n: int = 240, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  rng = np.random.default_rng(seed)
  y = np.arange(n) % K
  centres = np.array([[0.0, 4.0], [4.0, 0.0], [-4.0, -4.0]])
  return (centres[y] + rng.normal(size=(n, D))).astype(np.float32), y


def soft_kmeans(params, x, key):
  """A small differentiable clustering loss with two named terms."""
  del key
  d2 = jnp.sum((x[:, None, :] - params["mu"][None]) ** 2, -1)
  gamma = jax.nn.softmax(-d2)
  fit = jnp.sum(gamma * d2)
  spread = jnp.sum(params["mu"] ** 2)
  return fit + 1e-3 * spread, {"fit": fit, "spread": spread}


def toy_method(epochs: int = 4, batch_size: int = 32, average: bool = True,
               loss=soft_kmeans, fit_phase: bool = False) -> Method:
  def init(key, x):
    idx = jax.random.choice(key, x.shape[0], (K,), replace=False)
    return {"mu": x[idx]}

  def predict(params, x):
    return jax.nn.softmax(-jnp.sum((x[:, None] - params["mu"][None]) ** 2, -1))

  def recentre(params, x, key):
    del key
    gamma = predict(params, x)
    mu = gamma.T @ x / gamma.sum(0)[:, None]
    return {"mu": mu}, {"moved": jnp.sum((mu - params["mu"]) ** 2)}

  phases = (SGDPhase("train", loss, optax.adam(0.05), epochs, batch_size, average),)
  if fit_phase:
    phases = (FitPhase("recentre", recentre),) + phases
  criteria = lambda params, x, gamma: {"l_sp": jnp.sum(gamma * (1 - gamma))}
  return Method("toy", K, init, phases, predict, criteria, select_by="l_sp")


QUIET = TrainOptions(progress=False)


def test_train_shapes_scores_and_selection():
  x, y = blobs()
  result = train(toy_method(), x, y, options=TrainOptions(runs=3, progress=False))
  chex.assert_shape(result.gamma, (3, x.shape[0], K))
  chex.assert_shape(result.labels, (3, x.shape[0]))
  chex.assert_shape(result.params["mu"], (3, K, D))
  assert set(result.terms) == {"loss", "fit", "spread", "l_sp"}
  assert result.selected == int(np.argmin(result.terms["l_sp"]))
  assert max(s["ari"] for s in result.metrics) > 0.95
  assert len(result.history) == 5  # 4 epochs + the averaging epoch
  assert result.history[-1]["phase"] == "train"
  assert len(result.history[0]["metrics"]["acc"]) == 3


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
  loss = lambda params, xb, key: (0.5 * jnp.mean((params["w"] - xb) ** 2), {})
  phase = SGDPhase("p", loss, optax.sgd(1.0), 1, 4)
  params = {"w": jnp.zeros(())}
  key = jax.random.key(0)
  opt_state = phase.optimizer.init(params)
  last, _, terms = sgd_epoch(phase, 4, params, opt_state, x, key)
  avg, _, _ = sgd_epoch(phase, 4, params, opt_state, x, key, average=True)
  order = np.asarray(jax.random.permutation(jax.random.split(key)[0], 10))
  means = [x[order[i * 4:(i + 1) * 4]].mean() for i in range(2)]  # 2 full batches
  np.testing.assert_allclose(last["w"], means[-1], rtol=1e-6)
  np.testing.assert_allclose(avg["w"], np.mean(means), rtol=1e-6)
  assert set(terms) == {"loss"}
  *_, steps = sgd_epoch(phase, 4, params, opt_state, x, key, trace=lambda p: p["w"])
  np.testing.assert_allclose(steps, means, rtol=1e-6)


def test_fit_phase_then_sgd_phase():
  x, y = blobs()
  result = train(toy_method(fit_phase=True), x, y, options=QUIET)
  assert [r["phase"] for r in result.history][:2] == ["recentre", "train"]
  assert "moved" in result.history[0]["terms"]


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

  def exploding(params, xb, key):
    loss, terms = soft_kmeans(params, xb, key)
    # Finite while the epoch-dependent counter is small, then log of a negative.
    count = params["t"]
    return loss + count, {**terms, "blowup": jnp.log(3.5 - count)}

  method = toy_method(epochs=6, loss=exploding)
  base_init = method.init
  # One SGD(-1) step per epoch on t increases it by one: NaN at epoch 4.
  method = Method(method.name, K, lambda k, x: {**base_init(k, x), "t": jnp.zeros(())},
                  (SGDPhase("train", exploding, optax.multi_transform(
                      {"mu": optax.adam(0.05), "t": optax.sgd(-1.0 / 7)},
                      {"mu": "mu", "t": "t"}), 6, 32),),
                  method.predict)
  with pytest.raises(NonFiniteError, match=r"'blowup' became NaN .* epoch 4 of phase 'train'"):
    train(method, x, options=TrainOptions(checkpoint_every=1, progress=False),
          run_dir=tmp_path)
  assert (tmp_path / "checkpoints" / "chunk_0" / "3").exists()
  assert not (tmp_path / "checkpoints" / "chunk_0" / "4").exists()


class Interrupt(Exception):
  pass


def test_resume_reaches_same_params_as_uninterrupted(tmp_path, monkeypatch):
  x, y = blobs()
  method = toy_method(epochs=5, fit_phase=True)
  options = TrainOptions(runs=2, checkpoint_every=2, progress=False)
  full = train(method, x, y, options=options, run_dir=tmp_path / "full")

  append = loop._History.append

  def crash_after_epoch_5(self, record):
    append(self, record)
    if record["global_epoch"] == 5:
      raise Interrupt()

  monkeypatch.setattr(loop._History, "append", crash_after_epoch_5)
  with pytest.raises(Interrupt):
    train(method, x, y, options=options, run_dir=tmp_path / "cut")
  monkeypatch.setattr(loop._History, "append", append)
  with pytest.raises(InputError, match="--resume"):
    train(method, x, y, options=options, run_dir=tmp_path / "cut")
  resumed = train(method, x, y, options=options, run_dir=tmp_path / "cut", resume=True)
  chex.assert_trees_all_close(full.params, resumed.params, rtol=1e-6, atol=1e-6)
  # Epoch 5 ran twice but is logged once; the log matches the full run's.
  lines = (tmp_path / "cut" / "history.jsonl").read_text().splitlines()
  assert [json.loads(l)["global_epoch"] for l in lines] == list(range(1, 8))
  chex.assert_trees_all_close(resumed.history[-1]["terms"], full.history[-1]["terms"],
                              rtol=1e-5)


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
