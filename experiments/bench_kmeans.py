"""Benchmark: k-means on all of MNIST, this library's JAX k-means against scikit-learn.

Both cluster the 70,000 x 784 float32 pixels in [0, 1] into K = 10 clusters
with 10 k-means++ initialisations and at most 100 Lloyd iterations, tol = 0
(so a run stops early only at an exact fixed point, where further iterations
would change nothing). scikit-learn: ``KMeans(n_clusters=10, n_init=10,
max_iter=100, tol=0, algorithm="lloyd")``. Both use every core of the machine.

JAX time is reported twice: the first call (tracing, XLA compilation and the
run) and a second call with another key (the run alone); compile seconds are
their difference, cross-checked by compiling ahead of time
(``jax.jit(...).lower(...).compile()``). Inertias are recomputed in float64 from each method's
centroids and labels, so they compare like with like.

Rerun from the repository root (prints a markdown report):

    .venv/bin/python experiments/bench_kmeans.py --data-dir ../shared/datasets

The data directory defaults to ``$DEEPCLUST_DATA``, else ``<repo>/../shared/datasets``.
Results: ``experiments/results/kmeans.md``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import sklearn
import threadpoolctl
from sklearn.cluster import KMeans, kmeans_plusplus

from deepclust_jax import baselines, metrics
from deepclust_jax.data import load

REPO = pathlib.Path(__file__).resolve().parents[1]


def cpu_model() -> str:
  """The ``model name`` line of /proc/cpuinfo (what ``lscpu`` shows)."""
  for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
    if line.startswith("model name"):
      return line.split(":", 1)[1].strip()
  return platform.processor() or "unknown"


def inertia64(x: np.ndarray, mu: np.ndarray, labels: np.ndarray) -> float:
  """sum_n ||x_n - mu_{labels_n}||^2 in float64."""
  return float(np.sum(np.square(x.astype(np.float64) - mu.astype(np.float64)[labels])))


def timed(fn):
  """Runs ``fn()``; returns its result (ready) and the wall-clock seconds."""
  start = time.perf_counter()
  result = jax.block_until_ready(fn())
  return result, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--data-dir", default=os.environ.get("DEEPCLUST_DATA",
                                                           str(REPO.parent / "shared/datasets")))
  parser.add_argument("--clusters", type=int, default=10)
  parser.add_argument("--n-init", type=int, default=10)
  parser.add_argument("--iters", type=int, default=100)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)

  ds = load("mnist", data_dir=args.data_dir)
  x, y = np.asarray(ds.x, np.float32), np.asarray(ds.y)
  K, n_init, iters = args.clusters, args.n_init, args.iters
  load_before = os.getloadavg()

  x_device = jnp.asarray(x)
  run = lambda seed: baselines.kmeans(jax.random.key(seed), x_device, K, n_init=n_init,
                                      num_iters=iters, tol=0.0)
  _, jax_first = timed(lambda: run(args.seed + 1))
  jax_result, jax_run = timed(lambda: run(args.seed))
  # Cross-check of the compile time, measured directly (ahead-of-time).
  jitted = jax.jit(baselines.kmeans, static_argnums=2, static_argnames=("n_init", "num_iters"))
  _, jax_compile = timed(lambda: jitted.lower(jax.random.key(0), x_device, K, n_init=n_init,
                                              num_iters=iters, tol=0.0).compile())

  sk = KMeans(n_clusters=K, n_init=n_init, max_iter=iters, tol=0.0, algorithm="lloyd",
              random_state=args.seed)
  _, sk_run = timed(lambda: sk.fit(x))

  # Where the time goes: the seeding phase alone (all n_init seedings for
  # JAX, vmapped; one seeding for scikit-learn, which runs them one by one).
  keys = jax.random.split(jax.random.key(args.seed), n_init)
  seed_all = lambda: jax.vmap(lambda k: baselines.kmeans_plusplus(k, x_device, K))(keys)
  timed(seed_all)
  _, jax_seeding = timed(seed_all)
  _, sk_seeding = timed(lambda: kmeans_plusplus(x, K, random_state=args.seed))
  load_after = os.getloadavg()

  jax_labels = np.asarray(jax_result.labels)
  rows = {
      "JAX (deepclust_jax)": (jax_run, float(jax_result.inertia),
                              inertia64(x, np.asarray(jax_result.mu), jax_labels),
                              int(jax_result.n_iter), metrics.evaluate(y, jax_labels)),
      "scikit-learn": (sk_run, float(sk.inertia_), inertia64(x, sk.cluster_centers_, sk.labels_),
                       int(sk.n_iter_), metrics.evaluate(y, sk.labels_)),
  }
  pools = threadpoolctl.threadpool_info()
  print(f"date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
  print(f"cpu: {cpu_model()}, {os.cpu_count()} cores; load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after")
  print(f"python {platform.python_version()}, jax {jax.__version__} "
        f"(backend {jax.default_backend()}), scikit-learn {sklearn.__version__}, "
        f"numpy {np.__version__}")
  print("scikit-learn thread pools: " + ", ".join(
      f"{p['internal_api']} {p['num_threads']} threads" for p in pools))
  print(f"data: mnist {x.shape} {x.dtype}, K={K}, n_init={n_init}, max iterations={iters}, "
        "tol=0\n")
  print(f"JAX first call (trace + compile + run): {jax_first:.1f} s; second call (run): "
        f"{jax_run:.1f} s; compile ~ {jax_first - jax_run:.1f} s (difference), "
        f"{jax_compile:.1f} s (trace + compile ahead of time)")
  print(f"run-time ratio JAX / scikit-learn: {jax_run / sk_run:.2f}")
  print(f"seeding alone: JAX {jax_seeding:.2f} s for all {n_init} seedings; scikit-learn "
        f"{sk_seeding:.2f} s for one (x {n_init} = {n_init * sk_seeding:.1f} s)\n")
  print("| implementation | run s | inertia (own) | inertia (float64) | iterations (best run) "
        "| ACC | NMI | ARI |")
  print("|---|---|---|---|---|---|---|---|")
  for name, (seconds, own, exact, n_iter, scores) in rows.items():
    print(f"| {name} | {seconds:.1f} | {own:.6g} | {exact:.6g} | {n_iter} | "
          f"{scores['acc']:.4f} | {scores['nmi']:.4f} | {scores['ari']:.4f} |")


if __name__ == "__main__":
  main()
