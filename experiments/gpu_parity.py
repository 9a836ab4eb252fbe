"""Short fixed configs on the CPU and on the default accelerator, epoch by epoch.

For results that differ between the CPU and a GPU (``results/gpu_parity.md``):
each workload below trains the same method, config, data subset and seed
twice, once on the CPU and once on the other side, and the script prints per
epoch the largest difference of the logged loss terms over the runs, then the
agreement of the final labels (the fraction of samples in the same cluster
once the two partitions' clusters are matched, and the ARI between them). The other side is the default
accelerator (``jax.devices()[0]``); on a machine without one, ``--tf32``
compares the CPU's float32 products with the CPU's emulation of TF32
(``matmul_dtype=tf32``, the dense workloads only), the GPU's default for
float32. ``--chunked`` compares, on the default device, the runs trained
together under ``vmap`` with the same runs trained one at a time
(``chunk_runs=1``): the two paths' reduction orders differ, their results
should not beyond that. When a device is lent, run this first (and with
``--chunked``), then the accelerator rows.

Workloads (fixed, small): AE pretraining on 5,000 MNIST images (AE + k-means,
Adam, 5 epochs), VaDE's first 2 joint epochs after 2 pretraining epochs on
the same images, 1 NMM-EM two-fold epoch on 2,560 images, 20 CM epochs on
digits.

Usage:
  python experiments/gpu_parity.py --data-dir ../shared/datasets [--tf32 | --chunked]
      [--only vade_joint]
"""

from __future__ import annotations

import argparse
import sys

import jax
import numpy as np
from sklearn.metrics import adjusted_rand_score

from deepclust_jax import data, methods, metrics
from deepclust_jax.engine import TrainOptions, train

RUNS = 2
WORKLOADS = {  # name: (method, dataset, samples, overrides, dense: matmul_dtype applies)
    "ae_pretraining": ("ae_kmeans", "mnist", 5000,
                       {"recipe": "adam", "pretrain_epochs": 5, "pretrain_lr": 1e-3}, True),
    "vade_joint": ("vade", "mnist", 5000,
                   {"recipe": "adam", "pretrain_epochs": 2, "pretrain_lr": 1e-3, "epochs": 2},
                   True),
    "nmm_em_epoch": ("nmm_em", "mnist", 2560, {"epochs": 1}, False),
    "cm_epochs": ("cm", "digits", None, {"epochs": 20}, False),
}


def run(name: str, device: jax.Device, data_dir: str | None, matmul_dtype: str | None,
        chunk_runs: int | None = None):
  method_name, dataset, samples, overrides, _ = WORKLOADS[name]
  ds = data.load(dataset, data_dir=data_dir)
  x = ds.x[:samples] if samples else ds.x
  y = ds.y[:samples] if samples else ds.y
  overrides = {**overrides, **({"matmul_dtype": matmul_dtype} if matmul_dtype else {})}
  config = methods.resolve(method_name, dataset=dataset, num_classes=ds.num_classes,
                           overrides=overrides)
  method = methods.get(method_name).build(config, ds.sample_shape)
  with jax.default_device(device):
    return train(method, x, y, options=TrainOptions(runs=RUNS, progress=False,
                                                    eval_every=1, chunk_runs=chunk_runs))


def by_epoch(history) -> dict[tuple[int, str], dict[str, np.ndarray]]:
  """Each epoch's logged terms, runs in order: with ``chunk_runs`` an epoch has
  one record per chunk, each naming its runs."""
  parts: dict[tuple[int, str], dict[int, dict]] = {}
  for record in history:
    for i, r in enumerate(record["runs"]):
      parts.setdefault((record["global_epoch"], record["phase"]), {})[r] = {
          k: np.asarray(v)[i] for k, v in record["terms"].items()}
  return {epoch: {k: np.stack([runs[r][k] for r in sorted(runs)]) for k in runs[min(runs)]}
          for epoch, runs in parts.items()}


def compare(name: str, a, b) -> list[str]:
  lines = [f"## {name}", "", "| epoch | phase | largest |difference| of a logged term |",
           "|---|---|---|"]
  ea, eb = by_epoch(a.history), by_epoch(b.history)
  for epoch, phase in sorted(ea):
    ta, tb = ea[epoch, phase], eb.get((epoch, phase), {})
    diffs = [np.max(np.abs(ta[k] - tb[k])) for k in ta if k in tb]
    lines.append(f"| {epoch} | {phase} | {max(diffs) if diffs else float('nan'):.3g} |")
  # Cluster numbers are arbitrary: agreement after matching them (Hungarian), and ARI.
  same = [metrics.evaluate(la, lb)["acc"] for la, lb in zip(a.labels, b.labels)]
  ari = [adjusted_rand_score(la, lb) for la, lb in zip(a.labels, b.labels)]
  lines += ["", f"final labels (runs 0..{RUNS - 1}): the same cluster, after matching the "
                f"clusters, for {', '.join(f'{s:.3f}' for s in same)} of the samples; ARI "
                f"between the partitions {', '.join(f'{v:.3f}' for v in ari)}", ""]
  return lines


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--data-dir")
  p.add_argument("--tf32", action="store_true",
                 help="compare CPU float32 with CPU-emulated TF32 products (no accelerator)")
  p.add_argument("--chunked", action="store_true",
                 help="compare the vmapped runs with the runs one at a time, on the default "
                      "device")
  p.add_argument("--only", nargs="*", choices=sorted(WORKLOADS))
  args = p.parse_args(argv)
  cpu = jax.devices("cpu")[0]
  other = jax.devices()[0]
  if args.tf32 and args.chunked:
    p.error("--tf32 and --chunked are two different comparisons: pass one")
  if args.tf32:
    sides = ((cpu, "float32", None), (cpu, "tf32", None))
    print(f"# CPU float32 against CPU-emulated TF32 products ({cpu.device_kind})\n")
  elif args.chunked:
    sides = ((other, None, None), (other, None, 1))
    print(f"# {RUNS} runs under vmap against one at a time, on {other.platform} "
          f"({other.device_kind})\n")
  elif other.platform == "cpu":
    print("no accelerator here: pass --tf32 (emulated TF32 products) or --chunked")
    return 2
  else:
    sides = ((cpu, None, None), (other, None, None))
    print(f"# CPU ({cpu.device_kind}) against {other.platform} ({other.device_kind})\n")
  for name in args.only or WORKLOADS:
    dense = WORKLOADS[name][4]
    if args.tf32 and not dense:
      print(f"## {name}\n\nskipped: matmul_dtype=tf32 covers the dense networks only\n")
      continue
    results = [run(name, device, args.data_dir, dtype, chunk)
               for device, dtype, chunk in sides]
    print("\n".join(compare(name, *results)), flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
