"""Saved models (``rundir.load_model``, ``deepclust predict``) and ``deepclust compare``."""

from __future__ import annotations

import contextlib
import io
import json
import pathlib
import re
import shutil

import numpy as np
import pytest

from deepclust_jax import cli, data, metrics, pipeline, rundir
from deepclust_jax.errors import ModelError

IRIS = data.load("iris")


def main(*argv: str) -> tuple[int, str, str]:
  """``cli.main(argv)`` with its stdout and stderr."""
  stdout, stderr = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
    code = cli.main(list(argv))
  return code, stdout.getvalue(), stderr.getvalue()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, pathlib.Path]:
  """A k-means run and a CM run on iris, two runs each."""
  root = tmp_path_factory.mktemp("saved")
  out = {}
  for name, extra in (("kmeans", ()), ("cm", ("--epochs", "1", "--set", "init=p"))):
    out[name] = root / name
    code, _, err = main("fit", name, "--dataset", "iris", "--runs", "2", *extra,
                        "--out", str(out[name]), "--quiet")
    assert code == 0, err
  return out


def copy_run(run_dir: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
  copy = tmp_path / run_dir.name
  shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("checkpoints", "predict-*"))
  return copy


@pytest.mark.parametrize("name", ["kmeans", "cm"])
def test_load_predicts_the_saved_runs_labels(runs, name):
  run_dir = runs[name]
  model = rundir.load_model(run_dir)
  assert (model.method, model.sample_shape) == (name, (4,))
  summary = rundir.read(run_dir).summary
  assert model.run == summary.get("selected", {"run": 0})["run"]
  labels = np.load(run_dir / "labels.npy")[model.run]
  np.testing.assert_array_equal(model.predict(IRIS.x), labels)
  gamma = model.predict_proba(IRIS.x[:10])
  assert gamma.shape == (10, 3)
  np.testing.assert_allclose(gamma.sum(1), 1, rtol=1e-5)
  assert rundir.load_model(run_dir, method=name).run == model.run


def test_fit_report_holds_the_same_model(tmp_path):
  report = pipeline.fit("kmeans", "iris", out=tmp_path / "run", options={"progress": False})
  np.testing.assert_array_equal(report.model.predict(IRIS.x), report.result.labels[0])
  np.testing.assert_array_equal(rundir.load_model(tmp_path / "run").predict(IRIS.x),
                                report.result.labels[0])


def test_cli_predict_dataset_writes_labels_and_probabilities(runs):
  run_dir = runs["cm"]
  code, out, err = main("predict", str(run_dir), "--dataset", "iris")
  assert (code, err) == (0, "")
  folder = run_dir / "predict-iris"
  assert f"labels: {folder / 'labels.npy'}" in out
  assert f"probabilities: {folder / 'probabilities.npy'}" in out
  labels = np.load(folder / "labels.npy")
  gamma = np.load(folder / "probabilities.npy")
  np.testing.assert_array_equal(labels, gamma.argmax(1))
  model = rundir.load_model(run_dir)
  np.testing.assert_array_equal(labels, np.load(run_dir / "labels.npy")[model.run])
  acc = float(re.search(r"ACC (\d+\.\d)", out).group(1))
  assert acc == pytest.approx(100 * metrics.acc(IRIS.y, labels), abs=0.051)


def test_cli_predict_input_file_to_out(runs, tmp_path):
  x = IRIS.x[::3]
  np.save(tmp_path / "new.npy", x)
  out = tmp_path / "pred"
  code, stdout, err = main("predict", str(runs["kmeans"]), "--input",
                           str(tmp_path / "new.npy"), "--out", str(out))
  assert (code, err) == (0, "")
  assert f"labels: {out / 'labels.npy'}" in stdout and "ACC" not in stdout
  np.testing.assert_array_equal(np.load(out / "labels.npy"),
                                rundir.load_model(runs["kmeans"]).predict(x))
  assert np.load(out / "probabilities.npy").shape == (50, 3)


def test_cli_predict_reads_csv_and_npz(runs, tmp_path):
  x = IRIS.x[::3]
  expected = rundir.load_model(runs["kmeans"]).predict(x)
  np.savetxt(tmp_path / "new.csv", x, delimiter=",")
  np.savez(tmp_path / "one.npz", data=x)
  np.savez(tmp_path / "two.npz", a=x, b=x[:, :2])
  for argv in (["new.csv"], ["one.npz"], ["two.npz", "--array", "a"]):
    out = tmp_path / f"pred-{'-'.join(argv)}"
    code, _, err = main("predict", str(runs["kmeans"]), "--input", str(tmp_path / argv[0]),
                        *argv[1:], "--out", str(out))
    assert (code, err) == (0, ""), argv
    np.testing.assert_array_equal(np.load(out / "labels.npy"), expected)
  expect_one_line_error(["predict", str(runs["kmeans"]), "--input", str(tmp_path / "two.npz")],
                        "holds the arrays a, b: name one with --array")
  expect_one_line_error(["predict", str(runs["kmeans"]), "--input", str(tmp_path / "two.npz"),
                         "--array", "c"], "holds the arrays a, b: no 'c'")
  (tmp_path / "new.parquet").write_text("x")
  expect_one_line_error(["predict", str(runs["kmeans"]), "--input",
                         str(tmp_path / "new.parquet")], "unknown format .parquet")
  (tmp_path / "bad.csv").write_text("1,2\nx,y\n")
  expect_one_line_error(["predict", str(runs["kmeans"]), "--input", str(tmp_path / "bad.csv")],
                        "cannot read")


