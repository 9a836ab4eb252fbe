"""Exceptions raised on bad input.

Every error a user can cause derives from :class:`DeepclustError`, so the CLI can
print its one-line message and exit non-zero instead of showing a traceback.
"""

from __future__ import annotations


class DeepclustError(Exception):
  """Base class of the errors a user can cause (bad data, config or files)."""


class DatasetError(DeepclustError):
  """A dataset is unknown, missing, corrupt or has no source on this machine."""


class ConfigError(DeepclustError):
  """A method, config key or value is unknown or out of range."""


class InputError(DeepclustError):
  """Input arrays have the wrong shape, non-finite values or too few samples."""


class CheckpointError(DeepclustError):
  """A checkpoint is corrupt or does not match the run that tries to load it."""


class NonFiniteError(DeepclustError):
  """Training produced NaN or Inf in a loss term."""
