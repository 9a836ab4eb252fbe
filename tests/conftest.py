"""Fixtures shared by the test files."""

from __future__ import annotations

import jax
import pytest


@pytest.fixture
def x64():
  """float64 inside the test only; the context restores the previous mode."""
  with jax.enable_x64(True):
    yield
