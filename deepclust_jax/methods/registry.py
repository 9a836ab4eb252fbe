"""The method registry: name -> config dataclass, builder and paper presets.

A config is a frozen dataclass of plain values. It is resolved in layers,
each overriding the one before: the dataclass defaults (written for
MNIST-sized data); for a dataset without a preset, defaults scaled to its size
and width (``MethodSpec.scaled``: batch, epochs, architecture); the paper's
preset for the dataset (``deepclust_jax.configs.paper``); then the user's
``key=value`` overrides. The resolved config is what ``config.json`` records.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from deepclust_jax.configs import pretraining as pretraining_configs
from deepclust_jax.engine import Method, SGDPhase
from deepclust_jax.errors import ConfigError, unknown


@dataclasses.dataclass(frozen=True)
class MethodSpec:
  """A registered method.

  Attributes:
    name: registry name, as typed on the command line.
    config: the config dataclass; it must have a ``num_clusters`` field where
      0 means "the dataset's number of classes".
    build: ``build(config, shape) -> Method``, with ``shape`` the shape of one
      sample: ``(D,)`` for vectors, ``(H, W, C)`` for images (whose rows in
      the data are flattened row-major).
    presets: per-dataset overrides from the papers.
    summary: one line for ``deepclust --help``.
    scaled: ``scaled(num_samples, shape, num_clusters, explicit) -> values``,
      the defaults for a dataset without a preset, scaled to its size; keys
      in ``explicit`` (set by the user) must be left alone.
  """

  name: str
  config: type
  build: Callable[[Any, tuple[int, ...]], Method]
  presets: Mapping[str, Mapping[str, Any]]
  summary: str
  scaled: Callable[[int, tuple[int, ...], int, Mapping[str, Any]],
                   Mapping[str, Any]] | None = None


_REGISTRY: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
  _REGISTRY[spec.name] = spec
  return spec


def names() -> list[str]:
  return sorted(_REGISTRY)


def get(name: str) -> MethodSpec:
  """The spec registered as ``name``; :class:`ConfigError` lists the others."""
  if name not in _REGISTRY:
    raise unknown("method", name, _REGISTRY)
  return _REGISTRY[name]


def _coerce(value: Any, kind: Any, key: str) -> Any:
  """Converts a command-line string (or a JSON value) to the field's type."""
  origin = typing.get_origin(kind)
  if origin in (typing.Union, types.UnionType):
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if value in (None, "none", "None"):
      return None
    return _coerce(value, args[0], key)
  if origin is tuple:
    item = typing.get_args(kind)[0]
    if isinstance(value, str):
      parts = value.split(",")
    else:  # a JSON list, or one number for a one-element tuple as on the command line
      parts = list(value) if isinstance(value, (list, tuple)) else [value]
    return tuple(_coerce(p.strip() if isinstance(p, str) else p, item, key)
                 for p in parts if p != "")
  if origin is typing.Literal:
    if value not in typing.get_args(kind):
      raise ConfigError(f"{key}={value!r} is not one of {list(typing.get_args(kind))}")
    return value
  try:
    if kind is bool:
      if isinstance(value, bool):
        return value
      if str(value).lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(value)
      return str(value).lower() in ("true", "1", "yes")
    if kind is int:
      number = float(value)
      if not number.is_integer():
        raise ValueError(value)
      return int(number)
    return kind(value)
  except (TypeError, ValueError):
    name = getattr(kind, "__name__", str(kind))
    raise ConfigError(f"{key}={value!r} is not a valid {name}") from None


def parse_overrides(pairs: Iterable[str]) -> dict[str, str]:
  """``["alpha=5", "init=p"]`` -> ``{"alpha": "5", "init": "p"}``."""
  out = {}
  for pair in pairs:
    key, sep, value = pair.partition("=")
    if not sep or not key.strip():
      raise ConfigError(f"--set expects key=value, got {pair!r}")
    out[key.strip()] = value.strip()
  return out


def resolve(name: str, *, dataset: str | None = None, num_classes: int | None = None,
            overrides: Mapping[str, Any] | None = None, num_samples: int | None = None,
            shape: Sequence[int] | None = None) -> Any:
  """The config of method ``name`` for ``dataset`` with ``overrides`` applied.

  Args:
    num_samples, shape: the data's size and per-sample shape; with them, a
      dataset that has no preset gets the method's scaled defaults.

  Raises:
    ConfigError: unknown method or key, or a value of the wrong type.

  Example:
    >>> resolve("cm", dataset="mnist", num_classes=10, overrides={"init": "p"}).alpha
    177.0
    >>> resolve("cm", dataset="iris", num_classes=3, num_samples=150, shape=(4,)).batch_size
    16
  """
  spec = get(name)
  hints = typing.get_type_hints(spec.config)
  preset = spec.presets.get(dataset) if dataset else None
  values: dict[str, Any] = dict(preset or {})
  for key, value in (overrides or {}).items():
    if key not in hints:
      raise unknown(f"{name} config key", key, hints)
    values[key] = value
  # A recipe the command switches to brings its optimiser (Adam's rate, not
  # DEC's 1.0); naming the preset's own recipe keeps the preset's settings.
  own_recipe = (preset or {}).get("recipe", getattr(spec.config, "recipe", None))
  if (overrides or {}).get("recipe", own_recipe) != own_recipe:
    values |= pretraining_configs.recipe_settings(overrides)
  values = {k: _coerce(v, hints[k], k) for k, v in values.items()}
  if not values.get("num_clusters") and num_classes:
    values["num_clusters"] = num_classes
  if preset is None and spec.scaled is not None and num_samples:
    shape = tuple(shape) if shape is not None else ()
    values = {**spec.scaled(num_samples, shape, values.get("num_clusters", 0), values),
              **values}
  config = spec.config(**values)
  check_numbers(config)
  check = getattr(config, "validate", None)
  if check is not None:
    check()
  return config


