"""Data-parallel training over 2 forced CPU devices equals 1-device training.

The method has per-run state and a pytree batch (side arrays gathered on the
device, jitter drawn from the step key), so every leaf of the batch is sharded.

Runs in a subprocess, because the device count is fixed when JAX starts. On
2 cores, 2 forced devices occasionally hang in the gradient all-reduce when
many small steps are dispatched asynchronously (XLA waits on a rendezvous).
The engine dispatches one compiled call per epoch, which did not hang in 60
trial runs; the test also turns async dispatch off, as a cheap safety belt,
and the subprocess has a hard timeout, so a hang fails the test instead of
stalling CI.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent("""
    import jax
    jax.config.update("jax_cpu_enable_async_dispatch", False)
    import numpy as np
    from jax.sharding import Mesh
    from deepclust_jax.engine import TrainOptions, train
    sys_path = {tests!r}
    import sys; sys.path.insert(0, sys_path)
    from test_engine import blobs, max_abs_diff, neighbour_loss, toy_method, with_neighbours

    assert jax.device_count() == 2, jax.devices()
    x, y = blobs(n=256)
    data = {{"x": x, "nbr": np.roll(np.arange(256), 3)}}
    method = toy_method(epochs=2, batch_size=32, loss=neighbour_loss, batch=with_neighbours)
    single = train(method, data, y, options=TrainOptions(runs=2, progress=False))
    mesh = Mesh(np.array(jax.devices()), ("data",))
    sharded = train(method, data, y, options=TrainOptions(runs=2, progress=False, mesh=mesh))
    diff = max_abs_diff(single, sharded)
    print("max abs diff", diff)
    assert diff < 1e-4, diff
    assert (single.labels == sharded.labels).all()
""")


def test_two_device_data_parallel_matches_single_device():
  tests = os.path.dirname(os.path.abspath(__file__))
  env = {**os.environ, "XLA_FLAGS": os.environ.get("XLA_FLAGS", "")
         + " --xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
  proc = subprocess.run([sys.executable, "-c", CHILD.format(tests=tests)], env=env,
                        capture_output=True, text=True, timeout=240)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  assert "max abs diff" in proc.stdout


RUNS_CHILD = textwrap.dedent("""
    from deepclust_jax import engine
    mesh = engine.runs_mesh(2)  # first: asks JAX for 2 CPU devices
    import jax
    from deepclust_jax.engine import TrainOptions, train
    from deepclust_jax.errors import ConfigError
    import sys; sys.path.insert(0, {tests!r})
    from test_engine import blobs, counting, max_abs_diff, toy_method

    assert jax.device_count() == 2, jax.devices()
    x, y = blobs(n=256)
    method = toy_method(epochs=6, batch_size=32, loss=counting, stop_below=0.01)
    for shared in (False, True):
      options = dict(runs=4, shared_order=shared, progress=False)
      single = train(method, x, y, options=TrainOptions(**options))
      split = train(method, x, y, options=TrainOptions(**options, mesh=mesh))
      diff = max_abs_diff(single, split)
      print("max abs diff", diff)
      assert diff < 1e-5, diff
      assert (single.labels == split.labels).all()
      assert (single.epochs["train"] == split.epochs["train"]).all()
    try:
      train(method, x, y, options=TrainOptions(runs=3, progress=False, mesh=mesh))
    except ConfigError as e:
      assert "cannot be split evenly" in str(e), e
    else:
      raise AssertionError("3 runs over 2 devices were not refused")
""")


def test_runs_split_over_two_cpu_devices_match_one_device(tmp_path):
  tests = os.path.dirname(os.path.abspath(__file__))
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  proc = subprocess.run([sys.executable, "-c", RUNS_CHILD.format(tests=tests)], env=env,
                        capture_output=True, text=True, timeout=240)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  assert proc.stdout.count("max abs diff") == 2
  # The command line asks for the devices itself.
  cli = ("import sys; from deepclust_jax.cli import main; sys.exit(main(sys.argv[1:]))")
  proc = subprocess.run([sys.executable, "-c", cli, "fit", "cm", "--dataset", "blobs",
                         "--runs", "2", "--run-devices", "2", "--epochs", "2", "--quiet",
                         "--out", str(tmp_path / "run")],
                        env=env, capture_output=True, text=True, timeout=240)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  assert "mean ± std over 2 run(s)" in proc.stdout
