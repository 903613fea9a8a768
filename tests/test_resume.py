"""A run killed with SIGKILL at random moments and restarted ends with the uninterrupted results."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Small enough for CI, large enough that a kill can land in every stage.
OVERRIDES = ["data.n_train=600", "data.n_test=500", "data.n_pool=3000", "teachers.count=2", "teachers.epochs=6",
             "teachers.width=16", "teachers.batch_size=64", "students.epochs=1", "sweep.teachers=[1, 2]",
             "train.checkpoint_every=2", "train.threads=1"]


def _command(out: Path, cache: Path) -> list[str]:
    return [sys.executable, "-m", "rolemodels", "run", "--config", str(ROOT / "configs" / "tiny.toml"),
            "--out", str(out), "--quiet", f"data.cache_dir={cache}", *OVERRIDES]


def _comparable(results: dict) -> dict:
    results = dict(results)
    results.pop("seconds")
    results.pop("environment")
    return results


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def test_sigkill_and_restart_gives_the_same_results(tmp_path, cache):
    reference = tmp_path / "reference"
    started = time.perf_counter()
    subprocess.run(_command(reference, cache), check=True, cwd=ROOT, timeout=300)
    duration = time.perf_counter() - started
    expected = _comparable(json.loads((reference / "results.json").read_text()))

    killed = tmp_path / "killed"
    rng = random.Random(1234)
    kills = 0
    for _ in range(3):
        process = subprocess.Popen(_command(killed, cache), cwd=ROOT)
        time.sleep(rng.uniform(0.5, max(1.0, 0.8 * duration)))
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            kills += 1
        process.wait()
    subprocess.run(_command(killed, cache), check=True, cwd=ROOT, timeout=300)
    assert kills >= 1, "the run finished before any kill landed: make it longer"
    assert not list(killed.rglob(".tmp-*"))  # no half-written file was left in place
    assert _comparable(json.loads((killed / "results.json").read_text())) == expected


def test_corrupt_teacher_is_detected_and_recomputed(tmp_path, cache):
    out = tmp_path / "run"
    subprocess.run(_command(out, cache), check=True, cwd=ROOT, timeout=300)
    expected = _comparable(json.loads((out / "results.json").read_text()))
    teacher = out / "seed0" / "teachers" / "teacher1.pt"
    data = bytearray(teacher.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    teacher.write_bytes(bytes(data))
    before = teacher.stat().st_mtime_ns
    finished = subprocess.run(_command(out, cache), cwd=ROOT, timeout=300, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert "teachers/teacher1.pt" in finished.stderr and "recomputing" in finished.stderr
    assert teacher.stat().st_mtime_ns != before
    assert _comparable(json.loads((out / "results.json").read_text())) == expected


def test_second_run_in_the_same_folder_is_refused(tmp_path, cache):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".lock").write_text(json.dumps({"pid": holder.pid, "host": __import__("socket").gethostname(),
                                               "started": "2026-01-01T00:00:00"}))
        finished = subprocess.run(_command(out, cache), cwd=ROOT, timeout=120, capture_output=True, text=True)
    finally:
        holder.kill()
        holder.wait()
    assert finished.returncode == 2
    assert "in use by process" in finished.stderr and "Traceback" not in finished.stderr
