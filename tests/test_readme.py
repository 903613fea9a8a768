"""The README's Python example runs as written and shows the paper's effect."""
from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no Python example"
    exec(compile(blocks[0], "README.md", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    teachers = [float(v) for v in re.findall(r"teacher \d: accuracy ([0-9.]+)", out)]
    students = [float(v) for v in re.findall(r"distillation: accuracy ([0-9.]+)", out)]
    assert len(teachers) == 3 and len(students) == 2, out
    assert min(students) > sum(teachers) / len(teachers), out  # students beat the mean teacher
