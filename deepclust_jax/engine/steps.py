"""Compiled building blocks: one epoch as one ``lax.scan``, chunked passes over data.

Everything here is a pure function of one run; :mod:`.loop` maps them over
runs with ``vmap`` and compiles them once per phase.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from deepclust_jax.engine.method import (CriteriaFn, Data, Params, PredictFn, SGDPhase,
                                         State, Terms)


def epoch_batches(key: jax.Array, num_samples: int, batch_size: int) -> jax.Array:
  """The (steps, batch_size) sample indices of one shuffled epoch.

  The last ``num_samples % batch_size`` samples of the permutation are dropped
  (a different subset every epoch).
  """
  steps = num_samples // batch_size
  order = jax.random.permutation(key, num_samples)
  return order[: steps * batch_size].reshape(steps, batch_size)


def sgd_epoch(
    phase: SGDPhase,
    params: Params,
    state: State,
    opt_states: Sequence[optax.OptState],
    data: Data,
    key: jax.Array,
    batches: jax.Array,
    *,
    average: bool = False,
    constrain: Callable[[Any], Any] = lambda b: b,
    trace: Callable[[Params], Any] | None = None,
) -> tuple[Params, State, tuple[optax.OptState, ...], Terms, Any]:
  """One pass over ``batches``, (steps, batch_size) indices into ``data``.

  Each step builds its batch with ``phase.batch`` on the device and applies
  the phase's updates in order. With ``average=True`` the returned parameters
  are the mean of the parameters after each step.

  ``constrain`` is applied to every batch (the engine passes a sharding
  constraint for data parallelism). ``trace``, if given, is evaluated on the
  parameters after every step and returned stacked, e.g. to plot the per-step
  centroids of an epoch (the CM paper's Fig. 1); else ``None`` is returned.

  Returns:
    The new parameters, state and optimiser states, the mean over steps of the
    loss (``"loss"``, summed over updates) and of every named term, and the
    trace.
  """
  num_batches = batches.shape[0]
  step_keys = jax.random.split(key, num_batches)
  txs = [update.tx(num_batches) for update in phase.updates]
  grads = [jax.value_and_grad(update.loss, has_aux=True) for update in phase.updates]

  def step(carry, inputs):
    params, state, opt_states, total = carry
    idx, k = inputs
    batch_key, *update_keys = jax.random.split(k, 1 + len(txs))
    batch = constrain(phase.batch(idx, data, state, batch_key))
    logged: dict[str, jax.Array] = {"loss": jnp.zeros(())}
    new_opt_states = []
    for tx, grad_fn, opt_state, update_key in zip(txs, grads, opt_states, update_keys):
      (loss, (terms, state)), g = grad_fn(params, state, batch, update_key)
      updates, opt_state = tx.update(g, opt_state, params)
      params = optax.apply_updates(params, updates)
      new_opt_states.append(opt_state)
      logged = {**logged, **terms, "loss": logged["loss"] + loss}
    if average:
      total = jax.tree.map(jnp.add, total, params)
    traced = trace(params) if trace is not None else None
    return (params, state, tuple(new_opt_states), total), (logged, traced)

  total = jax.tree.map(jnp.zeros_like, params) if average else None
  carry = (params, state, tuple(opt_states), total)
  (params, state, opt_states, total), (terms, traced) = jax.lax.scan(
      step, carry, (batches, step_keys))
  if average:
    params = jax.tree.map(lambda t: (t / num_batches).astype(t.dtype), total)
  return params, state, opt_states, jax.tree.map(jnp.mean, terms), traced


def map_chunks(fn: Callable[..., Any], arrays: Sequence[jax.Array],
               chunk_size: int) -> tuple[Any, jax.Array]:
  """``fn`` over row chunks of ``arrays``, read in place (no padded copy).

  The last chunk is the last ``chunk_size`` rows, overlapping the one before
  when N is no multiple of ``chunk_size``; ``valid`` (chunks, chunk_size) marks
  each row once. Copying 70,000 MNIST rows into a padded array would cost
  more than predicting them.

  Returns:
    ``fn``'s outputs stacked over chunks, and ``valid``.
  """
  n = arrays[0].shape[0]
  chunk = min(chunk_size, n)
  num_chunks = -(-n // chunk)
  starts = jnp.minimum(jnp.arange(num_chunks) * chunk, n - chunk)

  def one(start):
    return fn(*[jax.lax.dynamic_slice_in_dim(a, start, chunk) for a in arrays])

  rows = starts[:, None] + jnp.arange(chunk)
  valid = rows >= (jnp.arange(num_chunks) * chunk)[:, None]
  return jax.lax.map(one, starts), valid


def predict_in_chunks(
    predict: PredictFn,
    params: Params,
    state: State,
    x: jax.Array,
    chunk_size: int = 4096,
) -> jax.Array:
  """``predict(params, state, x)`` evaluated ``chunk_size`` rows at a time.

  Keeps memory at O(chunk) for deep models (a 2000-unit layer over 70,000
  samples and 20 runs would otherwise need gigabytes).
  """
  out, _ = map_chunks(lambda c: predict(params, state, c), [x], chunk_size)
  n, chunk = x.shape[0], out.shape[1]
  # The last chunk repeats rows the one before it covered; keep its new rows.
  head = out[:-1].reshape(-1, *out.shape[2:])
  return jnp.concatenate([head, out[-1][head.shape[0] + chunk - n:]])


def criteria_in_chunks(
    criteria: CriteriaFn,
    params: Params,
    state: State,
    x: jax.Array,
    gamma: jax.Array,
    chunk_size: int = 4096,
) -> Terms:
  """Sums the per-sample ``criteria(params, state, x, gamma)`` over all rows.

  Evaluated ``chunk_size`` rows at a time; each row is counted once.
  """
  out, valid = map_chunks(lambda xc, gc: criteria(params, state, xc, gc), [x, gamma],
                          chunk_size)
  return jax.tree.map(lambda v: jnp.sum(jnp.where(valid, v, 0)), out)


def contingency(labels: jax.Array, y: jax.Array, num_clusters: int,
                num_classes: int) -> jax.Array:
  """Counts (classes, clusters) of ``y`` against ``labels``, on the device.

  Scoring an epoch then moves a K x C table to the host, not N labels.
  """
  flat = y * num_clusters + labels
  return jnp.bincount(flat, length=num_classes * num_clusters).reshape(
      num_classes, num_clusters)
