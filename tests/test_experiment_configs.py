"""Every row of every experiment config resolves and builds, so a long run never
fails at its start on an accelerator for a typo in a config."""

import importlib.util
import json
import pathlib
import shutil

import pytest

from deepclust_jax import data, methods

CONFIGS = sorted((pathlib.Path(__file__).parent.parent / "experiments" / "configs").glob("*.py"))


def load(path: pathlib.Path) -> dict:
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_rows_resolve_and_build(path):
  config = load(path)
  labels = [row["label"] for row in config["rows"]]
  assert len(labels) == len(set(labels)), "row labels must be unique (records key on them)"
  # The module docstring names the command that runs it.
  assert f"experiments/configs/{path.name}" in path.read_text()
  for row in config["rows"]:
    spec = data.get(row["dataset"])  # a registered dataset, or a clear error
    overrides = {**row.get("overrides", {})}
    if config.get("epochs") is not None:
      overrides.setdefault("epochs", config["epochs"])
    resolved = methods.resolve(row["method"], dataset=row["dataset"],
                               num_classes=spec.num_classes, overrides=overrides)
    shape = spec.image_shape or ((spec.num_features,) if spec.num_features else None)
    if shape is not None:  # 20news's width depends on its vocabulary
      methods.get(row["method"]).build(resolved, shape)


@pytest.fixture
def reproduce(monkeypatch):
  """``experiments/reproduce.py`` as a module."""
  monkeypatch.syspath_prepend(str(CONFIGS[0].parent.parent))
  import reproduce
  return reproduce


def test_paired_rows_read_the_directories_reproduce_writes(reproduce):
  """experiments/paired.py finds a row where reproduce.py wrote it: a row's own
  runs beat --runs, its own epochs beat the config's, and a start row ran first."""
  run_directory = reproduce.run_directory
  config = load(CONFIGS[0].parent / "edgam_v2.py")
  assert run_directory(config, "start mnist", runs=10).name == "start_mnist-r2-e0"
  assert run_directory(config, "v1 usps").name == "v1_usps-r10-e15"
  assert run_directory(config, "v1 usps", runs=3, tag="-seed1").name == "v1_usps-r3-e15-seed1"
  for rows in (load(path)["rows"] for path in CONFIGS):
    order = [row["label"] for row in rows]
    for i, row in enumerate(rows):
      if "pretrained" in row:
        assert order.index(row["pretrained"]) < i, row["label"]


def test_rescoring_a_finished_row_keeps_the_time_that_trained_it(reproduce, tmp_path,
                                                                  monkeypatch):
  """reproduce.py on a row whose directory exists resumes it and adds its own
  wall time to the recorded one; a fresh directory starts from zero."""
  row = {"label": "km", "method": "kmeans", "dataset": "iris", "paper": {}}
  config = tmp_path / "tiny.py"
  config.write_text(f'def get_config():\n  return {{"name": "tiny", "title": "tiny", '
                    f'"runs": 2, "seed": 0, "rows": [{row!r}]}}\n')
  monkeypatch.setattr(reproduce, "RESULTS", tmp_path / "results")
  monkeypatch.setattr(reproduce, "write_report", lambda: None)
  monkeypatch.chdir(tmp_path)
  records = tmp_path / "results" / "tiny.jsonl"

  def seconds_after_run() -> float:
    assert reproduce.main([str(config), "--quiet"]) == 0
    return json.loads(records.read_text().splitlines()[-1])["seconds"]

  seconds_after_run()
  record = json.loads(records.read_text())
  records.write_text(json.dumps({**record, "seconds": 1000.0}) + "\n")  # as if it trained long
  assert seconds_after_run() >= 1000.0
  shutil.rmtree(tmp_path / "runs")
  assert seconds_after_run() < 1000.0


def test_a_row_cut_inside_pretraining_is_tabulated_unscored(reproduce):
  config = load(CONFIGS[0].parent / "pretraining.py")
  label = config["rows"][0]["label"]
  record = {"label": label, "runs": 3, "epochs": 300, "seconds": 470.0, "command": "c",
            "hardware": "h", "cut_short": {"pretrain": "87/300", "mixture": "0/1"}}
  table = reproduce.to_markdown(config, [record])
  row = next(line for line in table.splitlines() if line.startswith(f"| {label} |"))
  assert "not scored: cut short inside pretraining (pretrain 87/300, mixture 0/1)" in row
