"""Every command the README and docs/ show runs as written (on tiny inputs), or says why it cannot here.

The commands are read from the documents' fenced shell blocks, so a command added to the docs
without a line in COMMANDS below fails `test_every_documented_command_is_covered`. Runs get
small-size overrides appended (later `key=value` overrides win), which changes their size,
never the command's own options.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELLS = ("", "bash", "sh", "shell", "console")
PROGRAMS = ("rolemodels", "torchrun", "python", "python3")

# MNIST-1D runs at a few seconds' size: 2 small teachers, a pool of 512.
SMALL = ["data.n_train=300", "data.n_test=200", "data.n_pool=512", "teachers.count=2", "teachers.epochs=2",
         "teachers.width=8", "students.epochs=1", "students.batch_size=128", "sweep.teachers=[1, 2]",
         "train.threads=1", "train.eval_batch_size=512", "students.pool_budget=false"]


def documented_commands() -> list[str]:
    """The commands in the documents' fenced shell blocks: continuations joined, comments dropped."""
    found = []
    for document in DOCUMENTS:
        language = None
        lines: list[str] = []
        for line in document.read_text().splitlines():
            fence = re.match(r"^```(\w*)", line)
            if fence:
                language = fence.group(1) if language is None else None
                continue
            if language is not None and language in SHELLS:
                lines.append(line)
        joined = "\n".join(lines).replace("\\\n", " ")
        for line in joined.splitlines():
            command = re.sub(r"\s+#\s.*$", "", line).strip()
            command = " ".join(command.split())
            if command.split(" ")[0] in PROGRAMS:
                found.append(command)
    return found


@dataclass
class Run:
    """Run the command (with `extra` arguments appended) in the work folder; `check` its outcome."""

    check: Callable[[subprocess.CompletedProcess, Path], None]
    extra: tuple[str, ...] = ()
    needs_shared: bool = False
    before: str = ""  # a documented command whose output this one reads


@dataclass
class Skip:
    why: str


def _results(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())


def _table_printed(done: subprocess.CompletedProcess, work: Path, out: str, seeds: int = 1) -> None:
    assert "test-time ensemble (plurality vote)" in done.stdout
    assert len(_results(work / out)["seeds"]) == seeds


def _inspected(done: subprocess.CompletedProcess, work: Path) -> None:
    assert "0.2000" in done.stdout and "10,000 of 50,000" in done.stdout, done.stdout


def _made_noise(done: subprocess.CompletedProcess, work: Path) -> None:
    clean, noisy = np.load(SHARED / "cifar10_train_labels.npy"), np.load(work / "noisy.npy")
    assert (clean != noisy).sum() == 10_000


def _inspected_json(done: subprocess.CompletedProcess, work: Path) -> None:
    summary = json.loads(done.stdout)
    assert {"rate", "counts", "matrix", "num_classes", "n"} <= set(summary) and summary["rate"] == 0.2


def _models_json(done: subprocess.CompletedProcess, work: Path) -> None:
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert rows["resnet18"]["parameters"] == 11_173_962


def _help(done: subprocess.CompletedProcess, work: Path) -> None:
    assert "usage:" in done.stdout


CIFAR_SMALL = ("rolemodels run --config configs/cifar10-paper.toml data.root=DATA/cifar10 data.pool_root=DATA/cifar5m "
               "data.n_train=40 data.n_test=20 data.n_pool=96 teachers.count=2 teachers.epochs=1 teachers.width=4 "
               "teachers.batch_size=16 students.batch_size=16 \"sweep.teachers=[1, 2]\"")

NOISE_MAKE = ("rolemodels noise make --labels ../shared/data/cifar10_train_labels.npy --preset paper --rate 0.2 "
              "--seed 0 --out noisy.npy")

DISTILL = "rolemodels distill --data mine.npz --out runs/mine"
# distill at a few seconds' size: 2 small teachers, a student that sees 2,000 examples
DISTILL_SMALL = ("teachers.count=2", "teachers.width=4", "teachers.epochs=2", "teachers.min_examples=0",
                 "students.min_examples=2000", "train.threads=1")


