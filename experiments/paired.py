"""Paired comparison of rows that share their starts: each run against its own start.

Rows of an experiment config that name a ``pretrained`` start row begin run r
from that row's run r, so the difference "final ACC minus the start's ACC" can
be taken run by run. For every such row this prints, as Markdown: the final
ACC (mean ± std), the paired difference to the start (mean ± std, and how
many runs ended above their start), and for methods that score k-means on
their codes (``kmeans_acc`` in the history) the same for k-means on the final
codes. The start row's own scores are the reference.

Usage (after the config's rows ran):
  python experiments/paired.py experiments/configs/edgam_v2.py [--rows digits]
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from reproduce import load_config, run_directory  # noqa: E402

from deepclust_jax import rundir  # noqa: E402
from deepclust_jax.errors import DeepclustError  # noqa: E402


def final_scores(run_dir: pathlib.Path) -> dict[str, np.ndarray]:
  """Per run: the final ACC, and k-means' ACC on the final codes where it was scored."""
  run = rundir.read(run_dir)
  acc = np.array([m["acc"] for m in run.metrics])
  scored = [r for r in run.history if "metrics" in r]
  out = {"acc": acc}
  if scored and "kmeans_acc" in scored[-1]["metrics"]:
    out["kmeans_acc"] = np.asarray(scored[-1]["metrics"]["kmeans_acc"])
  return out


def _pm(values: np.ndarray) -> str:
  return f"{100 * values.mean():.1f} ± {100 * values.std():.1f}"


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("config")
  p.add_argument("--rows", nargs="*", help="only rows whose label contains one of these")
  p.add_argument("--runs", type=int, help="the --runs the rows ran with (default: the config's)")
  args = p.parse_args(argv)
  config = load_config(args.config)
  rows = {row["label"]: row for row in config["rows"]}

  def directory(row):
    return run_directory(config, row["label"], args.runs)

  starts = {row["pretrained"] for row in rows.values() if "pretrained" in row}
  print("| row | runs | ACC | ACC - start (paired) | above start | k-means on final codes "
        "| k-means - start (paired) |\n|---|---|---|---|---|---|---|")
  for label, row in rows.items():
    if args.rows and not any(s in label for s in args.rows):
      continue
    start_row = rows[row["pretrained"]] if "pretrained" in row else row
    try:
      start = final_scores(directory(start_row))["acc"]
      final = final_scores(directory(row))
    except DeepclustError as e:
      print(f"| {label} | not run ({e}) | | | | | |")
      continue
    if "pretrained" not in row:  # a start, or a row that is paired with none
      what = " (the start)" if label in starts else ""
      print(f"| {label}{what} | {len(start)} | {_pm(start)} | | | | |")
      continue
    diff = final["acc"] - start
    cells = [_pm(final["acc"]), _pm(diff), f"{int((diff > 0).sum())}/{len(diff)}"]
    if "kmeans_acc" in final:
      cells += [_pm(final["kmeans_acc"]), _pm(final["kmeans_acc"] - start)]
    else:
      cells += ["–", "–"]
    print(f"| {label} | {len(diff)} | " + " | ".join(cells) + " |")
  return 0


if __name__ == "__main__":
  sys.exit(main())
