"""Every mistake is answered in one line, with exit code 2 (input) or 1 (runtime), and nothing written."""
from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest

from rolemodels.cli import main
from rolemodels.errors import UserError

FAST = ["teachers.count=2", "teachers.epochs=1", "teachers.width=4", "students.epochs=1", "students.batch_size=32",
        "sweep.teachers=[1]", "teachers.model=mlp", "data.name=arrays"]


def arrays_file(path: Path, **changes) -> Path:
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.normal(size=(60, 8)).astype(np.float32), "y_train": rng.integers(0, 3, 60),
              "x_test": rng.normal(size=(30, 8)).astype(np.float32), "y_test": rng.integers(0, 3, 30),
              "x_pool": rng.normal(size=(64, 8)).astype(np.float32)}
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def run(args: list[str], capsys) -> tuple[int, str]:
    code = main(["run", "--quiet", *args])
    return code, capsys.readouterr().err


def assert_one_line(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("changes, needles", [
    ({"y_train": np.zeros(59, dtype=np.int64)}, ["y_train", "60"]),  # images and labels of different lengths
    ({"y_test": np.array([0, 1, -1] * 10)}, ["y_test"]),  # a label outside [0, C)
    ({"x_train": np.full((60, 8), np.nan, dtype=np.float32)}, ["x_train", "NaN"]),
    ({"x_pool": np.full((64, 8), np.inf, dtype=np.float32)}, ["x_pool"]),
    ({"x_train": np.zeros((0, 8), np.float32), "y_train": np.zeros(0, np.int64)}, ["x_train"]),  # empty
    ({"x_test": None}, ["x_test"]),  # a missing array
])
def test_bad_arrays(tmp_path, capsys, changes, needles):
    data = arrays_file(tmp_path / "data.npz", **changes)
    out = tmp_path / "out"
    code, err = run(["--out", str(out), f"data.path={data}", *FAST], capsys)
    assert code == 2
    assert_one_line(err, *needles)
    assert not out.exists()  # nothing written


def test_missing_dataset_path(tmp_path, capsys):
    out = tmp_path / "out"
    code, err = run(["--out", str(out), f"data.path={tmp_path / 'nowhere.npz'}", *FAST], capsys)
    assert code == 2
    assert_one_line(err, "nowhere.npz")
    assert not out.exists()


def test_unknown_file_format(tmp_path, capsys):
    bogus = tmp_path / "data.npz"
    bogus.write_text("this is not an npz file\n")
    code, err = run(["--out", str(tmp_path / "out"), f"data.path={bogus}", *FAST], capsys)
    assert code == 2
    assert_one_line(err, "data.npz")


def test_unknown_preset_and_missing_config(tmp_path, capsys):
    code, err = run(["--config", "no-such-preset"], capsys)
    assert code == 2
    assert_one_line(err, "no-such-preset", "mnist1d")
    code, err = run(["--config", str(tmp_path / "missing.toml")], capsys)
    assert code == 2
    assert_one_line(err, "missing.toml", "does not exist")


def test_bad_noise_labels_file(tmp_path, capsys):
    data = arrays_file(tmp_path / "data.npz")
    labels = tmp_path / "noisy.npy"
    np.save(labels, np.zeros(59, dtype=np.int64))
    out = tmp_path / "out"
    code, err = run(["--out", str(out), f"data.path={data}", f"noise.labels_file={labels}", *FAST], capsys)
    assert code == 2
    assert_one_line(err, "noisy.npy", "59")
    assert not out.exists()


def test_output_folder_not_writable(tmp_path, capsys):
    data = arrays_file(tmp_path / "data.npz")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, err = run(["--out", str(blocker / "run"), f"data.path={data}", *FAST], capsys)
    assert code == 2
    assert_one_line(err, "not writable")


def test_disk_full_is_a_runtime_error_with_no_partial_file(tmp_path, capsys, monkeypatch):
    data = arrays_file(tmp_path / "data.npz")
    out = tmp_path / "out"
    import torch

    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    code, err = run(["--out", str(out), f"data.path={data}", *FAST], capsys)
    monkeypatch.setattr(torch, "save", real_save)
    assert code == 1
    assert_one_line(err, "No space left on device", "teacher0.pt")
    assert not list(out.rglob("teacher0.pt")) and not list(out.rglob(".tmp-*"))
    # The same command afterwards finishes: the failed write left nothing that blocks it.
    code, err = run(["--out", str(out), f"data.path={data}", *FAST], capsys)
    assert code == 0, err
    assert (out / "results.json").exists()


def test_debug_shows_the_traceback(tmp_path, capsys):
    with pytest.raises(UserError):  # the error itself, not the one-line answer
        main(["--debug", "run", "--quiet", "--out", str(tmp_path / "o"), f"data.path={tmp_path / 'x.npz'}", *FAST])