def _distilled(done: subprocess.CompletedProcess, work: Path) -> None:
    diagnostics = json.loads((work / "runs/mine/diagnostics.json").read_text())
    assert {"teacher_fit", "estimated_noise_rate", "suspected_label_errors", "test_accuracy"} <= set(diagnostics)
    assert np.load(work / "runs/mine/pool/pool_labels.npy").shape == (600, 2)


def _dividemix_refitted(done: subprocess.CompletedProcess, work: Path) -> None:
    rows = json.loads((work / "runs/dividemix_unlabelled.json").read_text())
    assert [row["change"] for row in rows] == [{"lambda_u": 0}], rows
    assert 0 <= rows[0]["accuracy"] <= 1 and rows[0]["schedule"]["total"] >= 1, rows


def _predicted(done: subprocess.CompletedProcess, work: Path) -> None:
    assert np.load(work / "labels.npy").shape == (30,) and "30 labels written" in done.stdout


COMMANDS: dict[str, Run | Skip] = {
    # The README's two commands make a virtual environment and install: CI runs the second (.ci/run).
    "python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && pip install -e . && rolemodels run":
        Skip("installs into a new virtual environment; `rolemodels run` itself is run below at a small size"),
    "python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && pip install -e \".[test]\" && pytest":
        Skip("this is .ci/run, the command that runs this test"),
    "rolemodels run teachers.count=5 data.n_pool=100000 seeds=3 --out runs/k5":
        Run(lambda done, work: _table_printed(done, work, "runs/k5", seeds=3), tuple(SMALL[:3] + SMALL[4:])),
    "rolemodels run --config tiny":
        Run(lambda done, work: _table_printed(done, work, "runs/tiny"), tuple(SMALL)),
    "rolemodels run students.random_teacher=batch students.ensemble=sum_logits":
        Run(lambda done, work: _table_printed(done, work, "runs/mnist1d"), tuple(SMALL)),
    "rolemodels run --config configs/cifar10-paper.toml data.root=DATA/cifar10 data.pool_root=DATA/cifar5m":
        Skip("the paper's full run: hours on a GPU; the same preset at tiny sizes runs below"),
    "rolemodels run --config configs/cifar10-authors-code.toml data.root=DATA/cifar10 data.pool_root=DATA/cifar5m":
        Skip("the authors' code's full run: hours on a GPU; tests/test_cifar_pipeline.py runs it at tiny sizes"),
    CIFAR_SMALL: Run(lambda done, work: _table_printed(done, work, "runs/cifar10-paper")),
    "rolemodels models --json": Run(_models_json),
    "rolemodels noise inspect --clean ../shared/data/cifar10_train_labels.npy --noisy "
    "../shared/data/cifar10_noisy_labels_authors.int64": Run(_inspected, needs_shared=True),
    NOISE_MAKE: Run(_made_noise, needs_shared=True),
    "rolemodels noise inspect --clean clean.npy --noisy noisy.npy --json":
        Run(_inspected_json, needs_shared=True, before=NOISE_MAKE),
    "torchrun --nproc-per-node 4 -m rolemodels run --config cifar10-paper --out runs/cifar10 data.root=... "
    "data.pool_root=...": Skip("4 GPUs and the CIFAR files; the 2-process CPU line runs below"),
    "torchrun --nproc-per-node 2 -m rolemodels run --config tiny train.threads=1":
        Run(lambda done, work: _table_printed(done, work, "runs/tiny"), tuple(SMALL)),
    "torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint HOST:29500 --rdzv-id cifar10 "
    "-m rolemodels run --config cifar10-paper --out /shared/runs/cifar10":
        Skip("two machines with 4 GPUs each and a shared filesystem"),
    DISTILL: Run(_distilled, DISTILL_SMALL),
    "rolemodels predict --model runs/mine/student.pt --inputs new.npy --out labels.npy":
        Run(_predicted, before=DISTILL),
    "python experiments/practitioners.py":
        Skip("every case: about 25 minutes on 2 cores; its --table runs here, its --list below"),
    "python experiments/practitioners.py --table": Run(lambda done, work: "mnist1d/paper20/train4000" in done.stdout
                                                       or pytest.fail(done.stdout)),
    "python experiments/compare.py --threads 2":
        Skip("the full comparison benchmark: hours on 2 cores; its --quick and --markdown run here"),
    # every row it names is in docs/data/compare.json already: it computes and writes nothing
    "python experiments/compare.py --data digits --methods elr dividemix":
        Run(lambda done, work: "compare.json: " in done.stdout and " rows (" in done.stdout or pytest.fail(done.stdout)),
    "python experiments/compare.py --quick":
        Skip("tests/test_compare.py runs exactly this (main(['--quick'])) and checks its output"),
    "python experiments/compare.py --markdown":
        Run(lambda done, work: "#### mnist1d, paper20 (3 seeds)" in done.stdout and "### README" in done.stdout
            or pytest.fail(done.stdout)),
    "python experiments/compare.py --figure":
        Skip("draws into the checkout's docs/figures/; tests/test_compare.py draws the quick mode's figure"),
    "python experiments/dividemix_unlabelled.py --noise symmetric40 --seed 1 --out docs/data/dividemix_unlabelled.json "
    "'{\"lambda_u\": 0}' '{\"rampup_fraction\": 0.2133}'":
        Skip("two DivideMix fits on MNIST-1D: about 8 minutes on one thread; its --quick line runs here"),
    "python experiments/study_augmentation.py --seeds 2":
        Skip("the augmentation study: about an hour on 2 cores; its --table-only and --help run here"),
    "python experiments/study_augmentation.py --table-only":
        Run(lambda done, work: "shift2-80-b256+students" in done.stdout or pytest.fail(done.stdout)),
    "python experiments/teacher_fit.py --config configs/fashion-mnist.toml teachers.augment=crop_flip "
    "teachers.augment_size=2 teachers.epochs=30":
        Skip("needs Fashion-MNIST (Debian's dataset-fashion-mnist) and about 6 minutes; the MNIST-1D line runs here"),
    "python experiments/teacher_fit.py teachers.epochs=60":
        Run(lambda done, work: "mean: fit" in done.stdout or pytest.fail(done.stdout), tuple(SMALL)),
    "python experiments/study_decorrelation.py --seeds 2 train.threads=1":
        Skip("the study: about 2 hours on 2 cores; its --help runs below"),
    "python experiments/compare_practice.py --threads 1":
        Skip("the practitioner's scoreboard: about an hour on 2 cores; --quick and --markdown run here"),
    "python experiments/compare_practice.py --markdown":
        Run(lambda done, work: "| cancer/flip25 |" in done.stdout or pytest.fail(done.stdout)),
    "python experiments/compare_practice.py --quick":
        Skip("tests/test_compare_practice.py runs the quick mode and checks its rows"),
    "python experiments/compare_practice.py --only cancer/flip25 synthetic-binary/flip25 digits/part30 "
    "multiclass/symmetric30 --seeds 0 --methods ours gce-mlp --out runs/timing.json --threads 1":
        Skip("the cost benchmark: about 40 s on a quiet 2-core machine; the quick mode's rows are checked in "
             "tests/test_compare_practice.py"),
    # The README's development section: one benchmark and one setting of the comparison, rerun.
    "python benchmarks/bench_generate.py --package-n 400 --fast-n 2000 --repeats 1":
        Run(lambda done, work: "generate_fast" in done.stdout or pytest.fail(done.stdout)),
    "python experiments/compare.py --quick --data digits --threads 2":
        Run(lambda done, work: (work / "runs/compare-quick/compare.json").exists() or pytest.fail(done.stdout)),
}

