"""The paper's CIFAR-10 preset end to end on the CPU, on tiny files fabricated in the published formats."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from fabricate import write_cifar5m_parts, write_cifar10

from rolemodels.cli import main

ROOT = Path(__file__).resolve().parents[1]
# The README's smoke command: the cifar10-paper preset at tiny sizes.
TINY = ["data.n_train=40", "data.n_test=20", "data.n_pool=96", "teachers.count=2", "teachers.epochs=1",
        "teachers.width=4", "teachers.batch_size=16", "students.batch_size=16", "sweep.teachers=[1, 2]",
        "train.eval_batch_size=32"]


def test_cifar10_paper_preset_runs_on_fabricated_files(tmp_path, capsys):
    write_cifar10(str(tmp_path / "cifar10"), per_batch=10, n_test=20)
    write_cifar5m_parts(str(tmp_path / "cifar5m"), [60, 60])
    out = tmp_path / "run"
    code = main(["run", "--config", str(ROOT / "configs" / "cifar10-paper.toml"), "--out", str(out), "--quiet",
                 f"data.root={tmp_path / 'cifar10'}", f"data.pool_root={tmp_path / 'cifar5m'}", *TINY])
    assert code == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"] == {"name": "cifar10", "n_train": 40, "n_test": 20, "n_pool": 96, "num_classes": 10,
                                  "input_shape": [32, 32, 3]}
    assert results["config"]["teachers"]["model"] == "resnet18"
    pool_labels = np.load(out / "seed0" / "pool" / "pool_labels.npy")
    assert pool_labels.shape == (96, 2) and pool_labels.dtype == np.uint8
    # The paper's noise on 40 images: exactly round(0.2 n_c) of each class moved to (c + 5) mod 10.
    counts = np.array(results["noise"]["realized_counts"])
    n_c = counts.sum(1)
    assert (counts[np.arange(10), (np.arange(10) + 5) % 10] == np.round(0.2 * n_c).astype(int)).all()


def test_released_noisy_labels_line_up_with_cifar10_order(tmp_path, capsys):
    """noise.labels_file takes the released raw int64 file when the training set has its length."""
    shared = ROOT.parent / "shared" / "data" / "cifar10_noisy_labels_authors.int64"
    x_train, y_train, _, _ = write_cifar10(str(tmp_path / "cifar10"), per_batch=10, n_test=20)
    labels = tmp_path / "noisy.int64"
    noisy = (y_train + 5) % 10
    noisy[::2] = y_train[::2]
    noisy.astype("<i8").tofile(labels)
    write_cifar5m_parts(str(tmp_path / "cifar5m"), [60])
    out = tmp_path / "run"
    common = ["--config", str(ROOT / "configs" / "cifar10-paper.toml"), "--quiet", f"data.root={tmp_path / 'cifar10'}",
              f"data.pool_root={tmp_path / 'cifar5m'}", *TINY, "data.n_train=50", "data.n_pool=60"]
    code = main(["run", "--out", str(out), f"noise.labels_file={labels}", *common])
    assert code == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert results["noise"]["rate"] == np.mean(noisy != y_train)
    if shared.exists():  # the real file has the full training set's length and is refused for 50 images
        code = main(["run", "--out", str(tmp_path / "r2"), f"noise.labels_file={shared}", *common])
        assert code == 2
        assert "50,000" in capsys.readouterr().err


def test_authors_code_preset_labels_online(tmp_path, capsys):
    """The authors' code's choices: online labels on augmented batches, a teacher per batch, summed logits."""
    write_cifar10(str(tmp_path / "cifar10"), per_batch=10, n_test=20)
    write_cifar5m_parts(str(tmp_path / "cifar5m"), [60, 60])
    out = tmp_path / "run"
    code = main(["run", "--config", str(ROOT / "configs" / "cifar10-authors-code.toml"), "--out", str(out),
                 "--quiet", f"data.root={tmp_path / 'cifar10'}", f"data.pool_root={tmp_path / 'cifar5m'}", *TINY])
    assert code == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    students = results["config"]["students"]
    assert (students["labels"], students["random_teacher"], students["ensemble"]) == ("online", "batch", "sum_logits")
    assert 0.0 <= results["table"]["random_distill"]["mean"] <= 1.0
