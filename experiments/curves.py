"""Tabulates a loss term and ACC over the epochs of training runs, as markdown.

Reads ``history.jsonl`` of each run directory (written by the engine) and
prints, for every epoch where ACC was evaluated, the term's value per run and
the ACC per run. Used for the AE-CM random-initialisation plateau in
``experiments/results/aecm_plateau.md``.

Usage:
  python experiments/curves.py RUN_DIR [RUN_DIR ...] [--term sparsity] [--phase joint]
"""

from __future__ import annotations

import argparse
import json
import pathlib


def table(run_dir: pathlib.Path, term: str, phase: str) -> str:
  lines = [f"### `{run_dir.name}`", "", f"| epoch | {term} per run | ACC per run |",
           "|---|---|---|"]
  for line in (run_dir / "history.jsonl").read_text().splitlines():
    record = json.loads(line)
    if record["phase"] != phase or "metrics" not in record:
      continue
    values = ", ".join(f"{v:.1f}" for v in record["terms"][term])
    accs = ", ".join(f"{100 * a:.1f}" for a in record["metrics"]["acc"])
    lines.append(f"| {record['epoch']} | {values} | {accs} |")
  return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("run_dirs", nargs="+", type=pathlib.Path)
  p.add_argument("--term", default="sparsity")
  p.add_argument("--phase", default="joint")
  args = p.parse_args(argv)
  print("\n".join(table(d, args.term, args.phase) for d in args.run_dirs))


if __name__ == "__main__":
  main()
