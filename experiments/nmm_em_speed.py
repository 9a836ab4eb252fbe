"""The cost of one MNIST epoch of NMM-EM's two-fold step: FLOPs, seconds, share of peak.

Tissera et al. (2022), section 8.2: Table 2's MNIST network on the two Sobel
planes of 28x28 images, batches of 128, an EM step on the original and
transformed views then a KL step (Algorithm 1). Per sample and step, with F the
forward FLOPs of the network on one image:

* EM step: forward of both views (2F) and backward of both (about 4F);
* KL step: forward of both views (2F) and backward of the transformed view
  only (2F), the original's posterior being held constant;

10F in all, times 546 steps of 128 for MNIST's 70,000 images. Backward is
counted as twice the forward (the input and weight gradients), the usual
estimate; XLA's own count of the compiled step is printed beside it.

The measured time is one scanned epoch of ``--steps`` steps through the engine
(``engine.sgd_epoch``, as training runs it), extrapolated to 546 steps. Both
wall and process CPU seconds are recorded: on a machine shared with other jobs
the wall time overstates the cost, and CPU seconds over the cores give the
time the step would take with the machine to itself. The peak is quoted from
the CPU (cores x clock x 2 AVX-512 FMA units x 16 float32 lanes x 2) and
measured (the best rate of a large float32 matrix product).

The script rewrites the results file's first section (its own) and keeps the
sections after it (the side by side with PyTorch, earlier runs), written by
hand or by ``experiments/nmm_em_torch.py``'s output.

Usage:
  python experiments/nmm_em_speed.py [--data-dir ../shared/datasets] [--steps 8]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import math
import os
import pathlib
import subprocess
import time

import jax
import jax.numpy as jnp

from deepclust_jax import data, methods
from deepclust_jax.engine import SGDPhase, epoch_batches, sgd_epoch
from deepclust_jax.methods.nmm_em import NMMEMConfig
from deepclust_jax.models.nmm_em import ARCHITECTURES, parse_architecture

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def forward_flops(architecture: str, shape: tuple[int, int, int], num_clusters: int) -> int:
  """FLOPs (2 per multiply-add) of one forward pass of a Table 2 network on one image.

  Example:
    >>> forward_flops("F32", (1, 1, 2), 10)  # 2*32*2 + 2*10*32
    768
  """
  h, w, c = shape
  flops, width = 0, None
  for kind, n in parse_architecture(architecture):
    if kind == "C":
      flops += 2 * h * w * 9 * c * n
      c = n
    elif kind == "M":
      h, w = h // 2, w // 2
    else:
      width = width or h * w * c
      flops += 2 * width * n
      width = n
  return flops + 2 * (width or h * w * c) * num_clusters


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
  """The best float32 GFLOP/s of an n x n matrix product, per CPU-second of all cores.

  Rated on process CPU time, as the step is, so that other jobs on the
  machine do not lower it.
  """
  a = jax.random.normal(jax.random.key(0), (n, n))
  f = jax.jit(lambda a: a @ a)
  f(a).block_until_ready()
  best = math.inf
  for _ in range(repeats):
    tic = time.process_time()
    f(a).block_until_ready()
    best = min(best, (time.process_time() - tic) / os.cpu_count())
  return 2 * n**3 / best / 1e9


def lscpu() -> dict[str, str]:
  """``lscpu``'s fields."""
  info = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
  return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in info.splitlines()
                                              if ":" in line)}


def clock_ghz() -> float:
  """The nominal clock: ``lscpu``'s BogoMIPS / 2 (KVM guests show no MHz line)."""
  return float(lscpu()["BogoMIPS"]) / 2000


@dataclasses.dataclass(frozen=True)
class ScannedEpoch:
  """The MNIST preset's two-fold phase over ``steps`` batches, compiled as training runs it."""

  config: NMMEMConfig
  phase: SGDPhase
  params: dict
  batches: jax.Array
  compiled: jax.stages.Compiled
  args: tuple

  def run(self, key: jax.Array) -> None:
    """One epoch from the same start, waited for."""
    jax.block_until_ready(self.compiled(*self.args, key))


