"""Pictures of a run directory: training curves, a 2-D map, the confusion matrix, centroids.

``deepclust plot RUN_DIR`` calls :func:`plot_run`, which writes PNGs into the
run directory with matplotlib's Agg backend (no display needed):

* ``curves.png``: every loss term (top) and ACC/NMI/ARI on the scored epochs
  (bottom) per epoch, one panel per phase; lines are means over runs, bands
  their range; a phase of one epoch (a fit) is drawn as markers with values;
* ``map.png``: a 2-D t-SNE map (van der Maaten and Hinton, "Visualizing Data
  using t-SNE", JMLR 2008) of the codes if the method has them, else of the
  inputs, on a subsample, coloured by predicted and by true label; each
  cluster takes the colour of the class the Hungarian matching gives it, so
  agreement shows as the same colours side by side;
* ``confusion.png``: classes x clusters, the clusters ordered by the Hungarian
  matching that ACC uses (Kuhn 1955), so a perfect clustering is diagonal;
* ``centroids.png``: the centroids in input space as images, for image
  datasets and methods that have them (the CM's decoder weights, the AE-CM's
  decoded centroids: Fig. 6 in Boubekki et al. 2021).

Each figure is titled with the method, the dataset and the run shown; each
``plot_*`` function returns its :class:`matplotlib.figure.Figure` after
saving it, so that it can be inspected.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: works without a display

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402
from scipy.optimize import linear_sum_assignment  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402
import tqdm  # noqa: E402

from deepclust_jax import data as data_lib  # noqa: E402
from deepclust_jax import metrics, rundir  # noqa: E402
from deepclust_jax.errors import DeepclustError, InputError  # noqa: E402

SCORE_NAMES = {"acc": "ACC", "nmi": "NMI", "ari": "ARI", "kmeans_acc": "k-means ACC (codes)",
               "kmeans_nmi": "k-means NMI (codes)", "kmeans_ari": "k-means ARI (codes)"}


def _per_phase(history: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
  """``{phase: {"terms"|"metrics": {name: {epoch: [value per run]}}}}``, chunks merged."""
  phases: dict[str, dict[str, Any]] = {}
  for record in sorted(history, key=lambda r: (r["global_epoch"], r["chunk"])):
    phase = phases.setdefault(record["phase"], {"terms": {}, "metrics": {}})
    for kind in ("terms", "metrics"):
      for name, values in record.get(kind, {}).items():
        phase[kind].setdefault(name, {}).setdefault(record["epoch"], []).extend(values)
  return phases


def _lines(ax: Any, series: Mapping[str, Mapping[int, list[float]]],
           labels: Mapping[str, str] | None = None) -> None:
  """One line per series (mean over runs) with the runs' range as a band."""
  for name, by_epoch in series.items():
    epochs = sorted(by_epoch)
    values = np.array([by_epoch[e] for e in epochs], dtype=np.float64)
    label = (labels or {}).get(name, name)
    line, = ax.plot(epochs, values.mean(1), marker="o" if len(epochs) <= 20 else None,
                    markersize=4 if len(epochs) > 1 else 8, label=label)
    if len(epochs) == 1:  # a fit phase: its one value, written beside its marker
      ax.annotate(f"{values.mean():.4g}", (epochs[0], values.mean()), xytext=(6, 0),
                  textcoords="offset points", va="center", fontsize="small",
                  color=line.get_color())
    if values.shape[1] > 1:
      ax.fill_between(epochs, values.min(1), values.max(1), alpha=0.2,
                      color=line.get_color())


def _save(fig: Figure, path: str | pathlib.Path, title: str) -> Figure:
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return fig


