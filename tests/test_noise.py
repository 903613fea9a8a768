"""Transition matrices, exact and sampled noise, realised matrices, noise partners."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rolemodels.errors import UserError
from rolemodels.method.noise import (
    NoiseWarning,
    apply_noise,
    exact_counts,
    noise_partner,
    noise_rate,
    realized_matrix,
    transition_matrix,
    validate_transition_matrix,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FAST = settings(max_examples=30, deadline=None)


# ----------------------------------------------------------------------------- presets


def test_paper_preset_is_pair_swap_with_half_shift():
    T = transition_matrix("paper", 10, rate=0.2)
    for c in range(10):
        expected = np.zeros(10)
        expected[c] = 0.8
        expected[(c + 5) % 10] = 0.2
        np.testing.assert_allclose(T[c], expected)
    assert T.dtype == np.float64
    # A swap: the matrix is its own transpose for an even number of classes.
    np.testing.assert_allclose(T, T.T)


def test_paper_preset_custom_shift_and_odd_classes():
    T = transition_matrix("paper", 7, rate=0.3, shift=2)
    assert T[6, 1] == pytest.approx(0.3)
    assert T[6, 6] == pytest.approx(0.7)
    assert np.count_nonzero(T) == 14


def test_symmetric_preset_spreads_rate_evenly():
    T = transition_matrix("symmetric", 5, rate=0.4)
    np.testing.assert_allclose(np.diag(T), 0.6)
    off = T[~np.eye(5, dtype=bool)]
    np.testing.assert_allclose(off, 0.1)


def test_pairflip_preset_goes_to_next_class():
    T = transition_matrix("pairflip", 4, rate=0.25)
    assert [int(np.argmax(T[c] - np.eye(4)[c])) for c in range(4)] == [1, 2, 3, 0]
    np.testing.assert_allclose(T.sum(axis=1), 1.0)


def test_rate_zero_is_identity():
    for preset in ("paper", "symmetric", "pairflip"):
        np.testing.assert_array_equal(transition_matrix(preset, 6, rate=0.0), np.eye(6))


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan"), "abc"])
def test_rate_outside_unit_interval_is_rejected(rate):
    with pytest.raises(UserError, match=r"\[0, 1\)"):
        transition_matrix("symmetric", 10, rate=rate)


def test_shift_that_maps_classes_to_themselves_is_rejected():
    with pytest.raises(UserError, match="shift 10"):
        transition_matrix("paper", 10, shift=10)


def test_unknown_preset_is_rejected():
    with pytest.raises(UserError, match="unknown noise preset 'uniform'"):
        transition_matrix("uniform", 10)


# ----------------------------------------------------------------------------- validation


def test_validate_rejects_non_square():
    with pytest.raises(UserError, match=r"not square"):
        validate_transition_matrix(np.ones((2, 3)) / 3, 2)


def test_validate_rejects_wrong_number_of_classes():
    with pytest.raises(UserError, match="3x3, but the dataset has 4 classes"):
        validate_transition_matrix(np.eye(3), 4)


def test_validate_rejects_negative_entry():
    T = np.array([[1.2, -0.2], [0.0, 1.0]])
    with pytest.raises(UserError, match=r"\[0, 1\] is negative"):
        validate_transition_matrix(T, 2)


def test_validate_rejects_rows_not_summing_to_one():
    T = np.array([[0.9, 0.0], [0.0, 1.0]])
    with pytest.raises(UserError, match="row 0 sums to 0.9"):
        validate_transition_matrix(T, 2)


def test_validate_rejects_nan():
    with pytest.raises(UserError, match="finite"):
        validate_transition_matrix(np.array([[np.nan, 1.0], [0.0, 1.0]]), 2)


def test_validate_accepts_tiny_rounding_and_renormalises():
    T = np.array([[0.7 + 5e-7, 0.3], [0.5, 0.5 - 5e-7]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoiseWarning)
        out = validate_transition_matrix(T, 2)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-15)


def test_validate_warns_when_not_diagonally_dominant():
    T = np.array([[0.3, 0.7], [0.0, 1.0]])
    with pytest.warns(NoiseWarning, match="class 0 keeps its label with 0.3"):
        validate_transition_matrix(T, 2)


def test_validate_is_silent_for_dominant_matrix():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validate_transition_matrix(transition_matrix("paper", 10, rate=0.4), 10)


def test_matrix_preset_reads_npy_csv_and_txt(tmp_path):
    T = np.array([[0.9, 0.1, 0.0], [0.0, 0.8, 0.2], [0.25, 0.0, 0.75]])
    np.save(tmp_path / "t.npy", T)
    (tmp_path / "t.csv").write_text("\n".join(",".join(str(v) for v in row) for row in T) + "\n")
    (tmp_path / "t.txt").write_text("# rows = true class\n" + "\n".join(" ".join(str(v) for v in row) for row in T))
    for name in ("t.npy", "t.csv", "t.txt"):
        np.testing.assert_allclose(transition_matrix("matrix", 3, matrix_file=str(tmp_path / name)), T)


def test_matrix_preset_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("0.5,0.5\n0.5,0.6\n")
    with pytest.raises(UserError, match=r"matrix file .*bad.csv: row 1 sums to 1.1"):
        transition_matrix("matrix", 2, matrix_file=str(bad))
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("1,0\n1\n")
    with pytest.raises(UserError, match="ragged.csv: rows have different lengths"):
        transition_matrix("matrix", 2, matrix_file=str(ragged))
    with pytest.raises(UserError, match="no such file"):
        transition_matrix("matrix", 2, matrix_file=str(tmp_path / "missing.npy"))
    with pytest.raises(UserError, match="needs a matrix file"):
        transition_matrix("matrix", 2)


# ----------------------------------------------------------------------------- exact counts


def test_exact_counts_hand_computed():
    T = np.array([[0.55, 0.45], [0.25, 0.75]])
    # Row 0: 5.5 / 4.5, equal remainders: the clean label keeps the extra image -> 6 / 4.
    # Row 1: 0.75 / 2.25 -> floors 0 / 2, the larger remainder (0.75) gets the extra -> 1 / 2.
    np.testing.assert_array_equal(exact_counts(np.array([10, 3]), T), [[6, 4], [1, 2]])


def test_exact_paper_noise_flips_exact_count_to_partner_only():
    labels = np.repeat(np.arange(10), 50)
    noisy = apply_noise(labels, transition_matrix("paper", 10, rate=0.2), seed=3)
    changed = noisy != labels
    assert np.bincount(labels[changed], minlength=10).tolist() == [10] * 10
    np.testing.assert_array_equal(noisy[changed], (labels[changed] + 5) % 10)
    assert noise_rate(labels, noisy) == pytest.approx(0.2)


def test_exact_choice_is_uniform_over_images():
    labels = np.zeros(10, dtype=np.int64)
    T = transition_matrix("pairflip", 2, rate=0.2)
    flips = np.zeros(10)
    seeds = 1500
    for seed in range(seeds):
        flips += apply_noise(labels, T, seed) != labels
    # Every image is flipped by 2 of 10 slots: frequency 0.2 each (std ~0.01 over 1500 seeds).
    np.testing.assert_allclose(flips / seeds, 0.2, atol=0.05)


def test_same_seed_same_labels_and_different_seeds_differ():
    labels = np.arange(1000) % 4
    T = transition_matrix("symmetric", 4, rate=0.3)
    for mode in ("exact", "sampled"):
        a = apply_noise(labels, T, 7, mode)
        np.testing.assert_array_equal(a, apply_noise(labels.copy(), T.copy(), 7, mode))
        assert not np.array_equal(a, apply_noise(labels, T, 8, mode))


def test_exact_mode_follows_documented_pcg64_stream():
    # The labels depend only on numpy's PCG64(seed) stream, used as documented in apply_noise:
    # per class in order, one permutation of its members, then runs of label 0, 1, ... C-1.
    labels = np.repeat(np.arange(2), 5)
    T = transition_matrix("pairflip", 2, rate=0.4)
    flipped = np.flatnonzero(apply_noise(labels, T, seed=0) != labels).tolist()
    rng = np.random.Generator(np.random.PCG64(0))
    first = rng.permutation(np.arange(5))  # class 0: 3 keep label 0, then 2 get label 1
    second = rng.permutation(np.arange(5, 10))  # class 1: 2 get label 0, then 3 keep label 1
    assert flipped == sorted(first[3:].tolist() + second[:2].tolist())


def test_apply_noise_returns_int64_and_leaves_input_alone():
    labels = np.array([0, 1, 2, 0, 1, 2], dtype=np.int32)
    before = labels.copy()
    noisy = apply_noise(labels, transition_matrix("symmetric", 3, rate=0.5), seed=1, mode="sampled")
    assert noisy.dtype == np.int64 and noisy.shape == (6,)
    np.testing.assert_array_equal(labels, before)


def test_apply_noise_bad_inputs():
    T = transition_matrix("paper", 3)
    with pytest.raises(UserError, match=r"label 3 at index 1 is outside \[0, 3\)"):
        apply_noise(np.array([0, 3]), T, 0)
    with pytest.raises(UserError, match="label 0.5 at index 0 is not an integer"):
        apply_noise(np.array([0.5, 1.0]), T, 0)
    with pytest.raises(UserError, match="seed -1"):
        apply_noise(np.array([0, 1]), T, -1)
    with pytest.raises(UserError, match="unknown noise mode 'bernoulli'"):
        apply_noise(np.array([0, 1]), T, 0, mode="bernoulli")


@st.composite
def noise_problems(draw):
    """A random number of classes, class sizes and valid transition matrix (some zero entries)."""
    num_classes = draw(st.integers(2, 6))
    sizes = draw(st.lists(st.integers(0, 40), min_size=num_classes, max_size=num_classes))
    weights = draw(
        st.lists(
            st.lists(st.sampled_from([0.0, 0.0, 0.05, 0.3, 1.0, 2.5]), min_size=num_classes, max_size=num_classes),
            min_size=num_classes,
            max_size=num_classes,
        )
    )
    W = np.array(weights) + np.eye(num_classes) * 1e-3  # no empty row
    T = W / W.sum(axis=1, keepdims=True)
    labels = np.repeat(np.arange(num_classes), sizes)
    order = np.random.default_rng(draw(st.integers(0, 1000))).permutation(labels.size)
    return labels[order], T


@FAST
@given(noise_problems(), st.integers(0, 2**32))
def test_exact_mode_realises_rounded_counts(problem, seed):
    labels, T = problem
    num_classes = T.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoiseWarning)
        noisy = apply_noise(labels, T, seed, mode="exact")
    counts, rates = realized_matrix(labels, noisy, num_classes)
    n_c = np.bincount(labels, minlength=num_classes)
    target = T * n_c[:, None]
    # Each count is the target rounded down or up, rows keep their size, and it is the stated rounding.
    assert np.all(counts >= np.floor(target - 1e-9)) and np.all(counts <= np.ceil(target + 1e-9))
    np.testing.assert_array_equal(counts.sum(axis=1), n_c)
    np.testing.assert_array_equal(counts, exact_counts(n_c, T))
    # Largest remainder: an entry rounded down never has a larger remainder than one rounded up.
    for c in range(num_classes):
        frac = target[c] - np.floor(target[c])
        up = counts[c] > np.floor(target[c] + 1e-12)
        if up.any() and (~up).any():
            assert frac[up].min() >= frac[~up].max() - 1e-9
    assert np.all(rates[n_c == 0] == 0)


@FAST
@given(noise_problems(), st.integers(0, 2**32))
def test_sampled_mode_never_uses_zero_probability_labels(problem, seed):
    labels, T = problem
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoiseWarning)
        noisy = apply_noise(labels, T, seed, mode="sampled")
    assert np.all(T[labels, noisy] > 0)


@settings(max_examples=10, deadline=None)
@given(st.integers(2, 5), st.floats(0.0, 0.9), st.integers(0, 2**32))
def test_sampled_mode_rates_converge(num_classes, rate, seed):
    labels = np.repeat(np.arange(num_classes), 20_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoiseWarning)
        T = transition_matrix("symmetric", num_classes, rate=rate)
        T = 0.5 * T + 0.5 * transition_matrix("pairflip", num_classes, rate=rate)
        noisy = apply_noise(labels, T, seed, mode="sampled")
    _, rates = realized_matrix(labels, noisy, num_classes)
    # Binomial std is at most 0.0035 for 20,000 draws; 0.02 is more than five of them.
    np.testing.assert_allclose(rates, T, atol=0.02)


@FAST
@given(noise_problems(), st.integers(0, 2**32), st.sampled_from(["exact", "sampled"]))
def test_seeds_reproduce(problem, seed, mode):
    labels, T = problem
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoiseWarning)
        np.testing.assert_array_equal(apply_noise(labels, T, seed, mode), apply_noise(labels, T, seed, mode))


# ----------------------------------------------------------------------------- measuring


def test_realized_matrix_hand_computed():
    clean = np.array([0, 0, 0, 0, 2, 2])
    noisy = np.array([0, 1, 1, 0, 2, 0])
    counts, rates = realized_matrix(clean, noisy, 3)
    np.testing.assert_array_equal(counts, [[2, 2, 0], [0, 0, 0], [1, 0, 1]])
    np.testing.assert_allclose(rates, [[0.5, 0.5, 0], [0, 0, 0], [0.5, 0, 0.5]])
    assert counts.dtype == np.int64 and rates.dtype == np.float64


def test_realized_matrix_rejects_mismatched_inputs():
    with pytest.raises(UserError, match="2 labels, but the dataset has 3 images"):
        realized_matrix(np.array([0, 1, 1]), np.array([0, 1]), 2)
    with pytest.raises(UserError, match=r"noisy labels: label 2 at index 1 is outside \[0, 2\)"):
        realized_matrix(np.array([0, 1]), np.array([0, 2]), 2)


def test_noise_partner():
    np.testing.assert_array_equal(noise_partner(transition_matrix("paper", 10)), (np.arange(10) + 5) % 10)
    np.testing.assert_array_equal(noise_partner(np.eye(4)), np.arange(4))
    T = np.array([[0.6, 0.2, 0.2], [0.1, 0.9, 0.0], [0.0, 0.0, 1.0]])
    p = noise_partner(T)
    assert p.tolist() == [1, 0, 2] and p.dtype == np.int64


@pytest.mark.skipif(not (DATA / "cifar10_train_labels.npy").exists(), reason="shared data absent")
def test_paper_noise_on_cifar10_matches_authors_counts():
    clean = np.load(DATA / "cifar10_train_labels.npy")
    authors = np.fromfile(DATA / "cifar10_noisy_labels_authors.int64", dtype="<i8")
    ours = apply_noise(clean, transition_matrix("paper", 10, rate=0.2), seed=0)
    ours_counts, _ = realized_matrix(clean, ours, 10)
    authors_counts, authors_rates = realized_matrix(clean, authors, 10)
    np.testing.assert_array_equal(ours_counts, authors_counts)
    np.testing.assert_allclose(authors_rates, transition_matrix("paper", 10, rate=0.2))
