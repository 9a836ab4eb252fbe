"""Pieces several methods share: optimisers with frozen parts, a schedule, range checks."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any

import jax.numpy as jnp
import optax

from deepclust_jax.errors import ConfigError


def optimizer(name: str, learning_rate: optax.ScalarOrSchedule, eps: float = 1e-8,
              trainable: Collection[str] | None = None,
              momentum: float = 0.0) -> optax.GradientTransformation:
  """Adam or SGD; with ``trainable``, only those top-level parameter groups move.

  The CM paper uses Adam with ``eps=1e-3`` (not optax's 1e-8); its toy
  experiments use plain SGD, its autoencoder pretraining SGD with momentum.
  """
  tx = (optax.adam(learning_rate, eps=eps) if name == "adam"
        else optax.sgd(learning_rate, momentum=momentum or None))
  if trainable is None:
    return tx
  return optax.multi_transform(
      {"train": tx, "frozen": optax.set_to_zero()},
      lambda params: {k: "train" if k in trainable else "frozen" for k in params})


def polynomial_decay(init_value: float, end_value: float, power: float,
                     transition_steps: int) -> optax.Schedule:
  """``end + (init - end) (1 - t/T)^power`` for t < T, then ``end``.

  ``optax.polynomial_schedule`` computes the same, but under ``jit`` on CPU
  ``1 - T/T`` can round to -4e-9, and a negative base to a fractional power
  is NaN from step T on; clipping the base at 0 keeps the schedule finite.
  """

  def schedule(count):
    frac = jnp.clip(1.0 - count / transition_steps, 0.0, 1.0)
    return end_value + (init_value - end_value) * frac**power

  return schedule


def require(condition: bool, message: str) -> None:
  """Raises :class:`ConfigError` with ``message`` unless ``condition``."""
  if not condition:
    raise ConfigError(message)


# The config defaults were written for MNIST: 70,000 samples in batches of 256.
MNIST_STEPS_PER_EPOCH = 70_000 // 256


def scaled_sgd(num_samples: int, explicit: Mapping[str, Any], epochs: int, *,
               max_epochs: int, batch_key: str = "batch_size",
               epochs_key: str = "epochs", batch_size: int = 256) -> dict[str, int]:
  """A phase's batch size and epochs for ``num_samples`` samples.

  The batch is N/25 within [16, ``batch_size``] (about 25 steps an epoch on a
  small table, the defaults' 256 on MNIST-sized data), and the epochs give
  the optimisation steps that ``epochs`` epochs of MNIST in batches of 256
  give, at most ``max_epochs`` passes over the data. Keys set in ``explicit``
  (a preset or the user's) are kept.

  Example:
    >>> scaled_sgd(70_000, {}, 150, max_epochs=1000)
    {'batch_size': 256, 'epochs': 150}
    >>> scaled_sgd(500, {}, 150, max_epochs=1000)
    {'batch_size': 20, 'epochs': 1000}
  """
  batch = explicit.get(batch_key) or min(max(num_samples // 25, 16), batch_size)
  steps_per_epoch = max(num_samples // min(batch, num_samples), 1)
  steps = epochs * MNIST_STEPS_PER_EPOCH
  scaled = {batch_key: batch,
            epochs_key: min(math.ceil(steps / steps_per_epoch), max_epochs)}
  return {k: v for k, v in scaled.items() if k not in explicit}
