"""`rolemodels noise make|inspect`, called in-process through `rolemodels.cli.main`."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rolemodels.cli import main

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(not (DATA / "cifar10_train_labels.npy").exists(), reason="shared data absent")


def run(argv, capsys):
    """Run the command line; return (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def clean(tmp_path):
    """60 clean labels, 20 of each of 3 classes, shuffled, as .npy."""
    labels = np.random.default_rng(0).permutation(np.repeat(np.arange(3), 20))
    path = tmp_path / "clean.npy"
    np.save(path, labels)
    return path


# ----------------------------------------------------------------------------- make


def test_make_writes_noisy_labels_and_summary(clean, tmp_path, capsys):
    out = tmp_path / "noisy.npy"
    code, stdout, err = run(["noise", "make", "--labels", clean, "--preset", "pairflip", "--rate", "0.25",
                             "--seed", 1, "--out", out], capsys)
    assert code == 0, err
    labels = np.load(clean)
    noisy = np.load(out)
    changed = noisy != labels
    assert np.bincount(labels[changed], minlength=3).tolist() == [5, 5, 5]
    np.testing.assert_array_equal(noisy[changed], (labels[changed] + 1) % 3)
    assert "realised noise rate 0.2500: 15 of 60 labels changed" in stdout
    assert "pairflip noise, rate 0.25" in stdout


@pytest.mark.parametrize("name, reader", [
    ("n.txt", lambda p: np.loadtxt(p, dtype=np.int64)),
    ("n.csv", lambda p: np.loadtxt(p, dtype=np.int64)),
    ("n.int64", lambda p: np.fromfile(p, dtype="<i8")),
])
def test_make_output_format_follows_extension(clean, tmp_path, capsys, name, reader):
    code, _, err = run(["noise", "make", "--labels", clean, "--preset", "symmetric", "--seed", 0,
                        "--out", tmp_path / name], capsys)
    assert code == 0, err
    assert run(["noise", "make", "--labels", clean, "--preset", "symmetric", "--seed", 0,
                "--out", tmp_path / "ref.npy"], capsys)[0] == 0
    np.testing.assert_array_equal(reader(tmp_path / name), np.load(tmp_path / "ref.npy"))


def test_make_same_seed_same_file_other_seed_differs(clean, tmp_path, capsys):
    for name, seed in (("a.npy", 4), ("b.npy", 4), ("c.npy", 5)):
        assert run(["noise", "make", "--labels", clean, "--preset", "paper", "--rate", "0.3", "--mode", "sampled",
                    "--seed", seed, "--out", tmp_path / name], capsys)[0] == 0
    assert (tmp_path / "a.npy").read_bytes() == (tmp_path / "b.npy").read_bytes()
    assert (tmp_path / "a.npy").read_bytes() != (tmp_path / "c.npy").read_bytes()


def test_make_matrix_preset_and_num_classes(clean, tmp_path, capsys):
    T = np.array([[0.5, 0.25, 0.25, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.9, 0.1], [0, 0, 0, 1.0]])
    np.savetxt(tmp_path / "T.csv", T, delimiter=",")
    code, stdout, err = run(["noise", "make", "--labels", clean, "--preset", "matrix", "--matrix",
                             tmp_path / "T.csv", "--num-classes", 4, "--seed", 0, "--out", tmp_path / "n.npy"], capsys)
    assert code == 0, err
    counts = np.zeros((4, 4), dtype=int)
    np.add.at(counts, (np.load(clean), np.load(tmp_path / "n.npy")), 1)
    np.testing.assert_array_equal(counts[:3], [[10, 5, 5, 0], [0, 20, 0, 0], [0, 0, 18, 2]])


def test_make_warns_for_matrix_without_diagonal_dominance(clean, tmp_path, capsys):
    code, _, err = run(["noise", "make", "--labels", clean, "--preset", "symmetric", "--rate", "0.9", "--seed", 0,
                        "--out", tmp_path / "n.npy"], capsys)
    assert code == 0
    assert err.startswith("rolemodels: warning: symmetric noise: not diagonally dominant")


@needs_data
def test_make_paper_on_cifar10_flips_1000_per_class_like_the_authors(tmp_path, capsys):
    clean_path = DATA / "cifar10_train_labels.npy"
    code, stdout, err = run(["noise", "make", "--labels", clean_path, "--preset", "paper", "--rate", "0.2",
                             "--seed", 0, "--out", tmp_path / "noisy.npy"], capsys)
    assert code == 0, err
    clean = np.load(clean_path)
    noisy = np.load(tmp_path / "noisy.npy")
    changed = noisy != clean
    assert np.bincount(clean[changed], minlength=10).tolist() == [1000] * 10
    np.testing.assert_array_equal(noisy[changed], (clean[changed] + 5) % 10)
    authors = np.fromfile(DATA / "cifar10_noisy_labels_authors.int64", dtype="<i8")
    ours_pairs = np.bincount(clean * 10 + noisy, minlength=100)
    authors_pairs = np.bincount(clean * 10 + authors, minlength=100)
    np.testing.assert_array_equal(ours_pairs, authors_pairs)
    assert "10,000 of 50,000 labels changed" in stdout


@pytest.fixture
def instance_files(clean, tmp_path):
    """An annotator's probabilities [60, 3] and features [60, 2, 5] for the 60 clean labels."""
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(3), 60)
    np.save(tmp_path / "probs.npy", probs)
    np.save(tmp_path / "x.npy", rng.normal(size=(60, 2, 5)).astype(np.float32))
    return tmp_path / "probs.npy", tmp_path / "x.npy"