# Commands the text names inline (not in a block), run the same way.
INLINE: dict[str, Run] = {
    "rolemodels --version": Run(lambda done, work: re.fullmatch(r"rolemodels \d+\.\d+\.\d+\S*\n", done.stdout)
                                or pytest.fail(done.stdout)),
    "rolemodels run teachers.loss=gce": Run(lambda done, work: _table_printed(done, work, "runs/mnist1d"),
                                            tuple(SMALL)),
    "rolemodels run --config mnist1d-best": Run(lambda done, work: _table_printed(done, work, "runs/mnist1d-best"),
                                                tuple(SMALL)),
    "rolemodels run teachers.model=knn teachers.data=disjoint sweep.students=false":
        Run(lambda done, work: _table_printed(done, work, "runs/mnist1d"), tuple(SMALL)),
    "rolemodels run data.name=arrays data.path=mine.npz teachers.model=mlp":
        Run(lambda done, work: _table_printed(done, work, "runs/mnist1d"), tuple(SMALL[3:])),
    "rolemodels theory --quick --out theory": Run(lambda done, work: json.loads((work / "theory/theory.json").read_text())),
    "python experiments/study_decorrelation.py --help": Run(_help),
    "python experiments/study_augmentation.py --help": Run(_help),
    "python experiments/dividemix_unlabelled.py --quick '{\"lambda_u\": 0}'": Run(_dividemix_refitted),
    "python experiments/practitioners.py --list": Run(lambda done, work: "tabular/paper/pool700" in done.stdout
                                                      or pytest.fail(done.stdout)),
    **{f"rolemodels {command} --help": Run(_help)
       for command in ("", "run", "distill", "predict", "noise", "noise make", "noise inspect", "models", "theory")},
    "rolemodels models": Run(lambda done, work: all(name in done.stdout for name in ("cnn1d", "cnn2d_wide", "resnet18"))
                             or pytest.fail(done.stdout)),
    "rolemodels models --input-shape 28,28,1": Run(lambda done, work: "28x28x1" in done.stdout
                                                   or pytest.fail(done.stdout)),
}