def expect_one_line_error(argv, message: str) -> None:
  code, _, err = main(*argv)
  assert code == 2, err
  assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
  assert err.startswith("deepclust: error: ") and message in err, err


def test_wrong_width_is_one_line(runs, tmp_path):
  np.save(tmp_path / "narrow.npy", IRIS.x[:, :3])
  expect_one_line_error(["predict", str(runs["cm"]), "--input", str(tmp_path / "narrow.npy")],
                        "X has 3 features, but cm is expecting 4 features as input")
  expect_one_line_error(["predict", str(runs["cm"]), "--dataset", "wine"],
                        "X has 13 features, but cm is expecting 4")
  (tmp_path / "text.npy").write_text("not an array")
  expect_one_line_error(["predict", str(runs["cm"]), "--input", str(tmp_path / "text.npy")],
                        "cannot read")


def test_model_of_another_method_is_refused(runs, tmp_path):
  with pytest.raises(ModelError, match="holds a kmeans model, not cm"):
    rundir.load_model(runs["kmeans"], method="cm")
  mixed = copy_run(runs["kmeans"], tmp_path)
  shutil.copy(runs["cm"] / "model.npz", mixed / "model.npz")
  expect_one_line_error(["predict", str(mixed), "--dataset", "iris"],
                        f"holds a cm model but {mixed}/config.json describes a kmeans run")


def test_corrupt_or_missing_model_is_refused(runs, tmp_path):
  run_dir = copy_run(runs["cm"], tmp_path)
  path = run_dir / "model.npz"
  path.write_bytes(path.read_bytes()[:100])
  expect_one_line_error(["predict", str(run_dir), "--dataset", "iris"],
                        f"{path} is corrupt or unreadable")
  with np.load(runs["cm"] / "model.npz") as saved:
    arrays = {k: saved[k] for k in saved.files if not k.endswith("decoder/bias")}
  np.savez(path, **arrays)
  expect_one_line_error(["predict", str(run_dir), "--dataset", "iris"],
                        "does not fit the cm model of")
  path.unlink()
  expect_one_line_error(["predict", str(run_dir), "--dataset", "iris"],
                        "holds no saved model (model.npz)")
  (run_dir / "config.json").write_text("{not json")
  expect_one_line_error(["predict", str(run_dir), "--dataset", "iris"], "is corrupt or unreadable")
  expect_one_line_error(["predict", str(tmp_path / "nothing"), "--dataset", "iris"],
                        "is not a finished run directory (no config.json)")


CORRUPTIONS = {"labels.npy": ("evaluate", "compare", "plot"),
               "y_true.npy": ("evaluate", "compare", "plot"),
               "metrics.jsonl": ("evaluate", "compare", "plot"),
               "history.jsonl": ("compare", "plot"),
               "config.json": ("evaluate", "compare", "plot", "predict"),
               "model.npz": ("predict",)}


@pytest.mark.parametrize("damage", ["truncated", "missing"])
@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_each_damaged_file_is_named_in_one_line(runs, tmp_path, name, damage):
  run_dir = copy_run(runs["kmeans"], tmp_path)
  path = run_dir / name
  if damage == "truncated":
    path.write_bytes(path.read_bytes()[:20])
    expected = {"labels.npy": "is corrupt or unreadable", "y_true.npy": "is corrupt or unreadable",
                "model.npz": "is corrupt or unreadable", "config.json": "is corrupt or unreadable"
                }.get(name, "line 1 is corrupt")
  else:
    path.unlink()
    expected = name  # "... (no NAME)" or "(missing .../NAME)"
  for command in CORRUPTIONS[name]:
    extra = ["--dataset", "iris"] if command == "predict" else []
    expect_one_line_error([command, str(run_dir), *extra], expected)


def test_compare_prints_one_markdown_table(runs):
  code, out, err = main("compare", str(runs["kmeans"]), str(runs["cm"]))
  assert (code, err) == (0, "")
  lines = out.strip().splitlines()
  assert lines[0].split("|")[1:-1] == [
      " run directory ", " method ", " dataset ", " runs ", " ACC ", " NMI ", " ARI ",
      " selected run ", " epochs ", " wall time "]
  assert len(lines) == 4
  for line, name in zip(lines[2:], ("kmeans", "cm")):
    cells = [c.strip() for c in line.split("|")[1:-1]]
    run_dir = runs[name]
    assert cells[:4] == [str(run_dir), name, "iris", "2"]
    scores = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    acc = np.array([s["acc"] for s in scores])
    assert cells[4] == f"{100 * acc.mean():.1f} ± {100 * acc.std():.1f}"
    assert cells[-1].endswith(" s") and float(cells[-1][:-2]) > 0
  assert lines[2].split("|")[8].strip() == "none" and lines[2].split("|")[9].strip() == "1"
  selected = rundir.read(runs["cm"]).summary["selected"]
  assert lines[3].split("|")[8].strip().startswith(f"{selected['run']} (lowest l_sp): ACC")
  assert lines[3].split("|")[9].strip() == "2"  # one epoch and the averaging epoch
  expect_one_line_error(["compare", str(runs["cm"]), "/nonexistent"],
                        "/nonexistent is not a finished run directory")


@pytest.mark.parametrize("module", ["rundir", "storage", "model", "pipeline"])
def test_docstring_examples(module):
  import doctest
  import importlib

  found = importlib.import_module(f"deepclust_jax.{module}")
  assert doctest.testmod(found, optionflags=doctest.ELLIPSIS, raise_on_error=True).attempted
