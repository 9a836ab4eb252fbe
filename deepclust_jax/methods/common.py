"""Pieces several methods share: optimisers with frozen parts, a schedule, range checks."""

from __future__ import annotations

from collections.abc import Collection

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
