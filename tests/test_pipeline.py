"""``pipeline.fit`` on in-memory data, summaries and run directories."""

from __future__ import annotations

import json

import chex
import numpy as np
import pytest

from deepclust_jax import metrics, pipeline, rundir
from deepclust_jax.data import Dataset
from deepclust_jax.errors import ConfigError, DeepclustError, InputError, NonFiniteError
from deepclust_jax.summary import SCORES, format_summary

QUIET = {"progress": False}


def three_blobs(n: int = 90, seed: int = 0) -> Dataset:
  rng = np.random.default_rng(seed)
  y = np.arange(n) % 3
  centres = np.array([[0.0, 2.0], [2.0, 0.0], [-2.0, -2.0]])
  x = (centres[y] + rng.normal(size=(n, 2))).astype(np.float32)
  return Dataset(x=x, y=y.astype(np.int32), name="three_blobs", num_classes=3)


@pytest.fixture(scope="module")
def kmeans_run(tmp_path_factory):
  out = tmp_path_factory.mktemp("runs") / "kmeans"
  ds = three_blobs()
  report = pipeline.fit("kmeans", ds, runs=2, seed=3, overrides={"n_init": "2"}, out=out,
                        options=QUIET)
  return ds, report


def test_fit_in_memory_dataset(kmeans_run):
  ds, report = kmeans_run
  assert (report.method, report.dataset) == ("kmeans", "three_blobs")
  assert report.config.num_clusters == 3  # from num_classes
  assert report.config.n_init == 2
  chex.assert_shape(report.result.labels, (2, 90))
  assert set(report.summary) == {"runs", "mean", "std", "collapsed"}  # k-means selects no run
  assert report.summary["runs"] == 2
  for key in SCORES:
    per_run = [metrics.evaluate(ds.y, l)[key] for l in report.result.labels]
    assert report.summary["mean"][key] == pytest.approx(np.mean(per_run))
    assert report.summary["std"][key] == pytest.approx(np.std(per_run))
  assert 0.5 < report.summary["mean"]["ari"] < 1.0  # overlapping blobs


def test_run_directory_contents(kmeans_run):
  ds, report = kmeans_run
  run_dir = report.run_dir
  saved = json.loads((run_dir / "config.json").read_text())
  assert saved["dataset"] == "three_blobs"
  assert (saved["num_samples"], saved["num_features"], saved["seed"]) == (90, 2, 3)
  assert saved["config"]["num_clusters"] == 3
  np.testing.assert_array_equal(np.load(run_dir / "y_true.npy"), ds.y)
  np.testing.assert_array_equal(np.load(run_dir / "labels.npy"), report.result.labels)
  lines = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
  assert [l["key"] for l in lines] == ["fold_in(key(3), 0)", "fold_in(key(3), 1)"]
  assert "three_blobs" in (run_dir / "summary.md").read_text()
  again = rundir.read(run_dir).summary
  assert set(again) == set(report.summary)
  for key in ("mean", "std"):
    assert again[key] == pytest.approx(report.summary[key])


def test_resume_with_other_settings_is_refused(kmeans_run):
  ds, report = kmeans_run
  with pytest.raises(InputError, match="its seed differs from this command"):
    pipeline.fit("kmeans", ds, runs=2, seed=4, overrides={"n_init": "2"},
                 out=report.run_dir, resume=True, options=QUIET)
  with pytest.raises(InputError, match="holds a finished run"):
    pipeline.fit("kmeans", ds, runs=2, seed=3, overrides={"n_init": "2"},
                 out=report.run_dir, options=QUIET)


def test_a_failed_run_says_what_to_do_and_overwrite_replaces_it(tmp_path, monkeypatch):
  ds, out = three_blobs(30), tmp_path / "run"

  def broken(*args, **kwargs):
    raise NonFiniteError("loss is NaN in phase train, epoch 3")

  monkeypatch.setattr(pipeline, "train", broken)
  with pytest.raises(NonFiniteError):
    pipeline.fit("cm", ds, epochs=2, out=out, options=QUIET)
  monkeypatch.undo()
  with pytest.raises(InputError, match=r"holds a run that failed \(NonFiniteError: loss is "
                     r"NaN in phase train, epoch 3\); pass --resume .* --overwrite"):
    pipeline.fit("cm", ds, epochs=2, out=out, options=QUIET)
  with pytest.raises(InputError, match="pass one"):
    pipeline.fit("cm", ds, epochs=2, out=out, resume=True, overwrite=True, options=QUIET)
  report = pipeline.fit("kmeans", ds, out=out, overwrite=True, options=QUIET)
  assert not (out / "failed.json").exists() and (out / "labels.npy").exists()
  assert rundir.read_config(out)["method"] == "kmeans"
  assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(
      p.name for p in report.run_dir.iterdir() if not p.name.startswith("."))


def test_a_second_writer_is_refused_while_the_first_holds_the_directory(tmp_path):
  import subprocess
  import sys
  out = tmp_path / "run"
  out.mkdir()
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time; from deepclust_jax import rundir\n"
       f"with rundir.lock({str(out)!r}):\n  print('held', flush=True); time.sleep(60)"],
      stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(InputError, match=rf"in use by another deepclust process "
                                         rf"\(pid {holder.pid}\)"):
      pipeline.fit("kmeans", three_blobs(30), out=out, options=QUIET)
    assert not (out / "config.json").exists()
  finally:
    holder.kill()
    holder.wait()
  pipeline.fit("kmeans", three_blobs(30), out=out, options=QUIET)  # released by the kernel