def test_every_documented_command_is_covered():
    missing = [command for command in documented_commands() if command not in COMMANDS]
    assert not missing, f"documented commands with no line in COMMANDS: {missing}"
    stale = [command for command in COMMANDS if command not in documented_commands()]
    assert not stale, f"COMMANDS lists commands the docs no longer show: {stale}"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """The tiny data files the commands read, made once."""
    from fabricate import write_cifar5m_parts, write_cifar10  # tests/fabricate.py

    files = tmp_path_factory.mktemp("files")
    if SHARED.exists():
        np.save(files / "clean.npy", np.load(SHARED / "cifar10_train_labels.npy"))
    write_cifar10(str(files / "DATA" / "cifar10"), per_batch=10, n_test=20)
    write_cifar5m_parts(str(files / "DATA" / "cifar5m"), [60, 60])
    rng = np.random.default_rng(0)
    arrays = {f"x_{part}": rng.standard_normal((n, 12)).astype(np.float32)
              for part, n in (("train", 200), ("test", 100), ("pool", 600))}
    arrays.update({f"y_{part}": rng.integers(0, 3, n) for part, n in (("train", 200), ("test", 100))})
    np.savez(files / "mine.npz", **arrays)
    np.save(files / "new.npy", rng.standard_normal((30, 12)).astype(np.float32))
    return files


@pytest.fixture
def work(tmp_path, files) -> Path:
    """A fresh folder laid out like the checkout for the commands' relative paths (../shared too)."""
    work = tmp_path / "checkout"
    work.mkdir()
    for name in ("configs", "experiments", "benchmarks"):
        (work / name).symlink_to(ROOT / name)
    for entry in files.iterdir():
        (work / entry.name).symlink_to(entry)
    if SHARED.exists():
        (tmp_path / "shared").symlink_to(SHARED.parent)
    return work


def _argv(command: str) -> list[str]:
    words = shlex.split(command)
    launcher = {"rolemodels": [sys.executable, "-m", "rolemodels"],
                "torchrun": [sys.executable, "-m", "torch.distributed.run"],
                "python": [sys.executable], "python3": [sys.executable]}[words[0]]
    return [*launcher, *words[1:]]


def _cases() -> list[tuple[str, Run]]:
    runs = [(command, how) for command, how in COMMANDS.items() if isinstance(how, Run)]
    return runs + list(INLINE.items())


@pytest.mark.parametrize("command,how", _cases(), ids=[command[:60] for command, _ in _cases()])
def test_documented_command_runs(command: str, how: Run, work: Path, tmp_path_factory):
    if how.needs_shared and not SHARED.exists():
        pytest.skip(f"needs {SHARED}")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "ROLEMODELS_CACHE": str(tmp_path_factory.getbasetemp() / "cache")}
    if how.before:  # with the small-size arguments that command has in COMMANDS
        before = COMMANDS.get(how.before)
        extra = before.extra if isinstance(before, Run) else ()
        subprocess.run([*_argv(how.before), *extra], cwd=work, env=env, capture_output=True, timeout=600, check=True)
    done = subprocess.run([*_argv(command), *how.extra], cwd=work, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    how.check(done, work)
