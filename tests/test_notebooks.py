"""The notebooks run headless, start to finish, with their small settings.

Each notebook is executed by nbclient in a kernel of *this* interpreter (a
kernelspec written to a private directory, so whatever kernels the user has
installed cannot redirect it to another environment), from ``notebooks/`` as
working directory and with ``DEEPCLUST_NOTEBOOK_SMALL=1``. Outputs are
discarded; the notebook files are not modified.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time

import pytest

nbformat = pytest.importorskip(
    "nbformat", reason="nbformat is not installed (pip install -e '.[dev]')")
nbclient = pytest.importorskip(
    "nbclient", reason="nbclient is not installed (pip install -e '.[dev]')")
pytest.importorskip("ipykernel", reason="ipykernel is not installed (pip install -e '.[dev]')")

from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402  (after the skips)
from jupyter_client.manager import AsyncKernelManager  # noqa: E402

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[1] / "notebooks"
KERNEL = "deepclust-test"
SMALL_ENV = {"DEEPCLUST_NOTEBOOK_SMALL": "1"}
# The benchmark files where this checkout has them beside it (as in CI); else digits.
if (DATA := pathlib.Path(__file__).resolve().parents[2] / "shared" / "datasets").is_dir():
  SMALL_ENV["DEEPCLUST_DATA"] = str(DATA)
# Wall-clock budget of one whole notebook in small mode, kernel start included.
BUDGET_S = {"cm_q_function.ipynb": 180.0, "dgg_graph.ipynb": 300.0,
            "edgam_streamlined_em.ipynb": 180.0, "nmm_em_2d.ipynb": 180.0}


@pytest.fixture(scope="session")
def kernel_dir(tmp_path_factory) -> pathlib.Path:
  """A directory holding one kernelspec that runs ipykernel on ``sys.executable``."""
  root = tmp_path_factory.mktemp("kernels")
  spec = root / KERNEL
  spec.mkdir()
  (spec / "kernel.json").write_text(json.dumps({
      "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
      "display_name": f"deepclust tests ({sys.executable})",
      "language": "python",
      "env": SMALL_ENV,
  }))
  return root


def execute(path: pathlib.Path, kernel_dir: pathlib.Path, timeout: float) -> None:
  """Runs every cell of ``path`` in a fresh kernel; raises on the first error."""
  nb = nbformat.read(path, as_version=4)
  km = AsyncKernelManager(kernel_name=KERNEL,
                          kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dir)]))
  client = nbclient.NotebookClient(
      nb, km=km, timeout=int(timeout), startup_timeout=120,
      resources={"metadata": {"path": str(path.parent)}})
  client.execute()


# A minute each beside a training job: run by ``pytest -m slow``, to keep CI's suite short.
SLOW = {"dgg_graph.ipynb", "nmm_em_2d.ipynb"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in sorted(BUDGET_S)])
def test_notebook_runs_in_small_mode(name, kernel_dir, monkeypatch):
  path = NOTEBOOKS / name
  assert path.exists(), f"{path} is missing"
  for key, value in SMALL_ENV.items():  # also via the environment, for older kernel managers
    monkeypatch.setenv(key, value)
  budget = BUDGET_S[name]
  tic = time.perf_counter()
  execute(path, kernel_dir, timeout=budget)
  seconds = time.perf_counter() - tic
  print(f"{name}: {seconds:.1f} s")
  assert seconds < budget, f"{name} took {seconds:.0f} s in small mode, budget {budget:.0f} s"


@pytest.mark.parametrize("name", sorted(BUDGET_S))
def test_notebook_is_committed_without_outputs(name):
  """Committed cleared: small diffs, no stale figures."""
  path = NOTEBOOKS / name
  nb = nbformat.read(path, as_version=4)
  nbformat.validate(nb)
  dirty = [i for i, cell in enumerate(nb.cells)
           if cell.cell_type == "code" and (cell.outputs or cell.execution_count)]
  assert not dirty, f"{name}: clear the outputs of cells {dirty} before committing"
