"""Compiled building blocks: one epoch as one ``lax.scan``, batched prediction.

Everything here is a pure function of one run; :mod:`.loop` maps them over
runs with ``vmap`` and compiles them once per phase.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from deepclust_jax.engine.method import Params, SGDPhase, Terms


def sgd_epoch(
    phase: SGDPhase,
    batch_size: int,
    params: Params,
    opt_state: optax.OptState,
    x: jax.Array,
    key: jax.Array,
    *,
    average: bool = False,
    constrain: Callable[[jax.Array], jax.Array] = lambda b: b,
    trace: Callable[[Params], Any] | None = None,
) -> tuple[Params, optax.OptState, Terms] | tuple[Params, optax.OptState, Terms, Any]:
  """One shuffled pass over ``x`` in ``len(x) // batch_size`` steps.

  The permutation is drawn inside the compiled function, so data never leaves
  the device. The last ``len(x) % batch_size`` samples of the permutation are
  dropped (a different subset every epoch). With ``average=True`` the returned
  parameters are the mean of the parameters after each step.

  ``constrain`` is applied to every batch (the engine passes a sharding
  constraint for data parallelism). ``trace``, if given, is evaluated on the
  parameters after every step and returned stacked, e.g. to plot the per-step
  centroids of an epoch (the CM paper's Fig. 1).

  Returns:
    The new parameters and optimiser state, the mean over steps of the loss
    (``"loss"``) and of every named term, and with ``trace`` its stacked values.
  """
  num_batches = x.shape[0] // batch_size
  perm_key, step_key = jax.random.split(key)
  order = jax.random.permutation(perm_key, x.shape[0])
  batches = order[: num_batches * batch_size].reshape(num_batches, batch_size)
  step_keys = jax.random.split(step_key, num_batches)
  grad_fn = jax.value_and_grad(phase.loss, has_aux=True)
  optimizer = phase.tx(num_batches)

  def step(carry, inputs):
    params, opt_state, total = carry
    idx, k = inputs
    (loss, terms), grads = grad_fn(params, constrain(x[idx]), k)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    if average:
      total = jax.tree.map(jnp.add, total, params)
    traced = trace(params) if trace is not None else None
    return (params, opt_state, total), ({"loss": loss, **terms}, traced)

  total = jax.tree.map(jnp.zeros_like, params) if average else None
  (params, opt_state, total), (terms, traced) = jax.lax.scan(
      step, (params, opt_state, total), (batches, step_keys))
  if average:
    params = jax.tree.map(lambda t: t / num_batches, total)
  terms = jax.tree.map(jnp.mean, terms)
  if trace is not None:
    return params, opt_state, terms, traced
  return params, opt_state, terms


def predict_in_chunks(
    predict: Callable[[Params, jax.Array], jax.Array],
    params: Params,
    x: jax.Array,
    chunk_size: int = 4096,
) -> jax.Array:
  """``predict(params, x)`` evaluated ``chunk_size`` rows at a time.

  Keeps memory at O(chunk) for deep models (a 2000-unit layer over 70,000
  samples and 20 runs would otherwise need gigabytes). ``x`` is padded to a
  whole number of chunks and the padding rows are dropped from the result.
  """
  n = x.shape[0]
  chunk_size = min(chunk_size, n)
  num_chunks = -(-n // chunk_size)
  padded = jnp.pad(x, ((0, num_chunks * chunk_size - n), (0, 0)))
  chunks = padded.reshape(num_chunks, chunk_size, x.shape[1])
  out = jax.lax.map(lambda c: predict(params, c), chunks)
  return out.reshape(num_chunks * chunk_size, -1)[:n]