def scanned_epoch(mnist: data.Dataset, steps: int) -> ScannedEpoch:
  """The engine's epoch (``sgd_epoch``) of ``steps`` steps on the first images, compiled and warm."""
  config = methods.resolve("nmm_em", dataset="mnist", num_classes=10)
  method = methods.get("nmm_em").build(config, mnist.sample_shape)
  phase = method.phases[0]
  n = phase.batch_size * steps
  x = {"x": jnp.asarray(mnist.x[:n])}
  params, state = jax.jit(method.init)(jax.random.key(0), x)
  opt_states = tuple(u.tx(steps).init(params) for u in phase.updates)
  batches = epoch_batches(jax.random.key(1), n, phase.batch_size)
  epoch = jax.jit(lambda p, s, o, k: sgd_epoch(phase, p, s, o, x, k, batches)[:4])
  compiled = epoch.lower(params, state, opt_states, jax.random.key(2)).compile()
  bench = ScannedEpoch(config, phase, params, batches, compiled, (params, state, opt_states))
  bench.run(jax.random.key(2))  # warm-up
  return bench


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data-dir", default="../shared/datasets")
  parser.add_argument("--steps", type=int, default=8)
  args = parser.parse_args()
  mnist = data.load("mnist", data_dir=args.data_dir)
  bench = scanned_epoch(mnist, args.steps)
  phase, compiled = bench.phase, bench.compiled
  tic, cpu = time.perf_counter(), time.process_time()
  bench.run(jax.random.key(3))
  wall_s = (time.perf_counter() - tic) / args.steps
  # What the step costs with every core to itself.
  step_s = (time.process_time() - cpu) / args.steps / os.cpu_count()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  # XLA counts a while loop's body once, whatever its trip count: one step.
  xla_step = float(cost.get("flops", float("nan")))
  steps_per_epoch = mnist.x.shape[0] // phase.batch_size
  f = forward_flops(ARCHITECTURES["mnist"], (28, 28, 2), 10)
  step_flops = 10 * f * phase.batch_size
  epoch_flops = step_flops * steps_per_epoch
  peak = matmul_gflops()
  quoted = os.cpu_count() * clock_ghz() * 2 * 16 * 2
  achieved = step_flops / step_s / 1e9
  info = lscpu()
  cpu_name = (f"{info.get('Model name', '?')} (family {info.get('CPU family', '?')}, "
              f"model {info.get('Model', '?')}), {os.cpu_count()} cores")
  lines = [
      "## NMM-EM two-fold step on MNIST: FLOPs and time", "",
      f"Command: `python experiments/nmm_em_speed.py --steps {args.steps}`; "
      f"{jax.devices()[0].device_kind}, jax {jax.__version__}; "
      f"{datetime.date.today().isoformat()}, {cpu_name}.", "",
      f"* forward FLOPs per 28x28 image (2 Sobel planes, `{ARCHITECTURES['mnist']} F10`): "
      f"{f / 1e6:.1f} M",
      f"* per step of 128 (10 forward-equivalents per image): {step_flops / 1e9:.1f} GFLOP "
      f"(XLA's count of the compiled scan body, one step with augmentation and Sobel: "
      f"{xla_step / 1e9:.1f} GFLOP)",
      f"* per epoch of {steps_per_epoch} steps (70,000 images): {epoch_flops / 1e12:.1f} TFLOP; "
      f"250 epochs: {250 * epoch_flops / 1e15:.2f} PFLOP",
      f"* measured, scanned epoch of {args.steps} steps: {wall_s:.2f} s wall per step on "
      f"the shared machine, {step_s:.2f} s of all {os.cpu_count()} cores' CPU time per step; "
      f"so {step_s * steps_per_epoch / 60:.0f} min per epoch with the machine to itself "
      f"({wall_s * steps_per_epoch / 60:.0f} min at this wall rate) and "
      f"{250 * step_s * steps_per_epoch / 86400:.1f} days for 250 epochs",
      f"* achieved {achieved:.1f} GFLOP/s per CPU-second of all cores: "
      f"{100 * achieved / quoted:.1f}% of the quoted peak {quoted:.0f} GFLOP/s "
      f"({os.cpu_count()} cores x {clock_ghz():.2f} GHz x 2 FMA units x 16 lanes x 2), "
      f"{100 * achieved / peak:.0f}% of the measured matmul rate {peak:.0f} GFLOP/s", ""]
  text = "\n".join(lines)
  print(text)
  RESULTS.mkdir(exist_ok=True)
  path = RESULTS / "nmm_em_speed.md"
  # The sections after the first are kept.
  old = path.read_text() if path.exists() else ""
  rest = old.split("\n## ", 1)[1:] if old.startswith("## ") else []
  text += "".join("\n## " + r for r in rest)
  path.write_text(text)


if __name__ == "__main__":
  main()
