"""The ``deepclust`` command line, called in-process (and once as a program)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from deepclust_jax import cli, data, metrics, methods
from deepclust_jax.engine import collapsed_runs, select_run

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
MEAN_ROW = re.compile(r"\| mean ± std over (\d+) run\(s\) \| (.*) \|")
SELECTED_ROW = re.compile(r"\| selected run (\d+) \(lowest l_sp\) \| (.*) \|")


def run(capsys, *argv: str) -> tuple[int, str, str]:
  code = cli.main(list(argv))
  out, err = capsys.readouterr()
  return code, out, err


def main_captured(*argv: str) -> tuple[int, str, str]:
  """``cli.main(argv)`` with its stdout and stderr (for module-scoped fixtures)."""
  stdout, stderr = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
    code = cli.main(list(argv))
  return code, stdout.getvalue(), stderr.getvalue()


def table(text: str) -> dict[str, list[str]]:
  """Rows of a ``deepclust datasets`` / ``methods`` table by their first cell."""
  return {line.split()[0]: line.split()[1:] for line in text.splitlines()[1:] if line.strip()}


def mean_scores(text: str) -> tuple[int, list[float]]:
  """(runs, [ACC, NMI, ARI] means x100) parsed from a printed summary."""
  match = MEAN_ROW.search(text)
  assert match, text
  means = [float(cell.split("±")[0]) for cell in match.group(2).split("|")]
  return int(match.group(1)), means


def read_metrics(run_dir: pathlib.Path) -> list[dict]:
  return [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def kmeans_iris(tmp_path_factory):
  out = tmp_path_factory.mktemp("cli") / "kmeans-iris"
  return (*main_captured("fit", "kmeans", "--dataset", "iris", "--runs", "3", "--out", str(out),
                         "--quiet"), out)


@pytest.fixture(scope="module")
def cm_five(tmp_path_factory):
  out = tmp_path_factory.mktemp("cli") / "cm-five"
  argv = ["fit", "cm", "--dataset", "five_gaussians", "--epochs", "2", "--runs", "2",
          "--set", "init=p", "--set", "alpha=3", "--out", str(out), "--quiet"]
  return (*main_captured(*argv), argv, out)


@pytest.fixture(autouse=True)
def no_env_data_dir(monkeypatch):
  monkeypatch.delenv(data.ENV_VAR, raising=False)


def test_console_script_lists_methods():
  script = shutil.which("deepclust", path=str(pathlib.Path(sys.executable).parent))
  assert script is not None, "the deepclust entry point is not installed"
  proc = subprocess.run([script, "methods"], capture_output=True, text=True, timeout=120,
                        check=False)
  assert proc.returncode == 0, proc.stderr
  rows = table(proc.stdout)
  assert sorted(rows) == methods.names()
  assert "Traceback" not in proc.stderr


def test_methods_name_lists_keys_phases_and_what_epochs_sets(capsys):
  code, out, err = run(capsys, "methods", "aecm", "--dataset", "mnist", "--set", "init=p")
  assert (code, err) == (0, "")
  keys = {line.split()[0]: line.split()[1:] for line in out.splitlines()
          if line.startswith("  ") and len(line.split()) >= 3}
  assert keys["alpha"] == ["10.0", "230.0", "*"]  # Table 13's preset, marked
  assert keys["pretrain_epochs"] == ["100", "100"]
  assert "pretrain 100, mixture (closed form), cm 100, joint 151" in out
  assert "--epochs N sets: joint; the other phases keep their own keys" in out
  code, out, _ = run(capsys, "methods", "kmeans")
  assert code == 0 and "fit refuses --epochs" in out
  code, _, err = run(capsys, "methods", "aecmm")
  assert code == 2 and "did you mean 'aecm'" in err


def test_datasets_lists_every_dataset_and_availability(capsys, tmp_path):
  code, out, err = run(capsys, "datasets", "--data-dir", str(tmp_path))
  assert (code, err) == (0, "")
  assert out.splitlines()[0].split()[:3] == ["name", "K", "available"]
  rows = table(out)
  assert list(rows) == data.names()
  for name, row in rows.items():
    assert row[0] == str(data.get(name).num_classes)
  for name in ("mnist", "fashion_mnist", "usps", "pendigits", "cifar10"):
    assert rows[name][1] == "no"
    assert rows[name][2].startswith(str(tmp_path))
  for name in ("iris", "digits", "five_gaussians", "blobs"):
    assert rows[name][1] == "yes"


@pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason="no shared datasets")
def test_datasets_finds_shared_files(capsys):
  code, out, _ = run(capsys, "datasets", "--data-dir", str(SHARED_DATA))
  rows = table(out)
  assert code == 0
  assert rows["mnist"][1:] == ["yes", str(SHARED_DATA / "mnist")]


def test_fit_kmeans_writes_a_complete_run_dir(kmeans_iris):
  code, out, err, out_dir = kmeans_iris
  assert (code, err) == (0, "")
  assert out.startswith("kmeans on iris (3 run(s), seed 0)")
  assert "| | ACC | NMI | ARI |" in out
  assert out.rstrip().endswith(f"run directory: {out_dir}")
  saved = json.loads((out_dir / "config.json").read_text())
  assert (saved["method"], saved["dataset"], saved["runs"]) == ("kmeans", "iris", 3)
  assert saved["config"] == {"num_clusters": 3, "n_init": 10, "num_iters": 100, "tol": 1e-4}
  lines = read_metrics(out_dir)
  assert [l["run"] for l in lines] == [0, 1, 2]
  labels = np.load(out_dir / "labels.npy")
  assert labels.shape == (3, 150)
  y = data.load("iris").y
  for line, run_labels in zip(lines, labels):
    assert {"run", "seed", "acc", "nmi", "ari", "terms", "seconds"} <= set(line)
    assert line["seed"] == 0 and line["seconds"] > 0
    assert "inertia" in line["terms"]
    scores = metrics.evaluate(y, run_labels)
    assert [line[k] for k in ("acc", "nmi", "ari")] == pytest.approx(
        [scores[k] for k in ("acc", "nmi", "ari")])
  assert lines[0]["acc"] > 0.8  # k-means on standardized iris
  history = [json.loads(l) for l in (out_dir / "history.jsonl").read_text().splitlines()]
  assert [h["phase"] for h in history] == ["lloyd"]
  summary = (out_dir / "summary.md").read_text()
  assert summary.startswith("# kmeans on iris")
  assert "selected" not in summary


def test_fit_prints_summary_and_evaluate_reprints_it(kmeans_iris, capsys):
  _, fit_out, _, out_dir = kmeans_iris
  code, out, err = run(capsys, "evaluate", str(out_dir))
  assert (code, err) == (0, "")
  runs, means = mean_scores(out)
  assert runs == 3
  assert mean_scores(fit_out) == (runs, means)
  lines = read_metrics(out_dir)
  expected = [100 * np.mean([l[k] for l in lines]) for k in ("acc", "nmi", "ari")]
  np.testing.assert_allclose(means, expected, atol=0.051)
  assert mean_scores((out_dir / "summary.md").read_text()) == (runs, means)


def test_fit_cm_with_overrides_and_selected_run(cm_five, capsys):
  code, out, err, _, out_dir = cm_five
  assert (code, err) == (0, "")
  config = json.loads((out_dir / "config.json").read_text())["config"]
  assert (config["init"], config["alpha"], config["epochs"]) == ("p", 3.0, 2)
  assert (config["batch_size"], config["optimizer"]) == (20, "sgd")  # paper preset kept
  assert config["num_clusters"] == 5
  lines = read_metrics(out_dir)
  l_sp = [l["terms"]["l_sp"] for l in lines]
  match = SELECTED_ROW.search(out)
  assert match, out
  selected = int(match.group(1))
  assert selected == select_run(l_sp, collapsed_runs(np.load(out_dir / "labels.npy"), 5))
  printed = [float(v) for v in match.group(2).split("|")]
  np.testing.assert_allclose(printed, [100 * lines[selected][k] for k in ("acc", "nmi", "ari")],
                             atol=0.051)
  history = (out_dir / "history.jsonl").read_text().splitlines()
  assert len(history) == 3  # two epochs and the averaging epoch
  # evaluate agrees, selected run included.
  code, again, _ = run(capsys, "evaluate", str(out_dir))
  assert code == 0
  assert SELECTED_ROW.search(again).groups() == match.groups()
  assert mean_scores(again) == mean_scores(out)


def resume_copy(cm_five, capsys, tmp_path, *extra: str) -> tuple[int, str, pathlib.Path]:
  """Copies the finished CM run and runs its command again with --resume."""
  code, _, _, argv, out_dir = cm_five
  assert code == 0
  copy = tmp_path / "copy"
  shutil.copytree(out_dir, copy)
  (copy / "labels.npy").unlink()
  argv = [str(copy) if a == str(out_dir) else a for a in argv]
  code, _, err = run(capsys, *argv, *extra, "--resume")
  return code, err, copy


def test_resume_finished_run_gives_same_labels(cm_five, capsys, tmp_path):
  code, err, copy = resume_copy(cm_five, capsys, tmp_path)
  assert (code, err) == (0, "")
  out_dir = cm_five[-1]
  np.testing.assert_array_equal(np.load(copy / "labels.npy"), np.load(out_dir / "labels.npy"))
  for resumed, first in zip(read_metrics(copy), read_metrics(out_dir)):
    assert [resumed[k] for k in ("acc", "nmi", "ari")] == [first[k] for k in ("acc", "nmi", "ari")]
    assert resumed["terms"]["l_sp"] == pytest.approx(first["terms"]["l_sp"])
  assert len((copy / "history.jsonl").read_text().splitlines()) == 3


def test_resume_finished_run_keeps_final_loss_terms(cm_five, capsys, tmp_path):
  code, _, copy = resume_copy(cm_five, capsys, tmp_path)
  assert code == 0
  out_dir = cm_five[-1]
  assert [l["terms"] for l in read_metrics(copy)] == [l["terms"] for l in read_metrics(out_dir)]


def test_resume_with_other_config_is_refused(cm_five, capsys, tmp_path):
  code, err, copy = resume_copy(cm_five, capsys, tmp_path, "--set", "alpha=4")
  assert code == 2
  assert err.strip() == (f"deepclust: error: cannot resume {copy}: its config differs from "
                         "this command's; pass --overwrite to replace it")


@pytest.fixture
def cm_with_new_key(monkeypatch):
  """CM as if the library had gained a config key after the run was made."""
  from deepclust_jax.methods import registry
  spec = registry.get("cm")
  later = dataclasses.make_dataclass("LaterCMConfig", [("new_key", int, 0)],
                                     bases=(spec.config,), frozen=True)
  monkeypatch.setitem(registry._REGISTRY, "cm", dataclasses.replace(spec, config=later))


@pytest.mark.parametrize("value, code", [("0", 0), ("1", 2)])
def test_resume_across_a_new_config_key(cm_five, capsys, tmp_path, cm_with_new_key, value, code):
  """At its default a key the run never saw is no difference; at another value it is."""
  code_, err, copy = resume_copy(cm_five, capsys, tmp_path, "--set", f"new_key={value}")
  assert code_ == code, err
  if code == 0:
    np.testing.assert_array_equal(np.load(copy / "labels.npy"),
                                  np.load(cm_five[-1] / "labels.npy"))
    assert "new_key" not in json.loads((copy / "config.json").read_text())["config"]
  else:
    assert "its config differs" in err


@pytest.mark.parametrize("argv, message", [
    (["fit", "kmeanz", "--dataset", "iris"], "unknown method 'kmeanz' (did you mean 'kmeans'?)"),
    (["fit", "kmeans", "--dataset", "irsi"], "unknown dataset 'irsi' (did you mean 'iris'"),
    (["fit", "kmeans", "--dataset", "iris", "--set", "num_clusters=1"],
     "number of clusters K=1 must be at least 2"),
    (["fit", "kmeans", "--dataset", "iris", "--set", "num_clusters=1000"],
     "K=1000 is larger than the number of samples N=150"),
    (["fit", "cm", "--dataset", "iris", "--set", "alpah=3"],
     "unknown cm config key 'alpah' (did you mean 'alpha'?)"),
    (["fit", "cm", "--dataset", "iris", "--set", "alpha=abc"],
     "alpha='abc' is not a valid float"),
    (["fit", "cm", "--dataset", "iris", "--set", "alpha"],
     "--set expects key=value, got 'alpha'"),
    (["fit", "cm", "--dataset", "iris", "--set", "init=x"], "init='x' is not one of"),
])
def test_bad_input_is_one_line_on_stderr(capsys, tmp_path, argv, message):
  out_dir = tmp_path / "run"
  code, _, err = run(capsys, *argv, "--out", str(out_dir), "--quiet")
  assert code == 2
  assert "Traceback" not in err
  assert len(err.strip().splitlines()) == 1, err
  assert err.startswith("deepclust: error: ")
  assert message in err
  assert not out_dir.exists()  # nothing written: the same --out works once fixed


def test_missing_dataset_files_are_reported_without_traceback(capsys, tmp_path):
  code, _, err = run(capsys, "fit", "kmeans", "--dataset", "mnist", "--data-dir",
                     str(tmp_path), "--quiet")
  assert code == 2
  assert "Traceback" not in err
  # One error line, then the paths tried and the expected files.
  assert err.startswith("deepclust: error: dataset 'mnist' is not available")
  assert str(tmp_path / "mnist") in err and "train-images-idx3-ubyte.gz" in err


def test_existing_out_dir_needs_resume(kmeans_iris, capsys):
  out_dir = kmeans_iris[-1]
  before = (out_dir / "config.json").read_text()
  code, _, err = run(capsys, "fit", "kmeans", "--dataset", "iris", "--runs", "3", "--out",
                     str(out_dir), "--quiet")
  assert code == 2
  assert err.strip() == (f"deepclust: error: {out_dir} holds a finished run; pass --resume "
                         "to continue it from its last checkpoint, --overwrite to replace it, "
                         "or choose another --out")
  assert (out_dir / "config.json").read_text() == before


def test_evaluate_non_run_dir(capsys, tmp_path):
  code, _, err = run(capsys, "evaluate", str(tmp_path))
  assert code == 2
  assert err.startswith(f"deepclust: error: {tmp_path} is not a finished run directory")


def test_argument_errors_exit_2(capsys):
  iris = ["fit", "kmeans", "--dataset", "iris"]
  for argv, message in ((iris + ["--runs", "0"], "0 is not a positive integer"),
                        (["fit", "kmeans"], "--dataset"), ([], "required"),
                        (iris + ["--time-limit", "0"], "0 is not a positive number of seconds"),
                        (iris + ["--time-limit", "soon"], "soon is not a number of seconds")):
    with pytest.raises(SystemExit) as exit_info:
      cli.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and message in err, (argv, err)


@pytest.mark.parametrize("variable,value,message", [
    ("JAX_NUM_PROCESSES", "two", "--num-processes: two is not a positive integer"),
    ("JAX_PROCESS_ID", "-1", "--process-id: -1 is not a non-negative integer")])
def test_a_bad_jax_process_variable_gets_one_line(capsys, monkeypatch, variable, value,
                                                 message):
  monkeypatch.setenv(variable, value)
  with pytest.raises(SystemExit) as exit_info:
    cli.main(["fit", "kmeans", "--dataset", "iris"])
  err = capsys.readouterr().err
  assert exit_info.value.code == 2 and "Traceback" not in err and message in err, err


def test_interrupt_exits_130_with_resume_hint(capsys, monkeypatch):
  from deepclust_jax import pipeline

  def interrupted(*args, **kwargs):
    raise KeyboardInterrupt

  monkeypatch.setattr(pipeline, "fit", interrupted)
  code, _, err = run(capsys, "fit", "kmeans", "--dataset", "iris", "--quiet")
  assert code == 130
  assert "--resume" in err


def test_init_flag_is_shorthand_for_set_init(capsys, tmp_path):
  code, _, err = run(capsys, "fit", "cm", "--dataset", "iris", "--epochs", "1", "--init", "p",
                     "--out", str(tmp_path / "run"), "--quiet")
  assert code == 0, err
  assert json.loads((tmp_path / "run" / "config.json").read_text())["config"]["init"] == "p"
  code, _, err = run(capsys, "fit", "kmeans", "--dataset", "iris", "--init", "p",
                     "--out", str(tmp_path / "km"), "--quiet")
  assert code == 2 and "unknown kmeans config key 'init'" in err


def test_fit_fills_the_persistent_compilation_cache_unless_turned_off(tmp_path):
  script = shutil.which("deepclust", path=str(pathlib.Path(sys.executable).parent))
  base = [script, "fit", "kmeans", "--dataset", "iris", "--quiet", "--set", "n_init=2"]
  for setting, folder in ((str(tmp_path / "cache"), tmp_path / "cache"),
                          ("0", None)):
    env = {**os.environ, cli.CACHE_VAR: setting, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    proc = subprocess.run(base + ["--out", str(tmp_path / f"run{setting[-1]}")], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    if folder is not None:
      assert any(folder.iterdir()), "nothing was cached"
  assert not (tmp_path / "xdg").exists()  # "0": no cache anywhere


def test_missing_dataset_names_the_command_lines_options(capsys, tmp_path, monkeypatch):
  """A command-line user is told about --data-dir and --download, not only Python's keywords."""
  monkeypatch.delenv("DEEPCLUST_DATA", raising=False)
  code, _, err = run(capsys, "fit", "kmeans", "--dataset", "mnist", "--data-dir",
                     str(tmp_path), "--out", str(tmp_path / "run"))
  assert code == 2 and "--download (Python: download=True)" in err and "--data-dir" in err
  code, _, err = run(capsys, "fit", "kmeans", "--dataset", "usps", "--data-dir",
                     str(tmp_path), "--download", "--out", str(tmp_path / "run2"))
  assert code == 2 and "no downloader for 'usps'" in err


def test_a_process_that_writes_nothing_resumes_under_the_saved_config(
    cm_five, capsys, tmp_path, cm_with_new_key, monkeypatch):
  """Under jax.distributed only process 0 writes the run directory; the others
  must still train under its saved config, or their checkpoints' fingerprint differs."""
  from deepclust_jax import pipeline
  _, first, _, argv, out_dir = cm_five
  copy = tmp_path / "copy"
  shutil.copytree(out_dir, copy)
  (copy / "labels.npy").unlink()
  monkeypatch.setattr(pipeline, "writes", lambda run_dir: False)
  code, out, err = run(capsys, *[str(copy) if a == str(out_dir) else a for a in argv],
                       "--resume")
  assert (code, err) == (0, "")
  assert mean_scores(out) == mean_scores(first)
  assert not (copy / "labels.npy").exists()  # it wrote nothing