@pytest.mark.parametrize("preset", ["random", "annotator", "part"])
def test_make_new_presets_write_labels_and_print_realised_rate(clean, instance_files, tmp_path, capsys, preset):
    from rolemodels.method.instance_noise import annotator_noise, part_dependent_noise
    from rolemodels.method.noise import apply_noise, transition_matrix

    probs, x = instance_files
    extra = {"random": [], "annotator": ["--probs", probs], "part": ["--inputs", x]}[preset]
    out = tmp_path / "noisy.npy"
    code, stdout, err = run(["noise", "make", "--labels", clean, "--preset", preset, "--rate", "0.3", "--seed", 2,
                             "--out", out, *extra], capsys)
    assert code == 0, err
    labels, noisy = np.load(clean), np.load(out)
    expected = {"random": lambda: apply_noise(labels, transition_matrix("random", 3, 0.3, seed=2), 2),
                "annotator": lambda: annotator_noise(labels, np.load(probs), 0.3, 2),
                "part": lambda: part_dependent_noise(labels, np.load(x), 0.3, 2, num_classes=3)}[preset]()
    np.testing.assert_array_equal(noisy, expected)  # the command is the library function
    changed = int(np.sum(noisy != labels))
    assert 0 < changed < 60
    assert f"realised noise rate {changed / 60:.4f}: {changed} of 60 labels changed" in stdout
    assert stdout.startswith(f"{preset} noise") and ", rate 0.3" in stdout and "seed 2" in stdout
    assert ("mode exact" in stdout) == (preset == "random")


# ----------------------------------------------------------------------------- inspect


@needs_data
def test_inspect_authors_file_json(capsys):
    code, stdout, err = run(["noise", "inspect", "--clean", DATA / "cifar10_train_labels.npy",
                             "--noisy", DATA / "cifar10_noisy_labels_authors.int64", "--json"], capsys)
    assert code == 0, err
    report = json.loads(stdout)
    assert set(report) == {"rate", "counts", "matrix", "num_classes", "n"}
    assert report["rate"] == pytest.approx(0.2)
    assert report["num_classes"] == 10 and report["n"] == 50_000
    matrix = np.array(report["matrix"])
    for c in range(10):
        assert matrix[c, c] == pytest.approx(0.8)
        assert matrix[c, (c + 5) % 10] == pytest.approx(0.2)
    assert np.array(report["counts"]).sum() == 50_000
    assert np.count_nonzero(report["counts"]) == 20


@needs_data
def test_inspect_authors_file_text(capsys):
    code, stdout, _ = run(["noise", "inspect", "--clean", DATA / "cifar10_train_labels.npy",
                           "--noisy", DATA / "cifar10_noisy_labels_authors.int64"], capsys)
    assert code == 0
    assert "realised noise rate 0.2000" in stdout
    assert "0.8000" in stdout and "0.2000" in stdout


