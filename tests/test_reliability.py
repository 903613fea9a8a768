"""Reliability promises (docs/reliability.md): bad values, diverged runs, full disks, hostile files.

The catalogue below holds a bad value for every key of the configuration: each is answered in
one line naming what is wrong, with exit code 2, before anything is computed or written.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rolemodels.cli import main
from rolemodels.config import Config, flatten, to_dict

# Small enough to reach the teachers in a second when a value is (wrongly) accepted.
SMALL = ["data.n_train=200", "data.n_test=100", "data.n_pool=256", "teachers.count=2", "teachers.epochs=1",
         "teachers.width=4", "students.batch_size=64", "sweep.teachers=[1, 2]", "train.threads=1",
         "students.pool_budget=false"]

# key -> (bad value, what the one line must name, further overrides the case needs)
BAD: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {
    "name": [("''", "config key name", ()), ("../elsewhere", "config key name", ())],
    "seed": [("-1", "config key seed", ())],
    "seeds": [("0", "config key seeds", ())],
    "data.name": [("imagenet", "config key data.name", ())],
    "data.n_train": [("0", "config key data.n_train", ())],
    "data.n_test": [("-3", "config key data.n_test", ())],
    "data.n_pool": [("0", "config key data.n_pool", ())],
    "data.seed": [("-1", "config key data.seed", ())],
    "data.generator": [("slow", "config key data.generator", ())],
    "data.path": [("/nonexistent/mine.npz", "/nonexistent/mine.npz", ("data.name=arrays",))],
    "data.root": [("/nonexistent/fashion", "/nonexistent/fashion", ("data.name=fashion-mnist",))],
    "data.pool_root": [("/nonexistent/cifar5m", "/nonexistent", ("data.name=cifar10", "data.root=/nonexistent"))],
    "data.pool_per_class": [("-1", "config key data.pool_per_class", ())],
    "data.download": [("maybe", "config key data.download", ())],
    "data.cache_dir": [("/proc/version/cache", "config key data.cache_dir", ())],
    "noise.preset": [("salt", "config key noise.preset", ())],
    "noise.rate": [("1.5", "config key noise.rate", ()), ("nan", "config key noise.rate", ())],
    "noise.shift": [("-2", "config key noise.shift", ())],
    "noise.mode": [("random", "config key noise.mode", ())],
    "noise.matrix_file": [("/nonexistent/T.txt", "/nonexistent/T.txt", ("noise.preset=matrix",))],
    "noise.labels_file": [("/nonexistent/noisy.npy", "/nonexistent/noisy.npy", ())],
    "noise.labels_key": [("nokey", "nokey", ("noise.labels_file=LABELS_NPZ",))],
    "teachers.model": [("resnet50", "config key teachers.model", ()),
                       ("cnn2d", "config key teachers.model", ())],  # a 2-D network for 1-D signals
    "teachers.count": [("0", "config key teachers.count", ())],
    "teachers.width": [("-5", "config key teachers.width", ())],
    "teachers.neighbors": [("0", "config key teachers.neighbors", ())],
    "teachers.bandwidth": [("-1.0", "config key teachers.bandwidth", ())],
    "teachers.data": [("some", "config key teachers.data", ())],
    "teachers.overlap": [("0", "config key teachers.overlap", ())],
    "teachers.per_device": [("-1", "config key teachers.per_device", ())],
    "students.model": [("transformer", "config key students.model", ()),
                       ("resnet18", "config key students.model", ())],  # images only
    "students.width": [("-5", "config key students.width", ())],
    "students.random_teacher": [("always", "config key students.random_teacher", ())],
    "students.ensemble": [("median", "config key students.ensemble", ())],
    "students.labels": [("cached", "config key students.labels", ())],
    "students.pool_size": [("-1", "config key students.pool_size", ())],
    "students.per_device": [("-1", "config key students.per_device", ())],
    "students.pool_budget": [("often", "config key students.pool_budget", ())],
    "students.small_pool": [("teacher", "config key students.small_pool", ())],
    "sweep.teachers": [("[0, 2]", "config key sweep.teachers", ())],
    "sweep.students": [("sometimes", "config key sweep.students", ())],
    "train.device": [("gpu7", "config key train.device", ())],
    "train.precision": [("fp8", "config key train.precision", ())],
    "train.threads": [("-1", "config key train.threads", ())],
    "train.eval_batch_size": [("-1", "config key train.eval_batch_size", ())],
    "train.stack": [("maybe", "config key train.stack", ())],
    "train.checkpoint_every": [("0", "config key train.checkpoint_every", ())],
    "train.compile": [("fast", "config key train.compile", ())],
    "train.compile_mode": [("turbo", "config key train.compile_mode", ()),
                           ("reduce-overhead", "train.compile_mode", ())],  # without train.compile=true
    "train.deterministic": [("always", "config key train.deterministic", ())],
    "train.dist_timeout": [("0", "config key train.dist_timeout", ())],
}
for section in ("teachers", "students"):  # the training recipe of each
    BAD.update({
        f"{section}.epochs": [("0", f"config key {section}.epochs", ())],
        f"{section}.batch_size": [("0", f"config key {section}.batch_size", ())],
        f"{section}.optimizer": [("lbfgs", f"config key {section}.optimizer", ())],
        f"{section}.lr": [("-0.1", f"config key {section}.lr", ()), ("inf", f"config key {section}.lr", ())],
        f"{section}.momentum": [("1.0", f"config key {section}.momentum", ())],
        f"{section}.weight_decay": [("-1.0", f"config key {section}.weight_decay", ()),
                                    ("nan", f"config key {section}.weight_decay", ())],
        f"{section}.schedule": [("step", f"config key {section}.schedule", ())],
        f"{section}.augment": [("mixup", f"config key {section}.augment", ())],
        f"{section}.min_examples": [("-1", f"config key {section}.min_examples", ())],
        f"{section}.augment_size": [("-2", f"config key {section}.augment_size", ())],
        f"{section}.loss": [("focal", f"config key {section}.loss", ())],
        f"{section}.gce_q": [("0", f"config key {section}.gce_q", ()), ("1.5", f"config key {section}.gce_q", ()),
                             ("nan", f"config key {section}.gce_q", ())],
        f"{section}.gce_warmup": [("1", f"config key {section}.gce_warmup", ()),
                                  ("-0.1", f"config key {section}.gce_warmup", ())],
    })


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """The runs here happen in this process, and train.threads=1 sets torch's thread count: restore it."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_the_catalogue_has_every_key_of_the_configuration():
    assert set(BAD) == set(flatten(to_dict(Config())))