def check_numbers(config: Any) -> None:
  """The range checks every config shares, before the method's own ``validate``.

  Every float is finite; layer widths (``hidden``, ``latent``) and batch
  sizes are positive; epoch counts are not negative; learning rates are
  positive. A method's ``validate`` adds its own.

  Raises:
    ConfigError: naming the key and the value.

  Example:
    >>> import dataclasses
    >>> @dataclasses.dataclass
    ... class C:
    ...   hidden: tuple = (500, 0)
    >>> check_numbers(C())
    Traceback (most recent call last):
    ...
    deepclust_jax.errors.ConfigError: hidden=(500, 0): every layer width must be a positive integer
  """
  for field in dataclasses.fields(config):
    name, value = field.name, getattr(config, field.name)
    if isinstance(value, float) and not math.isfinite(value):
      raise ConfigError(f"{name}={value} must be a finite number")
    if name == "hidden" or name.endswith("_hidden"):
      if not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in value):
        raise ConfigError(f"{name}={tuple(value)}: every layer width must be a positive "
                          "integer")
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
      continue
    elif (name == "latent" or name.endswith("batch_size")) and value <= 0:
      raise ConfigError(f"{name}={value} must be positive")
    elif name.endswith("epochs") and value < 0:
      raise ConfigError(f"{name}={value} must be >= 0")
    elif (name.endswith("learning_rate") or name.endswith("_lr")) and value <= 0:
      raise ConfigError(f"{name}={value} must be positive")


def build(name: str, *, shape: Sequence[int], dataset: str | None = None,
          **overrides: Any) -> Method:
  """Resolves a config and builds the method in one call (for notebooks).

  Args:
    shape: the shape of one sample, ``(D,)`` or ``(H, W, C)``.

  Example:
    >>> m = build("kmeans", num_clusters=3, shape=(2,))
    >>> m.num_clusters
    3
  """
  config = resolve(name, dataset=dataset, overrides=overrides)
  return get(name).build(config, tuple(shape))


@dataclasses.dataclass(frozen=True)
class Description:
  """What ``deepclust methods NAME`` prints.

  Attributes:
    name, summary: the method's.
    config: ``(key, default, value)`` per config field: the dataclass default
      and the value a fit on the dataset would start from (its preset).
    phases: ``(phase, epochs)`` in order; epochs None for a closed-form phase.
    epochs_sets: the phases whose epochs ``--epochs`` sets (none: the config
      has no ``epochs`` key, and ``--epochs`` is refused).
  """

  name: str
  summary: str
  config: list[tuple[str, Any, Any]]
  phases: list[tuple[str, int | None]]
  epochs_sets: list[str]


def describe(name: str, dataset: str | None = None, *,
             overrides: Mapping[str, Any] | None = None, num_classes: int = 10,
             shape: Sequence[int] = (28, 28, 1)) -> Description:
  """Config keys, phases and what ``--epochs`` sets, for method ``name``.

  Found by building the method (on samples of ``shape``, with the preset of
  ``dataset`` and ``overrides``), then again with one more epoch, so it cannot
  drift from the builders.

  Example:
    >>> d = describe("aecm", overrides={"init": "p"})
    >>> d.phases, d.epochs_sets
    ([('pretrain', 100), ('mixture', None), ('cm', 100), ('joint', 151)], ['joint'])
  """
  spec = get(name)
  config = resolve(name, dataset=dataset, num_classes=num_classes, overrides=overrides)
  shape = tuple(shape)

  def epochs(cfg) -> dict[str, int | None]:
    return {p.name: p.num_epochs if isinstance(p, SGDPhase) else None
            for p in spec.build(cfg, shape).phases}

  phases = epochs(config)
  sets: list[str] = []
  if "epochs" in {f.name for f in dataclasses.fields(config)}:
    more = epochs(dataclasses.replace(config, epochs=config.epochs + 1))
    sets = [p for p in phases if phases[p] != more[p]]
  fields = [(f.name, f.default if f.default is not dataclasses.MISSING else f.default_factory(),
             getattr(config, f.name)) for f in dataclasses.fields(config)]
  return Description(name, spec.summary, fields, list(phases.items()), sets)
