"""``deepclust plot``: the PNGs of a run directory."""

from __future__ import annotations

import contextlib
import doctest
import io

import matplotlib.image
import numpy as np
import pytest

from deepclust_jax import cli, pipeline, plots
from deepclust_jax.data import Dataset

PNG = b"\x89PNG\r\n\x1a\n"
TINY_AECM = {"hidden": "8", "latent": 4, "epochs": 1, "pretrain_epochs": 1, "cm_epochs": 1,
             "batch_size": 16, "pretrain_batch_size": 16, "kmeans_restarts": 1}


def assert_png(path) -> None:
  assert path.read_bytes()[:8] == PNG, path
  image = matplotlib.image.imread(path)
  assert image.ndim == 3 and min(image.shape[:2]) > 50


def tiny_images(n: int = 60) -> Dataset:
  """Three kinds of 4x4 one-channel images: a bright top, left or diagonal."""
  rng = np.random.default_rng(0)
  y = np.arange(n) % 3
  patterns = np.zeros((3, 4, 4))
  patterns[0, :2], patterns[1, :, :2] = 1, 1
  patterns[2][np.eye(4, dtype=bool)] = 1
  x = patterns[y].reshape(n, 16) + 0.1 * rng.normal(size=(n, 16))
  return Dataset(x=x.astype(np.float32), y=y.astype(np.int32), name="tiny_images",
                 num_classes=3, image_shape=(4, 4, 1))


@pytest.fixture(scope="module")
def aecm_run(tmp_path_factory):
  ds = tiny_images()
  out = tmp_path_factory.mktemp("plots") / "aecm"
  pipeline.fit("aecm", ds, runs=2, overrides={**TINY_AECM, "init": "p"}, out=out,
               options={"progress": False, "eval_every": 1})
  return ds, out


def test_plot_run_writes_every_picture(aecm_run):
  ds, run_dir = aecm_run
  written, skipped = plots.plot_run(run_dir, ds.x, max_points=50)
  assert skipped == {}
  assert [p.name for p in written] == ["curves.png", "confusion.png", "map.png",
                                       "centroids.png"]
  for path in written:
    assert path.parent == run_dir
    assert_png(path)


def test_cli_plot_says_what_it_skipped(aecm_run):
  _, run_dir = aecm_run
  (run_dir / "map.png").unlink(missing_ok=True)
  stdout, stderr = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
    code = cli.main(["plot", str(run_dir), "--max-points", "50"])
  assert (code, stderr.getvalue()) == (0, "")
  out = stdout.getvalue()
  assert f"wrote {run_dir / 'centroids.png'}" in out
  # tiny_images is not a registry dataset: no data for the map, said in one line.
  assert "skipped map.png: the training data could not be loaded: unknown dataset" in out
  assert not (run_dir / "map.png").exists()


def test_cli_plot_out_puts_the_pictures_elsewhere(aecm_run, tmp_path):
  _, run_dir = aecm_run
  out = tmp_path / "figures" / "aecm"
  stdout, stderr = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
    code = cli.main(["plot", str(run_dir), "--max-points", "50", "--out", str(out)])
  assert (code, stderr.getvalue()) == (0, "")
  assert f"wrote {out / 'curves.png'}" in stdout.getvalue()
  assert_png(out / "confusion.png")
  blocked = tmp_path / "file"
  blocked.write_text("")
  with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr):
    code = cli.main(["plot", str(run_dir), "--out", str(blocked / "sub")])
  assert code == 2 and "cannot write pictures to" in stderr.getvalue()


def test_plot_run_on_a_non_run_dir(tmp_path):
  stderr = io.StringIO()
  with contextlib.redirect_stderr(stderr):
    assert cli.main(["plot", str(tmp_path)]) == 2
  assert stderr.getvalue().startswith(f"deepclust: error: {tmp_path} is not a finished run")


def test_curves_merge_chunks_of_runs(tmp_path):
  history = [
      {"chunk": c, "runs": [c], "phase": phase, "epoch": e, "global_epoch": g,
       "terms": {"loss": [float(g + c)]},
       **({"metrics": {"acc": [0.5], "nmi": [0.4], "ari": [0.3]}} if e == 2 else {})}
      for c in (0, 1) for g, (phase, e) in enumerate([("a", 1), ("a", 2), ("b", 1)], 1)]
  phases = plots._per_phase(history)
  assert list(phases) == ["a", "b"]
  assert phases["a"]["terms"]["loss"] == {1: [1.0, 2.0], 2: [2.0, 3.0]}
  assert phases["a"]["metrics"]["acc"] == {2: [0.5, 0.5]}
  assert phases["b"]["metrics"] == {}
  fig = plots.plot_curves(history, tmp_path / "curves.png", "cm on iris")
  assert_png(tmp_path / "curves.png")
  assert fig._suptitle.get_text() == "cm on iris"
  # Phase "b" has one epoch: its value is written beside its marker (mean of 3 and 4).
  texts = [t.get_text() for ax in fig.axes for t in ax.texts]
  assert "3.5" in texts


def test_map_draws_each_cluster_in_its_matched_class_colour(tmp_path):
  rng = np.random.default_rng(0)
  y = np.repeat(np.arange(3), 20)
  x = rng.normal(size=(60, 5)) + 4 * y[:, None]
  predicted = np.array([7, 2, 5])[y]  # the right partition under other names
  predicted[0] = 9  # one stray cluster, matched to no class
  fig = plots.plot_map(x, predicted, y, tmp_path / "map.png", title="t")
  left, right = (ax.collections[0].get_facecolors() for ax in fig.axes[:2])
  agree = (left == right).all(1)
  assert agree.sum() == 59 and not agree[0]
  labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
  assert labels == ["cluster 2 = class 1", "cluster 5 = class 2", "cluster 7 = class 0",
                    "cluster 9"]
  assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == [
      "class 0", "class 1", "class 2"]
  assert fig.axes[1].get_title() == "inputs: 60 of 60 points, t-SNE, coloured by true class"
  # Fewer points than PCA's 50 dimensions: it keeps as many as there are points.
  wide = plots.plot_map(rng.normal(size=(60, 80)), predicted, y, tmp_path / "w.png",
                        max_points=30)
  assert "30 of 60 points, PCA to 30 dimensions, t-SNE" in wide.axes[0].get_title()


def test_cm_centroids_are_drawn_and_every_figure_titled(tmp_path, monkeypatch):
  ds = tiny_images()
  out = tmp_path / "cm"
  pipeline.fit("cm", ds, overrides={"epochs": 2}, out=out, options={"progress": False})
  titles = []
  save = plots._save
  monkeypatch.setattr(plots, "_save",
                      lambda fig, path, title: titles.append(title) or save(fig, path, title))
  written, skipped = plots.plot_run(out, ds.x, max_points=50)
  assert [p.name for p in written] == ["curves.png", "confusion.png", "map.png",
                                       "centroids.png"], skipped
  assert all(t.startswith("cm on tiny_images") and t.endswith("(cm)") for t in titles)
  assert "run 0 of 1" in titles[1]


def test_doctests():
  result = doctest.testmod(plots, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.attempted > 0 and result.failed == 0
