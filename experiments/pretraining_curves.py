"""The k-means ACC of the codes every 10 pretraining epochs, per row of ``configs/pretraining.py``.

Reads each AE + k-means row's ``history.jsonl`` (written by
``experiments/reproduce.py experiments/configs/pretraining.py``, which scores
the codes every 10 epochs) and prints one markdown table: the mean over runs
of ``kmeans_acc`` at each scored epoch of the end-to-end phase (``pretrain``;
sdae's layer-wise phases are not scored), x100, with the runs' range at the
last one.

Command:
  python experiments/pretraining_curves.py [--runs-dir runs/pretraining_runs]
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np


def curve(history: pathlib.Path) -> dict[int, np.ndarray]:
  """Scored epoch of phase ``pretrain`` -> the runs' k-means ACC of the codes."""
  out = {}
  for line in history.read_text().splitlines():
    record = json.loads(line)
    if record["phase"] == "pretrain" and "kmeans_acc" in record.get("metrics", {}):
      out[record["epoch"]] = np.asarray(record["metrics"]["kmeans_acc"])
  return out


def label(directory: str) -> str:
  """``AE+k-means_fashion_mnist_dec-r3-eNone`` -> ``fashion_mnist dec``."""
  dataset, recipe = directory.rsplit("-r", 1)[0].removeprefix("AE+k-means_").rsplit("_", 1)
  return f"{dataset} {recipe}"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--runs-dir", default="runs/pretraining_runs", type=pathlib.Path)
  args = parser.parse_args()
  rows = {label(d.name): curve(d / "history.jsonl")
          for d in sorted(args.runs_dir.glob("AE+k-means_*"))
          if (d / "history.jsonl").exists()}
  rows = {k: v for k, v in rows.items() if v}
  print("| AE + k-means | k-means ACC of the codes x100 at epoch (mean over runs) | last: runs |")
  print("|---|---|---|")
  for row, points in rows.items():
    epochs = sorted(points)
    means = " ".join(f"{e}: {100 * points[e].mean():.1f}," for e in epochs).rstrip(",")
    last = ", ".join(f"{100 * a:.1f}" for a in points[epochs[-1]])
    print(f"| {row} | {means} | {last} |")


if __name__ == "__main__":
  main()
