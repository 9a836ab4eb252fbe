"""Training over 2 JAX processes on localhost (``jax.distributed``, CPU, Gloo).

Each test starts ``deepclust fit`` twice with ``--coordinator 127.0.0.1:PORT
--num-processes 2 --process-id 0|1``: one CPU device per process, so the
``data`` mesh spans both processes, each takes half of every batch and XLA
all-reduces the gradients between them. The parameters must equal a
single-process run's up to the summation order of the batch mean (relative
and absolute 1e-5); process 0 alone writes the run directory; and a run whose
process 1 is killed resumes from the 2-process checkpoint. The CM test runs
by default (about 30 s on 2 cores); AE-CM and the kill are ``slow`` (about a
minute each): ``pytest -m slow tests/test_multiprocess.py``.
"""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import chex
import pytest

from deepclust_jax import rundir

SMALL = {"cm": ["--epochs", "3", "--set", "batch_size=16"],
         "aecm": ["--init", "p", "--epochs", "2", "--set", "hidden=16", "--set", "latent=4",
                  "--set", "pretrain_epochs=2", "--set", "cm_epochs=1",
                  "--set", "batch_size=16", "--set", "pretrain_batch_size=16"]}
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "DEEPCLUST_COMPILATION_CACHE": "0",
       "XLA_FLAGS": os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=1"}


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def deepclust(*args: str) -> list[str]:
  return [sys.executable, "-m", "deepclust_jax.cli", *args]


def start_pair(method: str, out: pathlib.Path, *extra: str) -> list[subprocess.Popen]:
  port = free_port()
  return [subprocess.Popen(
      deepclust("fit", method, "--dataset", "iris", "--out", str(out), "--quiet",
                *SMALL[method], *extra, "--coordinator", f"127.0.0.1:{port}",
                "--num-processes", "2", "--process-id", str(i)),
      env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (0, 1)]


def wait(processes: list[subprocess.Popen], timeout: float = 300) -> None:
  for p in processes:
    _, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err[-3000:]


def single(method: str, out: pathlib.Path, *extra: str) -> None:
  subprocess.run(deepclust("fit", method, "--dataset", "iris", "--out", str(out), "--quiet",
                           *SMALL[method], *extra), env=ENV, check=True,
                 capture_output=True, timeout=300)


def same_params(a: pathlib.Path, b: pathlib.Path) -> None:
  chex.assert_trees_all_close(rundir.load_model(a).params, rundir.load_model(b).params,
                              rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["cm", pytest.param("aecm", marks=pytest.mark.slow)])
def test_two_processes_train_as_one(tmp_path, method):
  wait(start_pair(method, tmp_path / "two"))
  single(method, tmp_path / "one")
  same_params(tmp_path / "two", tmp_path / "one")
  written = sorted(p.name for p in (tmp_path / "two").iterdir())
  assert written == sorted(p.name for p in (tmp_path / "one").iterdir())
  # One history: process 1 wrote none of its epochs into it.
  epochs = [r["global_epoch"] for r in rundir.read(tmp_path / "two").history]
  assert len(epochs) == len(set(epochs))


@pytest.mark.slow
def test_a_killed_process_resumes_from_the_two_process_checkpoint(tmp_path):
  extra = ("--epochs", "40", "--checkpoint-every", "1")
  processes = start_pair("cm", tmp_path / "cut", *extra)
  checkpoints = tmp_path / "cut" / "checkpoints" / "chunk_0"
  deadline = time.monotonic() + 240
  while not (checkpoints.exists() and any(p.name.isdigit() and int(p.name) >= 5
                                          for p in checkpoints.iterdir())):
    assert time.monotonic() < deadline and processes[0].poll() is None, "no checkpoint"
    time.sleep(0.2)
  processes[1].send_signal(signal.SIGKILL)
  processes[0].send_signal(signal.SIGKILL)  # it would wait for its peer's collectives
  for p in processes:
    p.communicate()
  assert not (tmp_path / "cut" / "labels.npy").exists()
  wait(start_pair("cm", tmp_path / "cut", *extra, "--resume"))
  single("cm", tmp_path / "whole", *extra)
  same_params(tmp_path / "cut", tmp_path / "whole")
  epochs = [r["global_epoch"] for r in rundir.read(tmp_path / "cut").history]
  assert epochs == sorted(set(epochs))
