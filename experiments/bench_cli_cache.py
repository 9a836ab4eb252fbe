"""Benchmark: a newcomer's first and repeated ``deepclust fit kmeans --dataset digits``.

Times whole commands, as a user feels them (process start, imports, data,
compilation, the fit, the run directory): ``deepclust fit kmeans --dataset
digits`` cold (an empty JAX compilation cache) and warm (the cache the cold
command filled), beside the same k-means in scikit-learn as one command
(``KMeans(n_clusters=10, n_init=10, max_iter=100)`` on the same 1,797 x 64
pixels scaled to [0, 1], imports included). Medians of ``--repeats`` commands.

Rerun from the repository root (prints a Markdown table for
``experiments/results/kmeans.md``):

    .venv/bin/python experiments/bench_cli_cache.py
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

SKLEARN = ("from sklearn.cluster import KMeans; from sklearn.datasets import load_digits; "
           "x = load_digits().data / 16; "
           "KMeans(n_clusters=10, n_init=10, max_iter=100, random_state=0).fit(x)")


def timed(command: list[str], env: dict[str, str]) -> float:
  tic = time.perf_counter()
  subprocess.run(command, env=env, check=True, capture_output=True)
  return time.perf_counter() - tic


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  deepclust = str(pathlib.Path(sys.executable).parent / "deepclust")
  rows = []
  for _ in range(args.repeats):
    with tempfile.TemporaryDirectory() as scratch:
      env = {**os.environ, "DEEPCLUST_COMPILATION_CACHE": f"{scratch}/cache"}
      fit = [deepclust, "fit", "kmeans", "--dataset", "digits", "--quiet"]
      cold = timed(fit + ["--out", f"{scratch}/cold"], env)
      warm = timed(fit + ["--out", f"{scratch}/warm"], env)
      off = timed(fit + ["--out", f"{scratch}/off"], {**env, "DEEPCLUST_COMPILATION_CACHE": "0"})
      rows.append((cold, warm, off, timed([sys.executable, "-c", SKLEARN], env)))
  cold, warm, off, sk = (statistics.median(column) for column in zip(*rows))
  print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, median of {args.repeats}\n")
  print("| command (digits, 1,797 x 64, K = 10, 10 inits) | wall s |\n|---|---|")
  print(f"| `deepclust fit kmeans`, cold (empty compilation cache) | {cold:.1f} |")
  print(f"| `deepclust fit kmeans`, warm (cache of the cold command) | {warm:.1f} |")
  print(f"| `deepclust fit kmeans`, cache off (`DEEPCLUST_COMPILATION_CACHE=0`) | {off:.1f} |")
  print(f"| scikit-learn `KMeans` as one `python -c` command | {sk:.1f} |")


if __name__ == "__main__":
  main()
