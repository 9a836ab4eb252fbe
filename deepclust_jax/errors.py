"""Exceptions raised on bad input.

Every error a user can cause derives from :class:`DeepclustError`, so the CLI can
print its one-line message and exit non-zero instead of showing a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DeepclustError(Exception):
  """Base class of the errors a user can cause (bad data, config or files)."""


class DatasetError(DeepclustError):
  """A dataset is unknown, missing, corrupt or has no source on this machine."""


# ConfigError and InputError are also ValueErrors, as scikit-learn expects of bad
# parameters and bad X (the estimators raise them unchanged).
class ConfigError(DeepclustError, ValueError):
  """A method, config key or value is unknown or out of range."""


class InputError(DeepclustError, ValueError):
  """Input arrays have the wrong shape, non-finite values or too few samples."""


class CheckpointError(DeepclustError):
  """A checkpoint is corrupt or does not match the run that tries to load it."""


class ModelError(DeepclustError):
  """A saved model is missing, corrupt or not the one that was asked for."""


class NonFiniteError(DeepclustError):
  """Training produced NaN or Inf in a loss term."""


def unknown(kind: str, name: str, known: Iterable[str],
            error: type[DeepclustError] = ConfigError) -> DeepclustError:
  """An ``error`` saying ``name`` is not a known ``kind``, with the closest match.

  Example:
    >>> str(unknown("method", "kmean", ["kmeans", "gmm"]))
    "unknown method 'kmean' (did you mean 'kmeans'?); known: gmm, kmeans"
  """
  known = sorted(known)
  close = difflib.get_close_matches(name, known, n=1)
  hint = f" (did you mean {close[0]!r}?)" if close else ""
  return error(f"unknown {kind} {name!r}{hint}; known: {', '.join(known)}")