def assert_one_line(err: str, needle: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def labels_npz(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("labels") / "noisy.npz"
    np.savez(path, labels=np.zeros(200, dtype=np.int64))
    return path


CASES = [(key, value, needle, extra) for key, cases in BAD.items() for value, needle, extra in cases]


@pytest.mark.parametrize("key,value,needle,extra", CASES, ids=[f"{c[0]}={c[1]}" for c in CASES])
def test_a_bad_value_of_every_key_is_refused_before_anything_is_written(key, value, needle, extra, tmp_path, capsys,
                                                                        labels_npz):
    out = tmp_path / "out"
    extra = [item.replace("LABELS_NPZ", str(labels_npz)) for item in extra]
    code = main(["run", "--quiet", "--out", str(out), f"data.cache_dir={tmp_path / 'cache'}", *SMALL, *extra,
                 f"{key}={value}"])
    assert code == 2
    assert_one_line(capsys.readouterr().err, needle)
    assert not out.exists()  # nothing written where the input was refused


# ---------------------------------------------------------------------------------------------
# A diverged run is no result


def test_a_diverging_training_stops_with_one_line_and_no_results(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["run", "--quiet", "--out", str(out), f"data.cache_dir={tmp_path / 'cache'}", *SMALL,
                 "teachers.lr=1e30", "teachers.batch_size=64"])  # several steps: the first update diverges
    assert code == 1
    assert_one_line(capsys.readouterr().err, "teacher 1/2: the training loss became nan in epoch 1 of 1")
    assert not (out / "results.json").exists()


def test_json_files_never_hold_nan_or_infinity(tmp_path):
    from rolemodels.runtime.files import atomic_write_json

    atomic_write_json(tmp_path / "r.json", {"mean": float("nan"), "values": [1.0, float("inf"), -float("inf")]})
    text = (tmp_path / "r.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"mean": None, "values": [1.0, None, None]}


# ---------------------------------------------------------------------------------------------
# Write errors: one line naming the file and what went wrong


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full, which fails every write with ENOSPC")
def test_a_full_disk_while_logging_metrics_is_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.jsonl").symlink_to("/dev/full")  # every append fails: No space left on device
    code = main(["run", "--quiet", "--out", str(out), f"data.cache_dir={tmp_path / 'cache'}", *SMALL])
    assert code == 1
    assert_one_line(capsys.readouterr().err, f"cannot write {out / 'metrics.jsonl'}: No space left on device")


def _read_only_folder() -> Path | None:
    """A folder no process may write in, not even root's: a read-only mount such as /proc or /sys."""
    for folder in (Path("/proc"), Path("/sys")):
        try:
            (folder / "rolemodels-probe").write_text("x")
        except OSError:
            return folder
    return None


@pytest.mark.skipif(_read_only_folder() is None, reason="no read-only folder on this machine")
def test_noise_make_into_a_read_only_folder_is_one_line(tmp_path, capsys):
    labels = tmp_path / "clean.npy"
    np.save(labels, np.arange(100) % 10)
    target = _read_only_folder() / "noisy.npy"
    code = main(["noise", "make", "--labels", str(labels), "--preset", "paper", "--seed", "0", "--out", str(target)])
    assert code in (1, 2)
    err = capsys.readouterr().err
    assert_one_line(err, str(target))
    assert not target.exists()


# ---------------------------------------------------------------------------------------------
# Misleading messages


def test_float64_inputs_beyond_float32_are_named_as_such(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x_train = rng.normal(size=(60, 8))
    x_train[3, 2] = 1e300  # finite in float64, infinite in float32
    np.savez(tmp_path / "d.npz", x_train=x_train, y_train=rng.integers(0, 3, 60),
             x_test=rng.normal(size=(30, 8)), y_test=rng.integers(0, 3, 30), x_pool=rng.normal(size=(64, 8)))
    code = main(["run", "--quiet", "--out", str(tmp_path / "out"), "data.name=arrays", f"data.path={tmp_path / 'd.npz'}",
                 "teachers.model=mlp", *SMALL[3:]])
    assert code == 2
    err = capsys.readouterr().err
    assert_one_line(err, "x_train has 1 values beyond float32's range")
    assert "NaN" not in err


def test_object_arrays_are_refused_without_advice_to_allow_pickles(tmp_path, capsys):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.normal(size=(60, 8)).astype(np.float32), "y_train": np.array([{"a": 1}] * 60, object),
              "x_test": rng.normal(size=(30, 8)).astype(np.float32), "y_test": rng.integers(0, 3, 30),
              "x_pool": rng.normal(size=(64, 8)).astype(np.float32)}
    np.savez(tmp_path / "d.npz", **arrays)
    code = main(["run", "--quiet", "--out", str(tmp_path / "out"), "data.name=arrays", f"data.path={tmp_path / 'd.npz'}",
                 "teachers.model=mlp", *SMALL[3:]])
    err = capsys.readouterr().err
    assert code == 2
    assert_one_line(err, "pickled Python objects, which are refused")
    assert "allow_pickle" not in err and "weights_only" not in err


def test_a_corrected_model_after_a_shape_error_is_accepted_in_the_same_folder(tmp_path, capsys):
    """The model is checked against the data before the run folder is touched, so the fix is no
    'different configuration'."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=rng.normal(size=(60, 8)).astype(np.float32), y_train=rng.integers(0, 3, 60),
             x_test=rng.normal(size=(30, 8)).astype(np.float32), y_test=rng.integers(0, 3, 30),
             x_pool=rng.normal(size=(64, 8)).astype(np.float32))
    out = tmp_path / "out"
    common = ["run", "--quiet", "--out", str(out), "data.name=arrays", f"data.path={tmp_path / 'd.npz'}",
              "teachers.count=2", "teachers.epochs=1", "teachers.width=4", "students.batch_size=32",
              "sweep.teachers=[1, 2]", "train.threads=1"]
    assert main([*common, "teachers.model=cnn2d"]) == 2
    assert_one_line(capsys.readouterr().err, "config key teachers.model: model cnn2d needs images")
    assert not out.exists()
    assert main([*common, "teachers.model=mlp"]) == 0, capsys.readouterr().err
    assert (out / "results.json").exists()


def test_models_command_refuses_nonsense_options(capsys):
    for args, needle in ((["--input-shape", "0,0"], "every size must be at least 1"),
                         (["--input-shape", "-3"], "every size must be at least 1"),
                         (["--width", "-1"], "--width -1"), (["--num-classes", "0"], "--num-classes 0")):
        assert main(["models", *args]) == 2
        assert_one_line(capsys.readouterr().err, needle)
