"""The README's Python example runs as written and shows the paper's effect."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(capsys, tmp_path, monkeypatch, one_thread):
    pytest.importorskip("sklearn")
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no Python example"
    assert len(blocks[0].strip().splitlines()) <= 15  # the estimator in at most 15 lines
    monkeypatch.chdir(tmp_path)  # it saves student.pt
    exec(compile(blocks[0], "README.md", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    found = re.search(r"teachers ([0-9.]+), their vote ([0-9.]+), student ([0-9.]+)", out)
    assert found, out
    teacher, vote, student = map(float, found.groups())
    assert student > teacher, out  # the student beats the mean teacher
    assert re.search(r"estimated noise rate 0\.\d+, \d+ suspected label errors", out), out
    assert (tmp_path / "student.pt").exists()
