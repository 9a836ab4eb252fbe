"""How many units of an NMM-EM network's last hidden layer are alive, per checkpoint.

The diagnosis of the two-fold collapse on USPS (``results/nmm_em.md``): for
each checkpoint of each run directory, the network is applied (evaluation mode)
to the first ``--samples`` images, and the script prints, for the last hidden
layer (the F32 of Table 2's MNIST network), how many units are positive on at
least one image, the mean fraction of images a unit is positive on, the mean
pre-activation, and the spread (std over images) of the relevance scores a.
A network whose last hidden units are all dead gives the same a to every
image: one cluster, and the EM loss log 2.

Usage:
  python experiments/nmm_em_units.py runs/nmm_em/usps_emonly runs/nmm_em/usps_twofold ...
      [--data-dir ../shared/datasets] [--samples 3000]
"""

from __future__ import annotations

import argparse
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from deepclust_jax import data
from deepclust_jax.data.augment import grayscale, sobel
from deepclust_jax.methods.nmm_em import default_architecture
from deepclust_jax.models.nmm_em import ARCHITECTURES, RelevanceNet


def network(run_dir: pathlib.Path) -> tuple[RelevanceNet, dict, tuple[int, ...]]:
  """The run's network, its resolved config and its sample shape."""
  saved = json.loads((run_dir / "config.json").read_text())
  config, shape = saved["config"], tuple(saved["sample_shape"])
  architecture = config["architecture"] or default_architecture(shape)
  net = RelevanceNet(ARCHITECTURES.get(architecture, architecture), config["num_clusters"],
                     config.get("activation", "relu"), config.get("batch_norm", False))
  return net, {**config, "dataset": saved["dataset"]}, shape


def inputs(x: np.ndarray, shape: tuple[int, ...], config: dict) -> jax.Array:
  x = jnp.asarray(x)
  if len(shape) != 3:
    return x
  gray = grayscale(x.reshape(x.shape[0], *shape))
  return sobel(gray) if config["sobel"] else gray


def report(run_dir: pathlib.Path, x: jax.Array, net: RelevanceNet) -> list[str]:
  rows = []
  checkpoints = run_dir / "checkpoints" / "chunk_0"
  for step in sorted((int(p.name) for p in checkpoints.iterdir() if p.name.isdigit())):
    saved = ocp.StandardCheckpointer().restore((checkpoints / str(step) / "state").resolve())
    first = lambda tree: jax.tree.map(lambda v: jnp.asarray(v)[0], tree)  # noqa: E731
    variables = {"params": first(saved["params"])}
    if "batch_stats" in saved["state"]:
      variables["batch_stats"] = first(saved["state"]["batch_stats"])
    a, captured = net.apply(variables, x, capture_intermediates=True,
                            mutable=["intermediates"])
    outputs = {k: v["__call__"][0] for k, v in captured["intermediates"].items()
               if k != "relevance" and "__call__" in v}
    pre = list(outputs.values())[-1]  # the last hidden layer, before its activation
    pre = pre.reshape(pre.shape[0], -1)
    positive = np.asarray(pre > 0)
    rows.append(f"| {run_dir.name} | {step} | {positive.any(0).sum()} of {pre.shape[1]} | "
                f"{positive.mean():.3f} | {float(pre.mean()):.2f} | "
                f"{float(jnp.std(a, axis=0).mean()):.3f} |")
  return rows


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("run_dirs", nargs="+", type=pathlib.Path)
  p.add_argument("--data-dir")
  p.add_argument("--samples", type=int, default=3000)
  args = p.parse_args()
  print("| run | epoch | units positive on some image | mean fraction positive | "
        "mean pre-activation | std of a over images (mean over clusters) |")
  print("|---|---|---|---|---|---|")
  for run_dir in args.run_dirs:
    net, config, shape = network(run_dir)
    ds = data.load(config["dataset"], data_dir=args.data_dir)
    print("\n".join(report(run_dir, inputs(ds.x[:args.samples], shape, config), net)))


if __name__ == "__main__":
  main()
