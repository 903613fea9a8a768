"""`rolemodels distill` on a user's files and `rolemodels predict` with the student it writes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rolemodels.cli import main
from rolemodels.data.mnist1d_fast import generate_fast
from rolemodels.practice.student import load_student
from rolemodels.practice.userdata import check_pool_is_new, row_hashes

FAST = ["teachers.count=2", "teachers.width=4", "teachers.epochs=3", "teachers.min_examples=0",
        "students.min_examples=2000", "train.threads=1", "train.eval_batch_size=256"]
NAMES = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])


def arrays(**changes) -> dict[str, np.ndarray]:
    x, y = generate_fast(700, seed=3)
    data = {"x_train": x[:200], "y_train": NAMES[y[:200]], "x_pool": x[200:600], "x_test": x[600:],
            "y_test": NAMES[y[600:]]}
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def distill(tmp_path: Path, capsys, *args: str) -> tuple[int, str, str]:
    code = main(["distill", "--quiet", *FAST, *args])  # later overrides win: a test's own come last
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_distill_then_predict_round_trips(tmp_path, capsys):
    np.savez(tmp_path / "mine.npz", **arrays())
    out = tmp_path / "run"
    code, _, err = distill(tmp_path, capsys, "--data", str(tmp_path / "mine.npz"), "--out", str(out))
    assert code == 0, err
    pool_labels = np.load(out / "pool" / "pool_labels.npy")
    assert pool_labels.dtype == np.uint8 and pool_labels.shape == (400, 2)
    # a pool of 400 is small: the teachers label the 200 training inputs too, and the student learns both
    assert np.load(out / "train" / "pool_labels.npy").shape == (200, 2)
    d = json.loads((out / "diagnostics.json").read_text())
    assert d["n_pool"] == 400 and d["student_rows"] == 600
    assert d["classes"] == sorted(NAMES.tolist()) and len(d["teacher_fit"]) == 2
    assert "student" in d["test_accuracy"]
    suspects = (out / "suspected_label_errors.csv").read_text().splitlines()[1:]
    assert len(suspects) == d["suspected_label_errors"] and d["estimated_noise_rate"] == pytest.approx(len(suspects) / 200)
    assert "estimated noise rate" in (out / "report.md").read_text()
    assert (out / "suspected_label_errors.csv").read_text().startswith("index,given,student,confidence\n")

    state = torch.load(out / "student.pt", weights_only=True)  # self-contained, plain data
    assert state["architecture"] == "mlp" and state["input_shape"] == [40] and len(state["classes"]) == 10
    x_new = generate_fast(50, seed=9)[0]
    np.save(tmp_path / "x.npy", x_new)
    assert main(["predict", "--model", str(out / "student.pt"), "--inputs", str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "labels.npy")]) == 0
    assert main(["predict", "--model", str(out / "student.pt"), "--inputs", str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "proba.npy"), "--proba"]) == 0
    student = load_student(out / "student.pt")
    labels, proba = np.load(tmp_path / "labels.npy"), np.load(tmp_path / "proba.npy")
    assert labels.dtype.kind == "U" and np.array_equal(labels, student.predict(x_new))
    assert proba.shape == (50, 10) and np.allclose(proba.sum(1), 1, atol=1e-5)
    assert np.array_equal(np.asarray(student.classes)[proba.argmax(1)], labels)
    # the estimated noise rate is the share of training labels the student contradicts
    given = arrays()["y_train"]
    x_train = arrays()["x_train"]
    assert d["estimated_noise_rate"] == pytest.approx(np.mean(student.predict(x_train) != given), abs=1e-9)


def test_distill_resumes_and_refuses_another_configuration(tmp_path, capsys):
    for name, array in arrays().items():
        np.save(tmp_path / f"{name}.npy", array)
    files = [f"--{name.replace('_', '-')}={tmp_path / f'{name}.npy'}" for name in arrays()]
    out = tmp_path / "run"
    assert distill(tmp_path, capsys, *files, "--out", str(out))[0] == 0
    trained = (out / "metrics.jsonl").read_text()
    student = (out / "student.pt").read_bytes()
    assert distill(tmp_path, capsys, *files, "--out", str(out))[0] == 0
    assert (out / "metrics.jsonl").read_text() == trained  # nothing trained again: every model read back
    assert (out / "student.pt").read_bytes() == student
    code, _, err = distill(tmp_path, capsys, *files, "--out", str(out), "teachers.count=3")
    assert code == 2 and "teachers.count 2 -> 3" in err
    # --force starts over: every file the last run wrote is deleted first, its diagnostics included,
    # so none of the old results can outlive a run that fails
    (out / "diagnostics.json").write_text('{"stale": true}')
    code, _, err = distill(tmp_path, capsys, *files, "--out", str(out), "teachers.count=3", "--force")
    assert code == 0 and "kept" not in err, err
    assert len(json.loads((out / "diagnostics.json").read_text())["teacher_fit"]) == 3


x_shape = generate_fast(700, seed=3)[0]


@pytest.mark.parametrize("changes, needles", [
    ({"x_pool": x_shape[200:600, :30]}, ["x_pool", "[30]", "[40]"]),  # wrong shapes
    ({"y_train": NAMES[:5].repeat(39)}, ["195 labels", "200 examples"]),
    ({"y_train": np.arange(200) % 3, "class_names": np.array(["a", "b"])}, ["label 2", "[0, 1]"]),  # out of range
    ({"y_train": (np.arange(200) % 3) - 1}, ["label -1"]),
    ({"y_test": np.array(["zebra"] * 100)}, ["y_test", "'zebra'"]),
    ({"x_train": np.where(np.arange(40) == 7, np.nan, x_shape[:200]).astype(np.float32)}, ["x_train", "NaN"]),
    ({"x_pool": np.full((400, 40), np.inf, np.float32)}, ["x_pool", "NaN or infinite"]),
    ({"x_test": np.full((100, 40), np.nan, np.float32)}, ["x_test", "NaN"]),
    ({"x_pool": np.concatenate([x_shape[200:590], x_shape[10:20]])}, ["10 pool row(s) repeat training rows"]),
    ({"y_train": np.array(["a"] * 197 + ["b"] * 3), "x_test": None, "y_test": None},
     ["class 'b' has 3 labelled"]),  # too few of a class
    ({"y_train": np.array(["a"] * 200), "x_test": None, "y_test": None}, ["at least 2 classes"]),
    ({"x_pool": None}, ["no x_pool"]),
    ({"y_test": None}, ["x_test without y_test"]),
])
def test_bad_input_is_one_line_with_exit_code_2_and_nothing_written(tmp_path, capsys, changes, needles):
    np.savez(tmp_path / "bad.npz", **arrays(**changes))
    out = tmp_path / "run"
    code, _, err = distill(tmp_path, capsys, "--data", str(tmp_path / "bad.npz"), "--out", str(out))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not out.exists()


def test_predict_refuses_inputs_of_another_shape(tmp_path, capsys):
    np.savez(tmp_path / "mine.npz", **arrays())
    assert distill(tmp_path, capsys, "--data", str(tmp_path / "mine.npz"), "--out", str(tmp_path / "run"))[0] == 0
    np.save(tmp_path / "x.npy", np.zeros((5, 41), np.float32))
    code = main(["predict", "--model", str(tmp_path / "run" / "student.pt"), "--inputs", str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "labels.npy")])
    assert code == 2 and "[41]" in capsys.readouterr().err and not (tmp_path / "labels.npy").exists()
    code = main(["predict", "--model", str(tmp_path / "missing.pt"), "--inputs", str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "labels.npy")])
    assert code == 2 and "missing.pt" in capsys.readouterr().err


def test_row_hashes_find_repeated_rows_of_any_dtype():
    rng = np.random.default_rng(0)
    for x in (rng.integers(0, 256, (50, 7, 3), dtype=np.uint8), rng.standard_normal((50, 5)).astype(np.float32)):
        hashes = row_hashes(x, chunk=16)
        assert len(set(hashes.tolist())) == 50  # different rows, different hashes
        assert np.array_equal(row_hashes(x[[3, 3, 49]]), hashes[[3, 3, 49]])
        check_pool_is_new("pool", x[25:], x[:25])  # no repeats: no error


def test_a_file_that_is_not_a_student_is_refused_in_one_line(tmp_path):
    from rolemodels.errors import UserError

    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    for name, needle in (("other.pt", "not a rolemodels student"), ("junk.pt", "cannot be read")):
        with pytest.raises(UserError, match=needle):
            load_student(tmp_path / name)


def test_distill_defaults_to_robust_teachers_and_keeps_the_papers_recipe_one_option_away(tmp_path, capsys):
    from rolemodels.errors import UserError
    from rolemodels.practice.distill import load_distill_config
    from rolemodels.practice.userdata import InputFiles

    robust = load_distill_config(InputFiles()).teachers  # the default: robust teachers, distilled
    assert (robust.loss, robust.gce_q) == ("gce", 0.8)  # the estimator's robust q (tests/test_estimator.py)
    assert load_distill_config(InputFiles(), ["teachers.gce_q=0.7"]).teachers.gce_q == 0.7  # overrides win
    assert load_distill_config(InputFiles(), recipe="paper").teachers.loss == "cross_entropy"
    assert load_distill_config(InputFiles(), ["teachers.loss=cross_entropy"]).teachers.loss == "cross_entropy"
    with pytest.raises(UserError, match="--recipe fast: choose one of robust, paper"):
        load_distill_config(InputFiles(), recipe="fast")
    np.savez(tmp_path / "mine.npz", **arrays())
    runs = {}
    for recipe in ("robust", "paper"):
        out = tmp_path / recipe
        code, _, err = distill(tmp_path, capsys, "--data", str(tmp_path / "mine.npz"), "--out", str(out),
                               "--recipe", recipe)
        assert code == 0, err
        runs[recipe] = torch.load(out / "teachers" / "teacher0.pt", weights_only=True)
        assert f'recipe = "{recipe}"' in (out / "config.toml").read_text()
    # a guard: the recipes train different teachers from the same seed and data (their weights differ)
    assert runs["robust"].keys() == runs["paper"].keys()
    assert any(not torch.equal(runs["robust"][k], runs["paper"][k]) for k in runs["robust"])
    code, _, err = distill(tmp_path, capsys, "--data", str(tmp_path / "mine.npz"), "--out", str(tmp_path / "paper"))
    assert code == 2 and "recipe" in err  # a run folder of one recipe is not resumed with the other


def test_a_data_file_given_alone_is_the_data_and_a_stray_word_is_answered_with_the_flag(tmp_path, capsys):
    np.savez(tmp_path / "mine.npz", **arrays())
    code, _, err = distill(tmp_path, capsys, str(tmp_path / "mine.npz"), "--out", str(tmp_path / "run"))
    assert code == 0, err
    assert np.load(tmp_path / "run" / "pool" / "pool_labels.npy").shape == (400, 2)
    code, _, err = distill(tmp_path, capsys, str(tmp_path / "x.npy"), "--out", str(tmp_path / "other"))
    assert code == 2 and "a data file is given as --data" in err and "--x-train" in err
    assert not (tmp_path / "other").exists()


def test_distill_takes_the_estimators_recipe_from_the_one_place_it_is_kept(tmp_path):
    """The network-dependent settings, the budgets, the soft targets: what RoleModelClassifier
    trains, unless an override says otherwise."""
    from rolemodels.practice.distill import load_distill_config, resolved
    from rolemodels.practice.recipe import bounded_examples, student_examples, teacher_recipe
    from rolemodels.practice.userdata import InputFiles, read_user_data

    np.savez(tmp_path / "mine.npz", **arrays())
    data = read_user_data(InputFiles(data=str(tmp_path / "mine.npz")))
    cfg = resolved(load_distill_config(InputFiles(data=str(tmp_path / "mine.npz"))), data)
    recipe = teacher_recipe("robust", "mlp")
    for key, value in recipe.items():
        expected = bounded_examples(value, 200) if key == "min_examples" else value
        assert getattr(cfg.teachers, key) == expected, key
    assert cfg.teachers.model == "mlp" and cfg.combine == "soft" and cfg.teachers.gce_warmup == 0.1
    assert cfg.teachers.count == 3  # the estimator's n_teachers="auto" for an mlp with a pool
    # a pool of 400 is small: the student learns the 200 training inputs too, with their budget
    assert cfg.students.min_examples == student_examples(400 + 200) and cfg.students.augment == cfg.teachers.augment
    mine = resolved(load_distill_config(InputFiles(data=str(tmp_path / "mine.npz")),
                                        ["teachers.epochs=7", "students.min_examples=500", "combine=vote",
                                         "teachers.count=5"]), data)
    assert (mine.teachers.epochs, mine.students.min_examples, mine.combine) == (7, 500, "vote")  # overrides win
    assert mine.teachers.count == 5
    paper = resolved(load_distill_config(InputFiles(data=str(tmp_path / "mine.npz")), recipe="paper"), data)
    assert (paper.teachers.loss, paper.combine, paper.teachers.count) == ("cross_entropy", "vote", 10)


def test_stuck_teachers_are_reported_not_explained_away(tmp_path, capsys):
    from rolemodels.practice.fit_checks import DegenerateFitWarning

    np.savez(tmp_path / "mine.npz", **arrays())
    out = tmp_path / "run"
    with pytest.warns(DegenerateFitWarning, match="rolemodels distill: the teachers fit"):
        code, _, err = distill(tmp_path, capsys, "--data", str(tmp_path / "mine.npz"), "--out", str(out),
                               "teachers.lr=1e-7")  # they cannot move from their initial weights
    assert code == 0, err
    d = json.loads((out / "diagnostics.json").read_text())
    assert "teachers_at_chance" in [w["kind"] for w in d["warnings"]]
    assert "## Warnings" in (out / "report.md").read_text()
    healthy = tmp_path / "healthy"
    assert distill(tmp_path, capsys, "--data", str(tmp_path / "mine.npz"), "--out", str(healthy),
                   "teachers.epochs=30", "teachers.width=32")[0] == 0
    assert "teachers_short" not in [w["kind"] for w in json.loads((healthy / "diagnostics.json").read_text())["warnings"]]


def test_teachers_short_of_what_their_recipe_should_fit_are_named():
    from rolemodels.practice.distill import load_distill_config, teacher_shortfall
    from rolemodels.practice.userdata import InputFiles

    robust, paper = load_distill_config(InputFiles()), load_distill_config(InputFiles(), recipe="paper")
    # the student finds 90% of the labels right: robust teachers should fit about that many
    assert [w["kind"] for w in teacher_shortfall(robust, {"estimated_noise_rate": 0.1, "teacher_fit": [0.5, 0.6]})] \
        == ["teachers_short"]
    assert teacher_shortfall(robust, {"estimated_noise_rate": 0.1, "teacher_fit": [0.85, 0.88]}) == []
    # the paper's teachers are samplers: they fit every label
    short = teacher_shortfall(paper, {"estimated_noise_rate": 0.1, "teacher_fit": [0.85, 0.88]})
    assert "every label" in short[0]["message"]
    assert teacher_shortfall(paper, {"estimated_noise_rate": 0.1, "teacher_fit": [1.0, 0.995]}) == []


def test_the_papers_interpolating_teachers_leave_a_small_pool_alone(tmp_path, capsys):
    """Their labels of the training inputs are the noisy labels themselves: a student that learnt
    them would flag none, so only robust teachers' labels join a small pool."""
    np.savez(tmp_path / "mine.npz", **arrays())
    out = tmp_path / "run"
    code, _, err = distill(tmp_path, capsys, "--data", str(tmp_path / "mine.npz"), "--recipe", "paper",
                           "--out", str(out))
    assert code == 0, err
    d = json.loads((out / "diagnostics.json").read_text())
    assert d["student_rows"] == d["n_pool"] == 400 and not (out / "train").exists()
