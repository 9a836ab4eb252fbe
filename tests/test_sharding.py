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
    from test_engine import blobs, neighbour_loss, toy_method, with_neighbours

    assert jax.device_count() == 2, jax.devices()
    x, y = blobs(n=256)
    data = {{"x": x, "nbr": np.roll(np.arange(256), 3)}}
    method = toy_method(epochs=2, batch_size=32, loss=neighbour_loss, batch=with_neighbours)
    single = train(method, data, y, options=TrainOptions(runs=2, progress=False))
    mesh = Mesh(np.array(jax.devices()), ("data",))
    sharded = train(method, data, y, options=TrainOptions(runs=2, progress=False, mesh=mesh))
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(
        jax.tree.leaves((single.params, single.state)),
        jax.tree.leaves((sharded.params, sharded.state))))
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