def plot_curves(history: Sequence[Mapping[str, Any]], path: str | pathlib.Path,
                title: str = "") -> Figure:
  """Loss terms (top row) and scores (bottom row) per epoch, one column per phase.

  Loss terms of very different sizes and signs share a panel on a symlog axis;
  scores exist only on scored epochs (``TrainOptions.eval_every`` and each
  phase's last epoch).
  """
  phases = _per_phase(history)
  fig, axes = plt.subplots(2, len(phases), figsize=(4.5 * len(phases), 7), squeeze=False)
  for column, (name, phase) in enumerate(phases.items()):
    top, bottom = axes[:, column]
    _lines(top, phase["terms"])
    top.set_yscale("symlog")
    top.set_title(f"phase {name!r}: loss terms")
    top.legend(fontsize="small")
    if phase["metrics"]:
      _lines(bottom, phase["metrics"], SCORE_NAMES)
      bottom.set_ylim(0, 1)
      bottom.legend(fontsize="small")
    else:
      bottom.text(0.5, 0.5, "not scored", ha="center", va="center",
                  transform=bottom.transAxes)
    bottom.set_title(f"phase {name!r}: scores")
    bottom.set_xlabel("epoch")
    epochs = sorted({e for series in phase["terms"].values() for e in series})
    for ax in (top, bottom):
      ax.xaxis.set_major_locator(MaxNLocator(integer=True))
      if len(epochs) == 1:  # a FitPhase: one tick, not a stretched axis around it
        ax.set_xticks(epochs)
  return _save(fig, path, title)


def embedding_steps(shape: Sequence[int]) -> list[str]:
  """What :func:`embed_2d` does to rows of ``shape`` (n, d), in words.

  Example:
    >>> embedding_steps((40, 64)), embedding_steps((500, 64)), embedding_steps((9, 2))
    (['PCA to 40 dimensions', 't-SNE'], ['PCA to 50 dimensions', 't-SNE'], [])
  """
  n, d = shape
  if d <= 2:
    return []
  dims = min(50, n)  # the usual speed-up; t-SNE's neighbours barely change
  return [f"PCA to {dims} dimensions"] * (d > dims) + ["t-SNE"]


def embed_2d(x: np.ndarray, seed: int = 0) -> np.ndarray:
  """2-D t-SNE of the rows of ``x`` (PCA to at most 50 dimensions first); 2-D input is kept.

  Example:
    >>> embed_2d(np.random.default_rng(0).normal(size=(40, 5))).shape
    (40, 2)
    >>> embed_2d(np.random.default_rng(0).normal(size=(30, 60))).shape
    (30, 2)
  """
  x = np.asarray(x, dtype=np.float64)
  if x.shape[1] <= 2:
    return x
  dims = min(50, x.shape[0])
  if x.shape[1] > dims:
    x = PCA(dims, random_state=seed).fit_transform(x)
  perplexity = min(30.0, (x.shape[0] - 1) / 3)
  return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)


def matched_colours(true: np.ndarray, predicted: np.ndarray) -> dict[int, int]:
  """Colour index of every class and cluster: a cluster takes its matched class's.

  Classes take the indices of their rank; a cluster the Hungarian matching
  (the one ACC uses) leaves without a class takes the next free index.

  Example:
    >>> matched_colours(np.array([0, 0, 1, 1]), np.array([7, 7, 3, 5]))
    {7: 0, 3: 1, 5: 2}
  """
  return _colours(*matched_contingency(true, predicted))


def _colours(counts: np.ndarray, clusters: np.ndarray) -> dict[int, int]:
  colours = {int(c): j for j, c in enumerate(clusters[:min(len(clusters), counts.shape[0])])}
  extra = iter(range(counts.shape[0], counts.shape[0] + len(clusters)))
  return {int(c): colours[int(c)] if int(c) in colours else next(extra) for c in clusters}