def test_inspect_counts_match_hand_count(tmp_path, capsys):
    np.save(tmp_path / "c.npy", np.array([0, 0, 1, 1, 1, 2]))
    (tmp_path / "n.txt").write_text("0\n2\n1\n0\n1\n2\n")
    code, stdout, _ = run(["noise", "inspect", "--clean", tmp_path / "c.npy", "--noisy", tmp_path / "n.txt",
                           "--num-classes", 4, "--json"], capsys)
    assert code == 0
    report = json.loads(stdout)
    assert report["counts"] == [[1, 0, 1, 0], [1, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert report["rate"] == pytest.approx(2 / 6)
    assert report["matrix"][3] == [0.0, 0.0, 0.0, 0.0]


def test_inspect_pt_with_key(tmp_path, capsys):
    import torch

    clean = np.array([0, 1, 2, 0])
    torch.save({"clean_label": clean, "worse_label": np.array([1, 1, 2, 0])}, tmp_path / "CIFAR-10_human.pt")
    np.save(tmp_path / "clean.npy", clean)
    code, stdout, err = run(["noise", "inspect", "--clean", tmp_path / "clean.npy", "--noisy",
                             tmp_path / "CIFAR-10_human.pt", "--noisy-key", "worse_label", "--json"], capsys)
    assert code == 0, err
    assert json.loads(stdout)["rate"] == pytest.approx(0.25)


# ----------------------------------------------------------------------------- bad input


def _bad_inputs(tmp_path, clean):
    """(name, argv, text the one error line must contain) for each kind of bad input."""
    np.save(tmp_path / "short.npy", np.zeros(59, dtype=np.int64))
    np.save(tmp_path / "big.npy", np.full(60, 7))
    np.save(tmp_path / "frac.npy", np.linspace(0, 1, 60))
    np.save(tmp_path / "nan.npy", np.where(np.arange(60) == 3, np.nan, 0.0))
    (tmp_path / "odd.int64").write_bytes(b"\x00" * 20)
    (tmp_path / "labels.xyz").write_text("0\n1\n")
    np.save(tmp_path / "rect.npy", np.full((3, 2), 0.5))
    np.save(tmp_path / "neg.npy", np.array([[1.1, -0.1, 0], [0, 1, 0], [0, 0, 1]]))
    np.save(tmp_path / "sum.npy", np.array([[0.8, 0.1, 0], [0, 1, 0], [0, 0, 1]]))
    probs = np.random.default_rng(0).dirichlet(np.ones(3), 60)
    np.save(tmp_path / "probs.npy", probs)
    np.save(tmp_path / "probs59.npy", probs[:59])
    np.save(tmp_path / "probs2.npy", np.full((60, 2), 0.5))
    np.save(tmp_path / "probs_sum.npy", probs * 0.5)
    torch_dict = tmp_path / "many.pt"
    import torch

    torch.save({"clean_label": np.zeros(60), "aggre_label": np.zeros(60)}, torch_dict)
    out = tmp_path / "out.npy"
    make = ["noise", "make", "--labels", clean, "--seed", 0, "--out", out]
    inspect = ["noise", "inspect", "--clean", clean, "--noisy"]
    return [
        ("missing file", ["noise", "make", "--labels", tmp_path / "gone.npy", "--preset", "paper", "--seed", 0,
                          "--out", out], "gone.npy: no such file"),
        ("unknown format", inspect + [tmp_path / "labels.xyz"], "labels.xyz: unknown format"),
        ("raw size", inspect + [tmp_path / "odd.int64"], "odd.int64: 20 bytes is not a multiple of 8"),
        ("length", inspect + [tmp_path / "short.npy"], "short.npy: 59 labels, but the dataset has 60 images"),
        ("range", inspect + [tmp_path / "big.npy"], "big.npy: label 7 at index 0 is outside [0, 3)"),
        ("range via --num-classes", make[:4] + ["--preset", "paper", "--num-classes", 2] + make[4:],
         "clean.npy: label 2 at index"),
        ("fraction", inspect + [tmp_path / "frac.npy"], "frac.npy: label 0.0169492 at index 1 is not an integer"),
        ("nan", inspect + [tmp_path / "nan.npy"], "nan.npy: label at index 3 is nan"),
        ("not square", make + ["--preset", "matrix", "--matrix", tmp_path / "rect.npy"],
         "rect.npy: shape (3, 2) is not square"),
        ("negative", make + ["--preset", "matrix", "--matrix", tmp_path / "neg.npy"],
         "neg.npy: entry [0, 1] is negative"),
        ("row sum", make + ["--preset", "matrix", "--matrix", tmp_path / "sum.npy"], "sum.npy: row 0 sums to 0.9"),
        ("rate 1", make + ["--preset", "paper", "--rate", "1"], "noise rate 1.0 is outside [0, 1)"),
        ("rate negative", make + ["--preset", "symmetric", "--rate=-0.1"], "noise rate -0.1 is outside [0, 1)"),
        ("pt without key", inspect + [torch_dict], "many.pt: holds several arrays (clean_label, aggre_label)"),
        ("pt bad key", inspect + [torch_dict, "--noisy-key", "worst"], "available keys: clean_label, aggre_label"),
        ("matrix option without matrix preset", make + ["--preset", "paper", "--matrix", tmp_path / "sum.npy"],
         "--matrix applies only to --preset matrix"),
        ("output format", ["noise", "make", "--labels", clean, "--preset", "paper", "--seed", 0,
                           "--out", tmp_path / "out.pt"], "cannot write labels as .pt"),
        ("negative seed", make[:-4] + ["--seed=-3", "--out", out, "--preset", "paper"], "seed -3"),
        ("overwrite clean labels", make[:-1] + [clean, "--preset", "paper"], "is the clean label file itself"),
        ("annotator without probs", make + ["--preset", "annotator"], "--preset annotator needs --probs FILE"),
        ("part without inputs", make + ["--preset", "part"], "--preset part needs --inputs FILE"),
        ("probs with another preset", make + ["--preset", "random", "--probs", tmp_path / "probs.npy"],
         "--probs applies only to --preset annotator, not random"),
        ("inputs with another preset", make + ["--preset", "annotator", "--probs", tmp_path / "probs.npy",
                                               "--inputs", tmp_path / "probs.npy"], "--inputs applies only to --preset part"),
        ("mode with instance noise", make + ["--preset", "part", "--inputs", tmp_path / "probs.npy", "--mode", "exact"],
         "--mode applies only to transition-matrix presets, not part"),
        ("probs rows", make + ["--preset", "annotator", "--probs", tmp_path / "probs59.npy"],
         "probs59.npy: 59 rows, but the labels file has 60 labels"),
        ("inputs rows", make + ["--preset", "part", "--inputs", tmp_path / "probs59.npy"],
         "inputs file " + str(tmp_path / "probs59.npy") + ": 59 rows"),
        ("probs columns", make + ["--preset", "annotator", "--probs", tmp_path / "probs2.npy"],
         "probs2.npy has 2 columns; expected labels in [0, 2)"),
        ("probs sums", make + ["--preset", "annotator", "--probs", tmp_path / "probs_sum.npy"],
         "probs_sum.npy: row 0 sums to"),
        ("probs 1-D", make + ["--preset", "annotator", "--probs", tmp_path / "frac.npy"],
         "frac.npy: shape (60,); expected [N, C]"),
        ("probs not npy", make + ["--preset", "annotator", "--probs", tmp_path / "labels.xyz"],
         "labels.xyz: cannot read a .npy array"),
        ("random rate too high", make + ["--preset", "random", "--rate", "0.7"],
         "noise rate 0.7 is too high for a random matrix with 3 classes"),
    ]


def test_bad_inputs_give_one_line_exit_2_and_no_output(clean, tmp_path, capsys):
    for name, argv, expected in _bad_inputs(tmp_path, clean):
        before = sorted(p.name for p in tmp_path.iterdir())
        code, stdout, err = run(argv, capsys)
        assert code == 2, name
        lines = err.strip().splitlines()
        assert len(lines) == 1, (name, err)
        assert lines[0].startswith("rolemodels: error: "), (name, err)
        assert expected in lines[0], (name, lines[0])
        assert "Traceback" not in err and stdout == "", name
        assert sorted(p.name for p in tmp_path.iterdir()) == before, name  # nothing written
    assert np.load(clean).shape == (60,)  # the clean file survived


def test_debug_flag_shows_the_exception(clean, tmp_path):
    from rolemodels.errors import UserError

    with pytest.raises(UserError, match="no such file"):
        main(["noise", "inspect", "--clean", str(clean), "--noisy", str(tmp_path / "gone.npy"), "--debug"])
