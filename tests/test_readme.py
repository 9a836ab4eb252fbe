"""The README's Python API example runs as written (it once raised NameError)."""

from __future__ import annotations

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def section_code(title: str) -> str:
  """The first ```python block under the README heading ``## title``."""
  text = README.read_text()
  section = text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
  return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_python_api_example_runs_as_written(tmp_path, monkeypatch, capsys):
  monkeypatch.chdir(tmp_path)
  exec(compile(section_code("Python API"), "README.md", "exec"), {"__name__": "readme"})
  out = capsys.readouterr().out
  assert "['e1', 'e2', 'e3', 'e4']" in out and "'acc'" in out