def plot_map(x: np.ndarray, predicted: np.ndarray, true: np.ndarray | None,
             path: str | pathlib.Path, *, max_points: int = 2000, seed: int = 0,
             what: str = "inputs", title: str = "") -> Figure:
  """The 2-D map of at most ``max_points`` rows of ``x``, by predicted and true label.

  With ``true``, each cluster is drawn in the colour of its matched class
  (:func:`matched_colours`), and both panels have a legend.
  """
  rng = np.random.default_rng(seed)
  keep = np.sort(rng.choice(len(x), min(len(x), max_points), replace=False))
  xy = embed_2d(x[keep], seed)
  how = ", ".join([f"{len(keep)} of {len(x)} points", *embedding_steps(x[keep].shape)])
  classes = np.unique(true) if true is not None else np.array([], int)
  if true is not None:
    counts, clusters = matched_contingency(true, predicted)  # one matching for both
    colour_of, matched = _colours(counts, clusters), dict(zip(clusters, classes))
  else:
    colour_of, matched = {int(c): j for j, c in enumerate(np.unique(predicted))}, {}
  palette = plt.get_cmap("tab10" if max(colour_of.values()) < 10 else "tab20")
  panels = [("predicted cluster", predicted[keep], colour_of,
             lambda c: f"cluster {c}" + (f" = class {matched[c]}" if c in matched else ""))]
  if true is not None:
    panels.append(("true class", true[keep], {int(c): j for j, c in enumerate(classes)},
                   lambda c: f"class {c}"))
  fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 5.5), squeeze=False)
  for ax, (name, labels, colours, describe) in zip(axes[0], panels):
    ax.scatter(xy[:, 0], xy[:, 1], s=6,
               c=[palette(colours[int(l)] % palette.N) for l in labels])
    ax.legend(handles=[Line2D([], [], marker="o", linestyle="", color=palette(j % palette.N),
                              label=describe(c)) for c, j in sorted(colours.items())],
              fontsize="x-small", loc="center left", bbox_to_anchor=(1, 0.5))
    ax.set_title(f"{what}: {how}, coloured by {name}", fontsize="medium")
    ax.set_xticks([])
    ax.set_yticks([])
  return _save(fig, path, title)


