"""Section 8.1 of Tissera et al. (2022): NMM-EM on 70,000 2-D points made from MNIST.

"Neural Mixture Models with Expectation-Maximization for End-to-end Deep
Clustering", Neurocomputing 2022; Table 1, Figs. 4 and 5. A CNN with a 2-unit
bottleneck before its 10-unit output is trained on MNIST's labels (a
supervised helper that only makes the data set); its bottleneck gives one 2-D
point per image. NMM-EM's 2-32-32-10 MLP then clusters the points with eq. (6)
(no transformed view, no KL step), Adam 1e-3, batches of 128, gamma = 5, about
10 epochs: once with the relevance normalisation and once without.

Table 1 is the batch average of each cluster's likelihood h_j = sigmoid(a*_j /
gamma) over 128 random points (without normalisation: sigmoid(a_j / gamma)); the
normalised ones sit at 0.5, eq. (3). Fig. 5 draws h_j over the plane for three
clusters: the one that holds most points without normalisation and two others.

Usage:
  python experiments/nmm_em_2d.py [--data-dir ../shared/datasets] [--small]

Writes experiments/results/nmm_em_2d.md and nmm_em_2d_*.png.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import time

import jax
import jax.numpy as jnp
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import optax

from deepclust_jax import data, metrics, pipeline
from deepclust_jax.losses import nmm_em
from deepclust_jax.models.nmm_em import RelevanceNet, relevance_net

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
# The supervised helper: Table 2's notation, the last layer is the bottleneck.
BOTTLENECK = "C32 M C64 M F128"
# Section 8.1: eq. (6) only, Adam 1e-3, batches of 128, gamma = 5.
CLUSTERING = {"architecture": "mlp", "augment": False, "consistency": False,
              "em_learning_rate": 1e-3, "batch_size": 128}


def bottleneck_points(x: np.ndarray, y: np.ndarray, *, epochs: int = 2, batch_size: int = 256,
                      seed: int = 0) -> np.ndarray:
  """The 2-D bottleneck of a CNN trained on the labels, one row per image, (N, 2).

  ``x`` is (N, side * side) square grey images in [0, 1] (MNIST: 28 x 28).
  The CNN is ``BOTTLENECK`` then a linear
  2-unit bottleneck (a :class:`RelevanceNet` with 2 outputs) then a linear
  10-way classifier, trained by Adam(1e-3) on the softmax cross-entropy.

  Example:
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.random((64, 784), np.float32), rng.integers(0, 10, 64)
    >>> bottleneck_points(x, y, epochs=1, batch_size=32).shape
    (64, 2)
  """
  encoder, head = RelevanceNet(BOTTLENECK, 2), RelevanceNet("", 10)
  side = math.isqrt(x.shape[1])
  images = jnp.asarray(x).reshape(-1, side, side, 1)
  k_enc, k_head, k_order = jax.random.split(jax.random.key(seed), 3)
  params = {"encoder": encoder.init(k_enc, images[:1])["params"],
            "head": head.init(k_head, jnp.zeros((1, 2)))["params"]}
  tx = optax.adam(1e-3)

  def encode(params, batch):
    return encoder.apply({"params": params["encoder"]}, batch)

  def loss(params, batch, labels):
    logits = head.apply({"params": params["head"]}, encode(params, batch))
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  # The images are an argument, not a closed-over constant: XLA would fold the
  # gathers of a 70,000-image constant at compile time.
  @jax.jit
  def epoch(params, opt_state, images, labels, key):
    steps = images.shape[0] // batch_size
    order = jax.random.permutation(key, images.shape[0])[: steps * batch_size]

    def step(carry, idx):
      params, opt_state = carry
      g = jax.grad(loss)(params, images[idx], labels[idx])
      updates, opt_state = tx.update(g, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), None

    (params, opt_state), _ = jax.lax.scan(step, (params, opt_state),
                                          order.reshape(steps, batch_size))
    return params, opt_state

  opt_state = tx.init(params)
  for key in jax.random.split(k_order, epochs):
    params, opt_state = epoch(params, opt_state, images, jnp.asarray(y), key)
  encode = jax.jit(encode)
  return np.concatenate([np.asarray(encode(params, images[i:i + 2048]))
                         for i in range(0, images.shape[0], 2048)])


def standardize(points: np.ndarray) -> np.ndarray:
  """Zero mean, unit variance per axis, float32 (the MLP's inputs; ours, not the paper's)."""
  return ((points - points.mean(0)) / points.std(0)).astype(np.float32)


def cluster_points(z: np.ndarray, y: np.ndarray, *, normalize: bool, epochs: int = 10,
                   seed: int = 0) -> pipeline.FitReport:
  """NMM-EM's 2-32-32-10 MLP on the 2-D points ``z`` with section 8.1's settings."""
  ds = data.Dataset(x=z, y=y.astype(np.int32), name="mnist_2d", num_classes=10)
  return pipeline.fit("nmm_em", ds, epochs=epochs, seed=seed,
                      overrides={**CLUSTERING, "normalize": normalize},
                      options={"progress": False, "eval_every": 1})


def likelihoods(report: pipeline.FitReport, z: np.ndarray, *, batch: bool) -> np.ndarray:
  """h_j(z) = sigmoid(a*_j / gamma), (n, K); sigmoid(a_j / gamma) without normalisation.

  ``batch=True`` normalises with ``z``'s own statistics (a training batch, as
  in Table 1), else with the running ones (any points, e.g. a grid).
  """
  params, state = jax.tree.map(lambda a: jnp.asarray(a[0]),
                               (report.result.params, report.result.state))
  net = relevance_net("mlp", report.config.num_clusters)
  a = net.apply({"params": params}, jnp.asarray(z))
  if report.config.normalize:
    a, _ = nmm_em.normalize_relevance(a, state["mean"], state["var"], train=batch)
  return np.asarray(nmm_em.cluster_likelihood(a, report.config.temperature))


def batch_means(reports: dict[str, pipeline.FitReport], z: np.ndarray,
                seed: int = 0) -> dict[str, np.ndarray]:
  """Table 1's (1/n) sum_i h_j(x_i) per cluster, over one random batch of n = 128."""
  pick = np.random.default_rng(seed).choice(len(z), 128, replace=False)
  return {name: likelihoods(r, z[pick], batch=True).mean(0) for name, r in reports.items()}


