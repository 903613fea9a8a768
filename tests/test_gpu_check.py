"""benchmarks/gpu_check.sh --small: the GPU check's every step at toy sizes, on the CPU.

The script is what proves the GPU path the first time a GPU is lent; this keeps it runnable.
gpu.sh is checked too: both import the package from the checkout, with nothing installed.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OUT")}
    return {**env, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", **extra}


def test_gpu_check_small_runs_every_step_and_resumes_exactly(tmp_path):
    out = tmp_path / "out"
    finished = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--small",
                               "--scratch", str(tmp_path / "scratch")], cwd=tmp_path, env=_env(OUT=str(out)),
                              capture_output=True, text=True, timeout=600)  # a hang guard, not a speed limit
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    numbers = json.loads((out / "numbers.json").read_text())
    assert numbers["environment"]["small"] is True
    assert numbers["fabricate"]["pool"] == 300
    assert numbers["train"]["images_per_s"] > 0
    label = numbers["label"]
    assert label["copy_to_device"]["resident"] and all(label[k]["images_per_s"] > 0 for k in label
                                                       if k.startswith(("resident", "streamed", "before")))
    e2e = numbers["end_to_end"]
    assert e2e["kill_landed_mid_teacher"] and e2e["resumed_equals_uninterrupted"]
    assert set(e2e["table"]) >= {"teacher", "ensemble", "ensemble_distill", "random_distill", "clean_pool"}
    for step in ("cuda_tests", "compile", "reduce_overhead", "side_by_side4"):
        assert numbers[step]["status"] == "skipped (needs a GPU)"
    assert "| end_to_end | ok |" in (out / "summary.md").read_text()


def test_gpu_sh_imports_the_package_from_the_checkout(tmp_path):
    finished = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--small"], cwd=tmp_path, env=_env(),
                              capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "| label pool |" in finished.stdout
