"""The random transition matrix, annotator noise and part-dependent (Xia et al. 2020) noise."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rolemodels.errors import UserError
from rolemodels.method.instance_noise import (
    annotator_noise,
    annotator_transitions,
    part_dependent_expected_rate,
    part_dependent_noise,
    part_dependent_transitions,
)
from rolemodels.method.noise import apply_noise, random_transition_matrix, transition_matrix

FAST = settings(max_examples=40, deadline=None)
N = 5_000
# Realised rates at N = 5,000 have std ~0.0057 (measured over 200 seeds: annotator 0.0057, part
# 0.0056, largest deviation 0.016 / 0.022). Each of seeds 0-4 must be within EACH, their mean within MEAN.
EACH, MEAN = 0.025, 0.01


def off_diagonal_rates(T):
    return 1.0 - np.diag(T)


def posterior(labels, num_classes, rng, sharpness=2.0):
    """A made-up annotator posterior float [N, C]: softmax of noise, the true class boosted."""
    logits = rng.normal(size=(labels.size, num_classes)) * sharpness
    logits[np.arange(labels.size), labels] += sharpness
    probs = np.exp(logits)
    return probs / probs.sum(axis=1, keepdims=True)


# ----------------------------------------------------------------------------- random matrix


@FAST
@given(num_classes=st.integers(2, 30), fraction=st.floats(0.0, 1.0), seed=st.integers(0, 2**32))
def test_random_matrix_guarantees(num_classes, fraction, seed):
    m = 0.9 * (num_classes - 1)
    rate = fraction * m / (1 + m) * 0.999  # anything up to the most a dominant matrix can carry
    T = random_transition_matrix(num_classes, rate, seed)
    assert T.shape == (num_classes, num_classes) and T.dtype == np.float64
    assert np.all(T >= 0)
    np.testing.assert_allclose(T.sum(axis=1), 1.0, atol=1e-12)
    assert np.diag(T).mean() == pytest.approx(1.0 - rate, abs=1e-12)
    off = T - np.diag(np.diag(T))
    assert np.all(off <= 0.9 * np.diag(T)[:, None] + 1e-12)  # the stated dominance guarantee
    assert np.all(np.diag(T)[:, None] > off)  # so the true class is every row's most likely label


def test_random_matrix_is_not_uniform():
    for seed in range(10):
        T = random_transition_matrix(10, 0.3, seed)
        rates = off_diagonal_rates(T)
        # Some classes nearly clean, some flipped far more often than the mean.
        assert rates.min() < 0.1 and rates.max() > 0.45, (seed, rates)
        # A row's mass goes to a few classes (at most 3 unless it needs more to stay dominant), unevenly.
        partners = np.count_nonzero(T - np.diag(np.diag(T)), axis=1)
        assert partners.max() <= 3 or rates[np.argmax(partners)] > 0.5
        off = T - np.diag(np.diag(T))
        spread = [row[row > 0].max() / row[row > 0].min() for row in off if np.count_nonzero(row) > 1]
        assert np.mean(np.array(spread) > 1.5) > 0.5, spread


def test_random_matrix_same_seed_same_matrix_and_preset():
    a = random_transition_matrix(6, 0.25, 3)
    np.testing.assert_array_equal(a, random_transition_matrix(6, 0.25, 3))
    assert not np.array_equal(a, random_transition_matrix(6, 0.25, 4))
    np.testing.assert_allclose(transition_matrix("random", 6, 0.25, seed=3), a, atol=1e-15)
    np.testing.assert_array_equal(random_transition_matrix(5, 0.0, 1), np.eye(5))


def test_random_matrix_applied_gives_the_rate_on_balanced_classes():
    labels = np.repeat(np.arange(10), N // 10)
    for seed in range(3):
        noisy = apply_noise(labels, transition_matrix("random", 10, 0.2, seed=seed), seed)
        assert np.mean(noisy != labels) == pytest.approx(0.2, abs=10 / N)  # exact counts: rounding only


def test_random_matrix_bad_inputs():
    with pytest.raises(UserError, match="preset 'random' needs a seed"):
        transition_matrix("random", 10, 0.2)
    with pytest.raises(UserError, match=r"noise rate 0.5 is too high .* 2 classes; expected at most 0.4737"):
        random_transition_matrix(2, 0.5, 0)
    with pytest.raises(UserError, match=r"outside \[0, 1\)"):
        random_transition_matrix(10, 1.0, 0)
    with pytest.raises(UserError, match="seed -1 is not a non-negative integer"):
        random_transition_matrix(10, 0.2, -1)
    with pytest.raises(UserError, match="max_class_rate 0.1 is outside"):
        random_transition_matrix(10, 0.2, 0, max_class_rate=0.1)


# ----------------------------------------------------------------------------- annotator noise


@pytest.fixture(scope="module")
def annotated():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, N)
    return labels, posterior(labels, 10, rng)


def test_annotator_flip_probabilities_scale_ambiguity_to_the_rate(annotated):
    labels, probs = annotated
    rows = annotator_transitions(labels, probs, 0.2)
    flip = 1.0 - rows[np.arange(N), labels]
    ambiguity = 1.0 - probs[np.arange(N), labels]
    assert flip.mean() == pytest.approx(0.2, abs=1e-12)
    np.testing.assert_allclose(rows.sum(axis=1), 1.0, atol=1e-12)
    unclipped = flip < 1
    ratio = flip[unclipped] / ambiguity[unclipped]
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-9)  # proportional to the ambiguity
    # Wrong classes in proportion to the annotator's probabilities.
    i = int(np.argmax(flip))
    wrong = np.delete(np.arange(10), labels[i])
    np.testing.assert_allclose(rows[i, wrong] / flip[i], probs[i, wrong] / ambiguity[i], rtol=1e-9)


def test_annotator_clips_at_one_and_keeps_the_mean():
    labels = np.zeros(1000, dtype=np.int64)
    probs = np.tile([0.99, 0.01], (1000, 1))
    probs[:50] = [0.05, 0.95]  # 50 examples the annotator thinks are class 1
    flip = 1.0 - annotator_transitions(labels, probs, 0.1)[:, 0]
    np.testing.assert_array_equal(flip[:50], 1.0)
    assert flip.mean() == pytest.approx(0.1, abs=1e-12)
    np.testing.assert_allclose(flip[50:], (100 - 50) / 950)


def test_annotator_same_seed_same_labels_other_seed_differs(annotated):
    labels, probs = annotated
    a = annotator_noise(labels, probs, 0.2, 7)
    assert a.dtype == np.int64 and a.shape == labels.shape
    np.testing.assert_array_equal(a, annotator_noise(labels.copy(), probs.copy(), 0.2, 7))
    assert not np.array_equal(a, annotator_noise(labels, probs, 0.2, 8))


@pytest.mark.parametrize("rate", [0.1, 0.3])
def test_annotator_realised_rate_is_close(annotated, rate):
    labels, probs = annotated
    realised = np.array([np.mean(annotator_noise(labels, probs, rate, seed) != labels) for seed in range(5)])
    assert np.all(np.abs(realised - rate) < EACH), realised
    assert abs(realised.mean() - rate) < MEAN, realised


def test_annotator_ambiguous_examples_flip_more_often():
    labels = np.zeros(N, dtype=np.int64)
    probs = np.tile([0.95, 0.05], (N, 1))
    probs[N // 2:] = [0.55, 0.45]  # the second half is ambiguous: 9 times the first's ambiguity
    noisy = annotator_noise(labels, probs, 0.25, 0)
    confident, ambiguous = np.mean(noisy[: N // 2] != 0), np.mean(noisy[N // 2:] != 0)
    assert ambiguous > 5 * confident > 0, (confident, ambiguous)
    assert (confident + ambiguous) / 2 == pytest.approx(0.25, abs=EACH)


def test_annotator_flips_follow_its_confusions():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 2000)
    probs = np.zeros((2000, 4))
    probs[np.arange(2000), labels] = 0.7
    probs[np.arange(2000), (labels + 1) % 4] = 0.3  # all wrong mass on the next class
    noisy = annotator_noise(labels, probs, 0.2, 0)
    flipped = noisy != labels
    assert flipped.sum() > 300
    np.testing.assert_array_equal(noisy[flipped], (labels[flipped] + 1) % 4)


def test_annotator_rate_zero_and_certain_examples_never_flip(annotated):
    labels, probs = annotated
    np.testing.assert_array_equal(annotator_noise(labels, probs, 0.0, 3), labels)
    certain = np.eye(10)[labels]
    certain[: N // 2] = probs[: N // 2]
    noisy = annotator_noise(labels, certain, 0.2, 3)
    np.testing.assert_array_equal(noisy[N // 2:], labels[N // 2:])


def test_annotator_bad_inputs(annotated):
    labels, probs = annotated
    short = probs[:10]
    bad_sum = probs.copy()
    bad_sum[2] *= 0.8
    negative = probs.copy()
    negative[5, 1] = -0.1
    nan = probs.copy()
    nan[4, 0] = np.nan
    cases = [
        ((labels, probs, 1.0, 0), r"noise rate 1.0 is outside \[0, 1\)"),
        ((labels, probs, -0.1, 0), r"noise rate -0.1 is outside \[0, 1\)"),
        ((labels, short, 0.2, 0), "annotator probabilities: 10 rows, but there are 5,000 labels"),
        ((labels, probs[:, 0], 0.2, 0), r"annotator probabilities: shape \(5000,\); expected \[N, C\]"),
        ((labels, bad_sum, 0.2, 0), "annotator probabilities: row 2 sums to 0.8; expected every row to sum to 1"),
        ((labels, negative, 0.2, 0), r"entry \[5, 1\] is negative"),
        ((labels, nan, 0.2, 0), r"entry \[4, 0\] is nan; expected finite"),
        ((labels, probs[:, :3] / probs[:, :3].sum(1, keepdims=True), 0.2, 0), r"outside \[0, 3\)"),
        ((labels, np.eye(10)[labels], 0.2, 0), "only 0 of 5,000 examples have any probability on a wrong class"),
        ((labels, probs, 0.2, -3), "seed -3"),
        ((labels.astype(float) + 0.5, probs, 0.2, 0), "is not an integer"),
    ]
    for args, message in cases:
        with pytest.raises(UserError, match=message):
            annotator_noise(*args)


# ----------------------------------------------------------------------------- part-dependent noise


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 10, N)
    return labels, rng.integers(0, 256, size=(N, 3, 4, 4)).astype(np.uint8)


def test_part_rows_follow_the_algorithm(images):
    labels, x = images
    rows = part_dependent_transitions(labels, x, 0.2, 0)
    assert rows.shape == (N, 10) and rows.dtype == np.float64
    np.testing.assert_allclose(rows.sum(axis=1), 1.0, atol=1e-12)
    flip = 1.0 - rows[np.arange(N), labels]
    assert np.all((flip >= 0) & (flip <= 1))
    # Flip rates from N(0.2, 0.1^2) truncated to [0, 1]: mean 0.2055, std a little under 0.1.
    assert flip.mean() == pytest.approx(part_dependent_expected_rate(0.2), abs=0.005)
    assert 0.085 < flip.std() < 0.1
    assert part_dependent_expected_rate(0.2) == pytest.approx(0.2055, abs=1e-4)
    grid = np.linspace(0, 1, 200_001)
    density = np.exp(-((grid - 0.1) / 0.1) ** 2 / 2)
    assert part_dependent_expected_rate(0.1) == pytest.approx((grid * density).sum() / density.sum(), abs=1e-6)


def test_part_same_seed_same_labels_other_seed_differs(images):
    labels, x = images
    a = part_dependent_noise(labels, x, 0.3, 5)
    assert a.dtype == np.int64 and a.shape == labels.shape
    np.testing.assert_array_equal(a, part_dependent_noise(labels.copy(), x.copy(), 0.3, 5))
    assert not np.array_equal(a, part_dependent_noise(labels, x, 0.3, 6))


@pytest.mark.parametrize("rate", [0.2, 0.4])
def test_part_realised_rate_is_close(images, rate):
    labels, x = images
    realised = np.array([np.mean(part_dependent_noise(labels, x, rate, seed) != labels) for seed in range(5)])
    expected = part_dependent_expected_rate(rate)
    assert np.all(np.abs(realised - expected) < EACH), realised
    assert abs(realised.mean() - expected) < MEAN, realised
    assert abs(realised.mean() - rate) < MEAN, realised  # the truncation moves the mean by 0.006 at most here


def test_part_destination_depends_on_the_features_not_who_flips():
    rng = np.random.default_rng(3)
    labels = np.zeros(2000, dtype=np.int64)
    direction = rng.choice([-1.0, 1.0], size=64) * (1 + rng.random(64))  # no near-constant feature
    x = np.where(np.arange(2000)[:, None] < 1000, direction, -direction) + 0.01 * rng.normal(size=(2000, 64))
    noisy = part_dependent_noise(labels, x, 0.3, 0, num_classes=5)
    flipped = noisy != 0
    first, second = noisy[:1000][flipped[:1000]], noisy[1000:][flipped[1000:]]
    # Two groups of the same class with opposite features: each group's flips go (almost) all to one
    # class, a different one for each group.
    top_first, top_second = np.bincount(first).argmax(), np.bincount(second).argmax()
    assert np.mean(first == top_first) > 0.9 and np.mean(second == top_second) > 0.9
    assert top_first != top_second
    # Who flips depends only on the per-example flip rates and the seed, not the features.
    other = part_dependent_noise(labels, rng.normal(size=(2000, 64)), 0.3, 0, num_classes=5)
    np.testing.assert_array_equal(other != 0, flipped)
    assert not np.array_equal(other, noisy)


def test_part_normalised_features_ignore_units(images):
    labels, x = images
    a = part_dependent_noise(labels, x, 0.2, 1)
    np.testing.assert_array_equal(a, part_dependent_noise(labels, x.astype(np.float32) / 255.0 - 0.5, 0.2, 1))
    raw = part_dependent_noise(labels, x, 0.2, 1, normalize=False)
    assert not np.array_equal(a, raw)


def test_part_rate_zero_no_flips_and_absent_classes(images):
    labels, x = images
    np.testing.assert_array_equal(part_dependent_noise(labels, x, 0.0, 0), labels)
    noisy = part_dependent_noise(labels, x, 0.3, 0, num_classes=12)
    assert noisy.max() < 12 and np.any(noisy >= 10)  # classes 10 and 11 exist, though no example has them


def test_part_bad_inputs(images):
    labels, x = images
    nan = x.astype(float)
    nan[7, 0, 0, 0] = np.nan
    cases = [
        ((labels, x[:10], 0.2, 0), r"features: shape \(10, 3, 4, 4\), but there are 5,000 labels"),
        ((labels, nan, 0.2, 0), "features: example 7 holds NaN or inf"),
        ((labels, np.array(["a"] * N), 0.2, 0), "features: hold <U1 values; expected numbers"),
        ((labels, x, 1.2, 0), r"noise rate 1.2 is outside \[0, 1\)"),
        ((labels, x, 0.2, -1), "seed -1"),
        ((labels - 1, x, 0.2, 0), "clean labels: label -1 at index"),
    ]
    for args, message in cases:
        with pytest.raises(UserError, match=message):
            part_dependent_noise(*args)
    with pytest.raises(UserError, match=r"label 8 at index 0 is outside \[0, 5\) for 5 classes"):
        part_dependent_noise(labels, x, 0.2, 0, num_classes=5)
    with pytest.raises(UserError, match="spread -0.1 is not a number >= 0"):
        part_dependent_noise(labels, x, 0.2, 0, spread=-0.1)
