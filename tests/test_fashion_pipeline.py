"""The Fashion-MNIST preset end to end: on fabricated IDX files always, on the real files when installed."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from fabricate import write_fashion_mnist

from rolemodels.cli import main

ROOT = Path(__file__).resolve().parents[1]
PRESET = str(ROOT / "configs" / "fashion-mnist.toml")
DEBIAN = Path("/usr/share/datasets/fashion-mnist")
SMALL = ["teachers.count=2", "teachers.epochs=2", "teachers.width=4", "students.epochs=1", "students.batch_size=32",
         "sweep.teachers=[1, 2]"]


def test_fashion_preset_on_fabricated_files(tmp_path, capsys):
    write_fashion_mnist(str(tmp_path / "fm"), n_train=120, n_test=40)
    out = tmp_path / "run"
    code = main(["run", "--config", PRESET, "--out", str(out), "--quiet", f"data.root={tmp_path / 'fm'}",
                 "data.n_train=60", "data.n_pool=60", "data.n_test=40", *SMALL])
    assert code == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"] == {"name": "fashion-mnist", "n_train": 60, "n_test": 40, "n_pool": 60,
                                  "num_classes": 10, "input_shape": [28, 28, 1]}
    assert (out / "figures" / "confusion.png").stat().st_size > 0


@pytest.mark.skipif(not (DEBIAN / "train-images-idx3-ubyte.gz").exists(),
                    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
def test_fashion_preset_on_the_real_files(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "--config", PRESET, "--out", str(out), "--quiet", "data.n_train=1000", "data.n_pool=2000",
                 "data.n_test=1000", *SMALL])
    assert code == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"]["n_test"] == 1000
    assert results["table"]["clean_pool"]["mean"] > 0.5  # real images, learnable: far above chance
