"""experiments/gpu_parity.py lines up the epochs of runs trained together and apart."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

EXPERIMENTS = pathlib.Path(__file__).resolve().parent.parent / "experiments"


@pytest.fixture
def gpu_parity(monkeypatch):
  monkeypatch.syspath_prepend(str(EXPERIMENTS))
  import gpu_parity
  return gpu_parity


def test_chunked_history_compares_each_run_with_itself(gpu_parity):
  # Under vmap an epoch is one record of both runs; with chunk_runs=1 it is one
  # record per run, written chunk after chunk.
  together = [{"global_epoch": e, "phase": "train", "runs": [0, 1],
               "terms": {"loss": [10.0 * e, 20.0 * e]}} for e in (1, 2)]
  apart = [{"global_epoch": e, "phase": "train", "runs": [r],
            "terms": {"loss": [10.0 * e * (r + 1) + (r == 1 and e == 2)]}}
           for r in (0, 1) for e in (1, 2)]
  a, b = gpu_parity.by_epoch(together), gpu_parity.by_epoch(apart)
  assert sorted(a) == sorted(b) == [(1, "train"), (2, "train")]
  np.testing.assert_array_equal(a[1, "train"]["loss"], b[1, "train"]["loss"])
  np.testing.assert_array_equal(b[2, "train"]["loss"] - a[2, "train"]["loss"], [0.0, 1.0])


def test_chunked_comparison_runs_end_to_end(gpu_parity, capsys):
  # CM on digits is stable: the vmapped runs and the runs one at a time agree.
  assert gpu_parity.main(["--chunked", "--only", "cm_epochs"]) == 0
  out = capsys.readouterr().out
  assert "## cm_epochs" in out and "| 20 | train |" in out
  assert "for 1.000, 1.000 of the samples" in out