def matched_contingency(y: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Classes x clusters counts with the clusters reordered by the ACC matching.

  Returns:
    (counts, clusters): cluster ``clusters[j]`` is column j; matched clusters
    come in the order of their classes, unmatched ones after them.

  Example:
    >>> counts, clusters = matched_contingency(np.array([0, 0, 1]), np.array([5, 5, 2]))
    >>> counts.tolist(), clusters.tolist()
    ([[2, 0], [0, 1]], [5, 2])
  """
  counts = metrics.contingency_matrix(y, labels)
  clusters = np.unique(labels)
  rows, cols = linear_sum_assignment(counts, maximize=True)
  order = [*cols[np.argsort(rows)], *(j for j in range(counts.shape[1]) if j not in cols)]
  return counts[:, order], clusters[order]


def plot_confusion(y: np.ndarray, labels: np.ndarray, path: str | pathlib.Path,
                   title: str = "") -> Figure:
  """The matched confusion matrix, counts written in the cells when it is small."""
  counts, clusters = matched_contingency(y, labels)
  fig, ax = plt.subplots(figsize=(1 + 0.5 * counts.shape[1], 1 + 0.5 * counts.shape[0]))
  ax.imshow(counts, cmap="Blues")
  if counts.size <= 400:
    for (i, j), n in np.ndenumerate(counts):
      ax.text(j, i, str(n), ha="center", va="center", fontsize="x-small",
              color="white" if n > counts.max() / 2 else "black")
  ax.set_xticks(range(len(clusters)), [str(c) for c in clusters])
  ax.set_yticks(range(counts.shape[0]), [str(c) for c in np.unique(y)])
  ax.set_xlabel("cluster (ordered by the Hungarian matching)")
  ax.set_ylabel("class")
  ax.set_title(f"ACC {100 * metrics.acc(y, labels):.1f}")
  return _save(fig, path, title)


def plot_centroids(centroids: np.ndarray, image_shape: Sequence[int],
                   path: str | pathlib.Path, title: str = "") -> Figure:
  """The K centroids as images, each scaled to its own value range."""
  images = np.asarray(centroids).reshape(len(centroids), *image_shape)
  columns = min(len(images), 10)
  rows = -(-len(images) // columns)
  fig, axes = plt.subplots(rows, columns, figsize=(1.2 * columns, 1.3 * rows), squeeze=False)
  for k, ax in enumerate(axes.flat):
    ax.axis("off")
    if k < len(images):
      image = images[k]
      image = (image - image.min()) / max(np.ptp(image), 1e-12)
      ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray")
      ax.set_title(str(k), fontsize="small")
  return _save(fig, path, title)


def plot_run(run_dir: str | pathlib.Path, x: np.ndarray | None = None, *,
             data_dir: str | None = None, max_points: int = 2000, seed: int = 0,
             progress: bool = False,
             out: str | pathlib.Path | None = None) -> tuple[list[pathlib.Path], dict[str, str]]:
  """Writes the PNGs of a finished run directory.

  Args:
    run_dir: written by ``deepclust fit`` / :func:`deepclust_jax.pipeline.fit`.
    x: the training data for the 2-D map; None loads the run's dataset by
      name (from ``data_dir`` first).
    max_points: rows of the subsample drawn on the map.
    seed: of the subsample and of t-SNE.
    out: the folder of the PNGs (made if missing); None is ``run_dir``.
    progress: show a progress bar over the pictures (on stderr).

  Returns:
    The files written, and the pictures skipped with the reason.

  Raises:
    DeepclustError: ``run_dir`` is not a finished run directory, or ``out``
      cannot be written.
  """
  run = rundir.read(run_dir)  # one clear error if it is not a finished run
  out = pathlib.Path(out) if out is not None else run.path
  try:
    out.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise InputError(f"cannot write pictures to {out}: {e}") from None
  config = run.config
  written, skipped = [], {}
  bar = tqdm.tqdm(total=4, desc="curves.png", disable=not progress, leave=False)
  try:
    model, reason = run.model, ""
  except DeepclustError as e:  # e.g. a run made before models were saved
    model, reason = None, str(e)
  shown = model.run if model is not None else run.summary.get("selected", {}).get("run", 0)
  title = f"{run.method} on {run.dataset}: run {shown} of {run.labels.shape[0]} ({run.path.name})"
  if run.history:
    written.append(out / "curves.png")
    plot_curves(run.history, written[-1], f"{run.method} on {run.dataset}: "
                f"{run.labels.shape[0]} run(s), mean and range ({run.path.name})")
  else:
    skipped["curves.png"] = "history.jsonl is empty"
  bar.update()
  bar.set_description("confusion.png")
  labels, y = run.labels[shown], run.y_true
  written.append(out / "confusion.png")
  plot_confusion(y, labels, written[-1], title)
  bar.update()
  if x is None:
    try:
      x = data_lib.load(config["dataset"], data_dir=data_dir).x
    except DeepclustError as e:
      skipped["map.png"] = f"the training data could not be loaded: {e}"
  if x is not None and np.shape(x) != (config["num_samples"], config["num_features"]):
    skipped["map.png"] = (f"data of shape {np.shape(x)} is not the training data "
                          f"({config['num_samples']} x {config['num_features']})")
  elif x is not None:
    bar.set_description(f"map.png (t-SNE of {min(len(x), max_points)} points)")
    codes = model is not None and model.has_codes
    written.append(out / "map.png")
    plot_map(model.transform(x) if codes else np.asarray(x), labels, y, written[-1],
             max_points=max_points, seed=seed, what="codes" if codes else "inputs",
             title=title)
  bar.update()
  bar.set_description("centroids.png")
  shape = config["sample_shape"]
  if model is None:
    skipped["centroids.png"] = reason
  elif len(shape) != 3:
    skipped["centroids.png"] = "not an image dataset"
  elif model.built.decoded_centroids is None:
    skipped["centroids.png"] = f"{model.method} has no centroids in input space"
  else:
    written.append(out / "centroids.png")
    plot_centroids(model.decoded_centroids(), shape, written[-1], title)
  bar.update()
  bar.close()
  return written, skipped