def test_in_memory_fit_writes_nothing(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  ds = three_blobs(60, seed=1)
  report = pipeline.fit("cm", ds, runs=2, epochs=1, overrides={"batch_size": 20},
                        options=QUIET)
  assert report.run_dir is None
  assert list(tmp_path.iterdir()) == []
  assert len(report.result.history) == 2  # one epoch and the averaging epoch
  # CM ranks runs by L_sp: the summary names the selected run and its scores.
  selected = report.summary["selected"]
  assert selected["run"] == int(np.argmin(report.result.terms["l_sp"]))
  assert selected["acc"] == report.result.metrics[selected["run"]]["acc"]


@pytest.mark.parametrize("bad, kind", [(np.nan, "NaN"), (np.inf, "Inf")])
def test_non_finite_data_is_refused_before_anything_is_written(tmp_path, bad, kind):
  ds = three_blobs(30)
  x = ds.x.copy()
  x[7, 1] = bad
  bad_ds = Dataset(x=x, y=ds.y, name="bad", num_classes=3)
  out = tmp_path / "run"
  with pytest.raises(InputError, match=rf"{kind} values in 1 row\(s\), first at row 7"):
    pipeline.fit("kmeans", bad_ds, out=out, options=QUIET)
  assert not out.exists()


def test_float64_beyond_float32_is_refused_not_turned_into_nan(tmp_path):
  ds = three_blobs(30)
  x = ds.x.astype(np.float64)
  x[4, 0] = 1e39  # finite in float64, inf in the float32 that JAX computes in
  message = r"beyond float32's range .* 1 row\(s\), first at row 4 \(1e\+39\)"
  with pytest.raises(InputError, match=message):
    pipeline.fit("kmeans", Dataset(x=x, y=ds.y, name="big", num_classes=3),
                 out=tmp_path / "run", options=QUIET)
  assert not (tmp_path / "run").exists()
  model = pipeline.fit("kmeans", ds, options=QUIET).model
  with pytest.raises(InputError, match=message):
    model.predict(x)


@pytest.mark.parametrize("k, message", [(1, "at least 2"), (31, "larger than the number")])
def test_bad_number_of_clusters(tmp_path, k, message):
  out = tmp_path / "run"
  with pytest.raises(InputError, match=message):
    pipeline.fit("gmm", three_blobs(30), overrides={"num_clusters": k}, out=out,
                 options=QUIET)
  assert not out.exists()


def test_bad_runs_and_config():
  with pytest.raises(InputError, match="runs=0"):
    pipeline.fit("kmeans", three_blobs(30), runs=0, options=QUIET)
  with pytest.raises(ConfigError, match="unknown kmeans config key 'epochs'"):
    pipeline.fit("kmeans", three_blobs(30), epochs=3, options=QUIET)


def test_out_path_that_is_a_file(tmp_path):
  path = tmp_path / "file"
  path.write_text("not a directory")
  with pytest.raises(InputError, match="cannot create run directory"):
    pipeline.fit("kmeans", three_blobs(30), out=path, options=QUIET)


def test_summary_prints_the_resolved_budget(tmp_path):
  report = pipeline.fit("cm", "iris", runs=2, out=tmp_path / "run",
                        overrides={"epochs": 40, "tol": 0.01}, options=QUIET)
  (budget,) = report.summary["budget"]
  # iris has no CM preset: batches of 16 (N/25 is 6, at least 16), 9 steps an epoch.
  assert {k: budget[k] for k in ("phase", "epochs", "batch_size", "steps_per_epoch")} == {
      "phase": "train", "epochs": 41, "batch_size": 16, "steps_per_epoch": 9}
  low, mean, high = budget["trained"]
  assert low <= mean <= high < 41
  text = (tmp_path / "run" / "summary.md").read_text()
  assert "- train: 41 epochs x 9 steps of 16 = 369 steps; runs trained" in text
  saved = json.loads((tmp_path / "run" / "config.json").read_text())
  assert saved["budget"][0]["steps"] == 369


def test_a_batch_larger_than_the_data_is_reported_not_hidden():
  report = pipeline.fit("cm", "iris", overrides={"batch_size": 500}, epochs=1, options=QUIET)
  (budget,) = report.summary["budget"]
  assert (budget["batch_size"], budget["batch_size_asked"]) == (150, 500)
  assert "(batch_size 500 asked, more than the N samples)" in format_summary(
      report.summary)
  fitting = pipeline.fit("cm", "iris", overrides={"batch_size": 50}, epochs=1, options=QUIET)
  assert "batch_size_asked" not in fitting.summary["budget"][0]


def test_reading_a_directory_that_is_not_a_finished_run(tmp_path):
  (tmp_path / "labels.npy").write_bytes(b"")
  with pytest.raises(DeepclustError, match=r"not a finished run directory.*y_true\.npy"):
    rundir.read(tmp_path)
  with pytest.raises(DeepclustError, match="not a finished run directory"):
    rundir.read(tmp_path / "missing")


def test_default_run_dir():
  path = pipeline.default_run_dir("cm", "mnist")
  assert path.parent.name == "runs"
  assert path.name.startswith("cm-mnist-")
