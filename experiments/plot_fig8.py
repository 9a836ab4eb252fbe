"""Draws Fig. 8 of Boubekki et al. (2021) from the run directories of its config.

One row per toy dataset, one column per method (iGMM, CM, AE-CM, and ours:
AE-CM without the early stop), each panel
the selected run's clustering (the lowest selection criterion among runs
that left no cluster empty) with the mean seconds per run in the lower right
corner, as the paper draws it. Runs train together under ``vmap``, so a
run's seconds are its chunk's wall time (compilation included) divided by
the number of runs.

Usage (after ``python experiments/reproduce.py experiments/configs/cm_fig8.py``):
  python experiments/plot_fig8.py [--out experiments/results/cm_fig8.png]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from deepclust_jax import data, rundir  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent


def config() -> dict:
  spec = importlib.util.spec_from_file_location("cm_fig8", HERE / "configs" / "cm_fig8.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def run_dir(row: dict, runs: int) -> pathlib.Path:
  return pathlib.Path("runs") / "cm_fig8" / f"{row['label'].replace(' ', '_')}-r{runs}-eNone"


def main(argv: list[str] | None = None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--out", type=pathlib.Path, default=HERE / "results" / "cm_fig8.png")
  args = p.parse_args(argv)
  cfg = config()
  datasets = list(dict.fromkeys(row["dataset"] for row in cfg["rows"]))
  columns = list(dict.fromkeys(row["column"] for row in cfg["rows"]))
  fig, axes = plt.subplots(len(datasets), len(columns),
                           figsize=(2.6 * len(columns), 2.6 * len(datasets)))
  for row in cfg["rows"]:
    ax = axes[datasets.index(row["dataset"]), columns.index(row["column"])]
    directory = run_dir(row, cfg["runs"])
    x = data.load(row["dataset"]).x
    summary = rundir.read(directory).summary
    labels = np.load(directory / "labels.npy")
    run = summary.get("selected", {}).get("run", 0)
    seconds = [json.loads(l)["seconds"] for l in
               (directory / "metrics.jsonl").read_text().splitlines() if l.strip()]
    ax.scatter(x[:, 0], x[:, 1], c=labels[run], s=4, cmap="tab10", vmin=0, vmax=9)
    ax.text(0.97, 0.03, f"{np.mean(seconds):.2f}s", transform=ax.transAxes,
            ha="right", va="bottom", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    if datasets.index(row["dataset"]) == 0:
      ax.set_title(row["column"])
    if columns.index(row["column"]) == 0:
      ax.set_ylabel(row["dataset"].replace("_", " "))
  fig.tight_layout()
  fig.savefig(args.out, dpi=110)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
