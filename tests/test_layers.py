"""The folders are layers (docs/architecture.md): a module imports its own room, the ground and the
layers below it, never a layer above it or a room beside it. Every import counts, those inside
functions too."""
from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rolemodels"

# Low to high. Rooms on one step (data, training) may not import each other.
LAYERS = [("ground",), ("runtime",), ("data", "training"), ("method",), ("paper",), ("practice",), ("cli",),
          ("package",)]
STEP = {room: step for step, rooms in enumerate(LAYERS) for room in rooms}


def room_of(module: str) -> str:
    """rolemodels.method.noise -> method; rolemodels.config -> ground; rolemodels -> package."""
    parts = module.split(".")
    if parts == ["rolemodels"] or parts[1:] == ["__main__"]:
        return "package"
    return parts[1] if parts[1] in STEP else "ground"


def imported_modules(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, dotted name) of every rolemodels module that the file at `path` imports."""
    found = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the file's package upwards
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from rolemodels.method import noise` imports rolemodels.method.noise
            found += [(node.lineno, f"{base}.{alias.name}" if (PACKAGE.parent / base.replace(".", "/") / alias.name)
                       .with_suffix(".py").exists() else base) for alias in node.names]
    return [(line, name) for line, name in found if name == "rolemodels" or name.startswith("rolemodels.")]


def upward_imports(package_dir: Path) -> list[str]:
    """'file:line imports module (room -> room)' for every import that breaks the layers."""
    wrong = []
    for path in sorted(package_dir.rglob("*.py")):
        relative = path.relative_to(package_dir.parent).with_suffix("")
        module = ".".join(relative.parts[:-1] if relative.name == "__init__" else relative.parts)
        mine = room_of(module)
        for line, target in imported_modules(path, module):
            theirs = room_of(target)
            if theirs != mine and theirs != "ground" and STEP[theirs] >= STEP[mine]:
                wrong.append(f"{relative}.py:{line} imports {target} ({mine} -> {theirs})")
    return wrong


def test_every_import_runs_down_the_layers():
    assert upward_imports(PACKAGE) == []


def test_every_folder_is_a_layer():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders <= set(STEP), f"folders missing from LAYERS: {sorted(folders - set(STEP))}"
    assert all((PACKAGE / f / "__init__.py").exists() for f in folders)


@pytest.mark.parametrize("file, planted, expected", [
    ("method/noise.py", "from rolemodels.paper.experiment import run_experiment", "method -> paper"),
    ("method/teach.py", "    from rolemodels.practice import estimator", "method -> practice"),
    ("training/train.py", "from rolemodels.method.combine import plurality_vote", "training -> method"),
    ("training/augment.py", "import rolemodels.data.arrays", "training -> data"),
    ("runtime/provenance.py", "from rolemodels import __version__", "runtime -> package"),
    ("runtime/files.py", "from ..training import train", "runtime -> training"),
    ("config.py", "from rolemodels.runtime.files import atomic_write", "ground -> runtime"),
])
def test_a_planted_upward_import_is_found(tmp_path, file, planted, expected):
    copy = tmp_path / "rolemodels"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / file
    body = target.read_text()
    if planted.startswith("    "):  # inside a function, where lazy imports hide
        body += f"\n\ndef planted():\n{planted}\n"
    else:
        body += f"\n{planted}\n"
    target.write_text(body)
    wrong = upward_imports(copy)
    assert len(wrong) == 1 and wrong[0].startswith(f"rolemodels/{file}:") and expected in wrong[0], wrong
