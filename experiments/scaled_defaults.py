"""Config defaults on data without a preset: MNIST-sized defaults against scaled ones.

The CM and AE-CM defaults were written for MNIST (batches of 256, 150 epochs,
a 500-500-2000 autoencoder). On a table of a few hundred rows the batch is
clamped to the whole table, so 150 epochs are 150 steps. This script trains
10 runs of each variant on the UCI tables that ship with scikit-learn (the
paper's Table 9 has iris, wine and breast) and on digits, and writes
``experiments/results/scaled_defaults.md``:

* ``before``: the MNIST-sized defaults, as every dataset without a preset got.
* ``scaled, at most E epochs``: batch N/25 within [16, 256] and the step
  budget of the MNIST defaults, capped at E passes over the data; for AE-CM on
  tables of at most 32 features, the paper's d-2K-d autoencoder.

Usage (about 15 minutes on 2 CPU cores):
  python experiments/scaled_defaults.py [--runs 10] [--out experiments/results/scaled_defaults.md]
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

from deepclust_jax import data, methods, pipeline
from deepclust_jax.methods import aecm
from deepclust_jax.methods.common import scaled_sgd

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from reproduce import hardware  # noqa: E402

# The paper's Table 9 (random initialisation, 10 runs, hyper-parameters found
# by Bayesian optimisation per dataset): ACC, NMI, ARI x100.
TABLE9 = {("cm", "iris"): (81.5, 63.4, 59.1), ("aecm", "iris"): (94.4, 85.0, 78.9),
          ("cm", "wine"): (89.6, 82.2, 82.0), ("aecm", "wine"): (93.0, 85.4, 86.0),
          ("cm", "breast_cancer"): (47.5, 48.4, 35.9),
          ("aecm", "breast_cancer"): (72.8, 58.0, 72.9)}

BEFORE = {"cm": {"batch_size": 256, "epochs": 150},
          "aecm": {"batch_size": 256, "epochs": 150, "hidden": "500,500,2000", "latent": 10}}
CASES = [("cm", "iris"), ("cm", "wine"), ("cm", "breast_cancer"), ("cm", "digits"),
         ("aecm", "iris"), ("aecm", "wine"), ("aecm", "breast_cancer")]


def variants(method: str, ds: data.Dataset, caps: list[int]) -> list[tuple[str, dict]]:
  out = [("before (MNIST-sized defaults)", BEFORE[method])]
  n = ds.x.shape[0]
  scaled = methods.get(method).scaled(n, ds.sample_shape, ds.num_classes, {})
  for cap in caps:
    epochs = scaled_sgd(n, {}, 150, max_epochs=cap)["epochs"]
    out.append((f"scaled, at most {cap} epochs", {**scaled, "epochs": epochs}))
  if method == "aecm":  # the architecture, at the default cap
    default = scaled_sgd(n, {}, 150, max_epochs=aecm.MAX_EPOCHS)["epochs"]
    out.append((f"scaled, at most {aecm.MAX_EPOCHS} epochs, 500-500-2000",
                {**scaled, "epochs": default, "hidden": "500,500,2000", "latent": 10}))
  return out


def main(argv: list[str] | None = None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--runs", type=int, default=10)
  p.add_argument("--caps", default="150,500,1500")
  p.add_argument("--cases", nargs="*", metavar="METHOD:DATASET",
                 help="run only these; rows already in --out for other cases are kept")
  p.add_argument("--out", type=pathlib.Path,
                 default=pathlib.Path("experiments/results/scaled_defaults.md"))
  args = p.parse_args(argv)
  caps = [int(c) for c in args.caps.split(",")]
  cases = ([tuple(c.split(":")) for c in args.cases] if args.cases else CASES)
  # Rows of earlier invocations, by (method, dataset, variant), kept unless rerun.
  rows = {}
  if args.out.exists():
    for line in args.out.read_text().splitlines():
      cells = [c.strip() for c in line.strip("|").split("|")]
      if len(cells) == 10 and cells[0] in BEFORE:
        rows[tuple(cells[:3])] = line
  for method, name in cases:
    ds = data.load(name)
    for label, overrides in variants(method, ds, caps):
      tic = time.perf_counter()
      report = pipeline.fit(method, ds, runs=args.runs, overrides=overrides,
                            options={"progress": False})
      wall = time.perf_counter() - tic
      steps = sum(b["steps"] for b in report.summary["budget"])
      mean, std = report.summary["mean"], report.summary["std"]
      scores = " | ".join(f"{100 * mean[k]:.1f} ± {100 * std[k]:.1f}"
                          for k in ("acc", "nmi", "ari"))
      line = (f"| {method} | {name} | {label} | {min(report.config.batch_size, ds.x.shape[0])} | "
              f"{report.config.epochs} | {steps} | {scores} | {wall:.0f} |")
      print(line, flush=True)
      rows[(method, name, label)] = line
      write(args, rows)


def write(args: argparse.Namespace, rows: dict) -> None:
  """The results file: every recorded row, case by case, Table 9 beside."""
  lines = ["# Defaults on data without a preset", "",
           f"Command: `python experiments/scaled_defaults.py --runs {args.runs} "
           f"--caps {args.caps}` (`--cases METHOD:DATASET ...` reruns some)  ",
           f"Hardware: {hardware()}", "",
           "| method | dataset | variant | batch | epochs | steps | ACC | NMI | ARI | "
           "wall s |", "|---|---|---|---|---|---|---|---|---|---|"]
  for method, name in CASES:
    lines += [line for key, line in rows.items() if key[:2] == (method, name)]
    if (method, name) in TABLE9 and any(key[:2] == (method, name) for key in rows):
      acc, nmi, ari = TABLE9[method, name]
      lines.append(f"| {method} | {name} | paper, Table 9 (tuned alpha, beta, lambda) | | | | "
                   f"{acc} | {nmi} | {ari} | |")
  args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
  main()
