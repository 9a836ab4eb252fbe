"""DGG's graph quality: neighbour purity in input space vs the Siamese embedding.

Purity is the fraction of an anchor's k nearest neighbours that share its
label (``graph.neighbour_purity``). The Siamese network is trained as the
``dgg`` method trains it (its ``input_graph``, ``siamese`` and ``graph``
phases), with every other phase set to zero epochs.

Command (the figures in experiments/results/vade_dgg.md: a random 10,000-image
subset of MNIST, seed 0, 20 Siamese epochs, N_t = 2):
  python experiments/neighbour_purity.py --data-dir ../shared/datasets --subset 10000
"""

from __future__ import annotations

import argparse

import jax.numpy as jnp
import numpy as np

from deepclust_jax import data, graph, pipeline


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--data-dir")
  p.add_argument("--dataset", default="mnist")
  p.add_argument("--subset", type=int, default=0, help="random rows (0: all)")
  p.add_argument("--siamese-epochs", type=int, default=20)
  p.add_argument("--k", type=int, nargs="*", default=[1, 3, 10, 20])
  args = p.parse_args(argv)
  ds = data.load(args.dataset, data_dir=args.data_dir)
  if args.subset:
    keep = np.sort(np.random.default_rng(0).choice(ds.x.shape[0], args.subset, replace=False))
    ds = data.Dataset(ds.x[keep], ds.y[keep], f"{ds.name}_{args.subset}", ds.num_classes,
                      ds.image_shape)
  y = jnp.asarray(ds.y)
  report = pipeline.fit("dgg", ds, overrides={
      "pretrain_epochs": 0, "gamma_epochs": 0, "epochs": 0, "kmeans_restarts": 1,
      "siamese_epochs": args.siamese_epochs, "num_neighbours": max(args.k)},
      options={"progress": False})
  embedded = jnp.asarray(report.result.state["nbrs"][0])
  print("| k | input space | Siamese embedding |\n|---|---|---|")
  for k in args.k:
    inputs = graph.neighbour_purity(graph.knn(jnp.asarray(ds.x), k), y)
    print(f"| {k} | {float(inputs):.3f} | {float(graph.neighbour_purity(embedded[:, :k], y)):.3f} |")


if __name__ == "__main__":
  main()
