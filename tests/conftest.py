"""Fixtures shared by the test files."""

from __future__ import annotations

import os

import jax
import pytest
from jax.test_util import check_grads

# The suite compiles afresh and leaves the user's compilation cache alone; the
# command line's cache has its own test (tests/test_cli.py).
os.environ["DEEPCLUST_COMPILATION_CACHE"] = "0"
# Compiling is most of the suite's time on a CPU, and the tests' programs run
# for seconds: XLA's least optimised CPU code halves the compile time and cuts
# the suite by a third (read at the first computation; the tests' subprocesses
# inherit it). It changes how fast the code runs, not what it computes.
os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"


@pytest.fixture
def x64():
  """float64 inside the test only; the context restores the previous mode."""
  with jax.enable_x64(True):
    yield


@pytest.fixture
def grads_match(x64):
  """``grads_match(fn, args, modes=("fwd", "rev"))``: first derivatives of ``fn``
  at ``args`` equal central finite differences, in float64, to 1e-6 (one tolerance
  for every loss in the library)."""
  def check(fn, args, modes=("fwd", "rev")):
    check_grads(fn, tuple(args), order=1, modes=modes, atol=1e-6, rtol=1e-6)
  return check