def chosen_clusters(report: pipeline.FitReport, means: np.ndarray) -> list[int]:
  """Fig. 5's three clusters: the un-normalised run's largest, then its lowest and
  median batch-mean likelihood among the others (the paper shows 6, 10 and 4)."""
  counts = np.bincount(report.result.labels[0], minlength=means.size)
  largest = int(counts.argmax())
  others = [int(j) for j in np.argsort(means) if j != largest]
  return [largest, others[0], others[len(others) // 2]]


def table1_markdown(means: dict[str, np.ndarray], clusters: list[int]) -> str:
  """Table 1 in markdown, clusters numbered from 1 as in the paper."""
  rows = {"unnormalized": "un-normalised a_ij", "normalized": "normalised a*_ij"}
  lines = ["| (1/n) sum_i h_j(x_i), n = 128 | "
           + " | ".join(f"cluster {j + 1}" for j in clusters) + " |",
           "|---" * (len(clusters) + 1) + "|"]
  lines += [f"| {label} | " + " | ".join(f"{means[name][j]:.4f}" for j in clusters) + " |"
            for name, label in rows.items()]
  return "\n".join(lines)


def plot_fig5(report: pipeline.FitReport, z: np.ndarray, clusters: list[int], title: str):
  """h_j over the plane for each chosen cluster (running statistics), points in grey."""
  lo, hi = z.min(0) - 0.5, z.max(0) + 0.5
  g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
  grid = np.stack([g0.ravel(), g1.ravel()], axis=1).astype(np.float32)
  h = likelihoods(report, grid, batch=False)
  fig, axes = plt.subplots(1, len(clusters), figsize=(5 * len(clusters), 4.5))
  sample = z[np.random.default_rng(0).choice(len(z), min(len(z), 5000), replace=False)]
  for ax, j in zip(axes, clusters):
    filled = ax.contourf(g0, g1, h[:, j].reshape(g0.shape), levels=20, cmap="viridis")
    ax.scatter(*sample.T, s=0.3, color="white", alpha=0.3)
    ax.set_title(f"cluster {j + 1}: h_j(x)")
    fig.colorbar(filled, ax=ax)
  fig.suptitle(title)
  fig.tight_layout()
  return fig


def plot_fig4(z: np.ndarray, y: np.ndarray, labels: np.ndarray):
  """The 2-D points coloured by digit (Fig. 4a) and by NMM-EM cluster (Fig. 4b)."""
  fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
  for ax, colour, title in ((axes[0], y, "(a) input space, by digit"),
                            (axes[1], labels, "(b) NMM-EM clusters")):
    ax.scatter(*z.T, c=colour, s=0.3, cmap="tab10")
    ax.set_title(title)
  fig.tight_layout()
  return fig


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data-dir", default="../shared/datasets")
  parser.add_argument("--cnn-epochs", type=int, default=2)
  parser.add_argument("--epochs", type=int, default=10)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--small", action="store_true", help="10,000 images, 1 + 3 epochs")
  args = parser.parse_args()
  matplotlib.use("Agg")  # files only (the notebook imports this module and draws inline)
  mnist = data.load("mnist", data_dir=args.data_dir)
  x, y = mnist.x, mnist.y
  if args.small:
    keep = np.random.default_rng(args.seed).choice(len(x), 10_000, replace=False)
    x, y, args.cnn_epochs, args.epochs = x[keep], y[keep], 1, 3
  tic = time.perf_counter()
  z = standardize(bottleneck_points(x, y, epochs=args.cnn_epochs, seed=args.seed))
  cnn_seconds = time.perf_counter() - tic
  reports = {name: cluster_points(z, y, normalize=name == "normalized", epochs=args.epochs,
                                  seed=args.seed)
             for name in ("unnormalized", "normalized")}
  means = batch_means(reports, z, args.seed)
  clusters = chosen_clusters(reports["unnormalized"], means["unnormalized"])
  RESULTS.mkdir(exist_ok=True)
  suffix = "_small" if args.small else ""
  for name, report in reports.items():
    fig = plot_fig5(report, z, clusters, f"Fig. 5: cluster distributions, {name}")
    fig.savefig(RESULTS / f"nmm_em_2d_fig5_{name}{suffix}.png", dpi=80)
    plt.close(fig)
  fig = plot_fig4(z, y, reports["normalized"].result.labels[0])
  fig.savefig(RESULTS / f"nmm_em_2d_fig4{suffix}.png", dpi=80)
  plt.close(fig)
  scores = {name: metrics.evaluate(y, r.result.labels[0]) for name, r in reports.items()}
  sizes = {name: np.bincount(r.result.labels[0], minlength=10).tolist()
           for name, r in reports.items()}
  text = [
      "## NMM-EM, the 2-D experiment of section 8.1 (Table 1, Figs. 4 and 5)", "",
      f"Command: `python experiments/nmm_em_2d.py{' --small' if args.small else ''}`; "
      f"{len(x):,} MNIST images, bottleneck CNN `{BOTTLENECK} F2 F10` trained "
      f"{args.cnn_epochs} epoch(s) on the labels ({cnn_seconds:.0f} s), points standardised, "
      f"then the 2-32-32-10 MLP for {args.epochs} epochs (Adam 1e-3, batch 128, gamma 5, "
      f"eq. 6), seed {args.seed}.", "",
      "Table 1 (paper: clusters 4, 6, 10; un-normalised 0.7357, 0.9987, 0.1081; "
      "normalised 0.4979, 0.5072, 0.5043). Ours, the un-normalised run's largest cluster "
      "first, over one random batch of 128 points:", "",
      table1_markdown(means, clusters), "",
      "All ten clusters, batch means: "
      + "; ".join(f"{name} " + ", ".join(f"{v:.3f}" for v in m) for name, m in means.items()),
      "", "Cluster sizes on all points: "
      + "; ".join(f"{name} {s}" for name, s in sizes.items()), "",
      "Scores against the digits: " + "; ".join(
          f"{name} ACC {s['acc']:.3f} NMI {s['nmi']:.3f}" for name, s in scores.items()), "",
      f"Figures: `nmm_em_2d_fig5_unnormalized{suffix}.png` (Fig. 5a), "
      f"`nmm_em_2d_fig5_normalized{suffix}.png` (Fig. 5b), `nmm_em_2d_fig4{suffix}.png` "
      "(Fig. 4). The contours use the running statistics (the grid is no batch).", ""]
  (RESULTS / f"nmm_em_2d{suffix}.md").write_text("\n".join(text))
  print("\n".join(text))


if __name__ == "__main__":
  main()
