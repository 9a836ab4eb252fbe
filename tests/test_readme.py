"""Every code block of the README runs as written, with small budgets where it trains.

The blocks are read from README.md. ``SMALL`` shortens the training budgets
(each rewrite must find its text, so a README edit that drops one fails
here); bash blocks run under ``bash -e`` and Python blocks in a fresh
interpreter, one after the other in one temporary folder, so that a block
reading what an earlier one wrote (``runs/aecm-digits``) finds it. Blocks
fenced as ``text`` are the command synopsis, not commands. Not run: the
set-up line's virtual environment and install (CI's install step is exactly
that, and the line's ``deepclust fit`` runs here) and ``bash .ci/run`` (CI
itself).
"""

from __future__ import annotations

import os
import pathlib
import re
import socket
import subprocess
import sys
import time

import numpy as np

README = pathlib.Path(__file__).parent.parent / "README.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
NOT_RUN = {"bash .ci/run\n"}
SETUP = "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/"
SMALL_AECM = " --epochs 2 --set pretrain_epochs=2"
SMALL = [  # (README text, what runs instead)
    (SETUP, ""),
    ("fit aecm --dataset digits --quiet", "fit aecm --dataset digits --quiet" + SMALL_AECM),
    ("--out runs/aecm-digits --quiet", "--out runs/aecm-digits --quiet" + SMALL_AECM),
    ("--out runs/aecm-digits-5 --quiet", "--out runs/aecm-digits-5 --quiet" + SMALL_AECM),
    ('**paper.AECM["digits"]', '**{**paper.AECM["digits"], "epochs": 2, "pretrain_epochs": 2}'),
    ("deepclust plot runs/aecm-digits\n", "deepclust plot runs/aecm-digits --max-points 300\n"),
    ("127.0.0.1:12345", "127.0.0.1:{port}"),  # a free port: other tests may run beside
    ('pipeline.fit("aecm", "digits", options={"mesh": mesh})',
     'pipeline.fit("aecm", "digits", epochs=2, overrides={"pretrain_epochs": 2}, '
     'options={"mesh": mesh, "progress": False})'),
]


def blocks() -> list[tuple[str, str]]:
  found = [(lang, code) for lang, code in BLOCK.findall(README.read_text())
           if lang != "text" and code not in NOT_RUN]
  assert {lang for lang, _ in found} <= {"bash", "python"}, "a block in an unknown language"
  return found


def test_every_readme_block_runs(tmp_path):
  code = blocks()
  text = "\n".join(c for _, c in code)
  for old, _ in SMALL:
    assert old in text, f"README no longer has {old!r}: update SMALL"
  np.save(tmp_path / "new.npy", np.random.default_rng(0).uniform(0, 1, (7, 64)))
  # The commands share one compilation cache, as a user's repeated commands do.
  env = {**os.environ, "PATH": f"{pathlib.Path(sys.executable).parent}:{os.environ['PATH']}",
         "DEEPCLUST_COMPILATION_CACHE": str(tmp_path / "jax-cache")}
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  for lang, block in code:
    for old, new in SMALL:
      block = block.replace(old, new.format(port=port) if "{port}" in new else new)
    command = ["bash", "-e", "-c", block] if lang == "bash" else [sys.executable, "-c", block]
    tic = time.perf_counter()
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    print(f"{time.perf_counter() - tic:.1f} s: {block.splitlines()[0]}")
    assert done.returncode == 0, f"README block failed:\n{block}\n{done.stderr[-3000:]}"
  assert (tmp_path / "predictions" / "labels.npy").exists()
  assert np.load(tmp_path / "predictions" / "labels.npy").shape == (7,)
