"""Sampler measurements on hand-made cases, and the plurality probability against enumeration."""
import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rolemodels.errors import UserError
from rolemodels.method import diagnostics as dg

C = 10
PARTNER = (np.arange(C) + 5) % C
T = 0.8 * np.eye(C) + 0.2 * np.eye(C)[PARTNER]


def exact_sampler_predictions(per_class=10):
    """For every class, 8 of 10 predictions keep the class and 2 go to its partner."""
    truth = np.repeat(np.arange(C), per_class)
    pred = truth.copy()
    flipped = (np.arange(truth.size) % per_class) < per_class // 5
    pred[flipped] = PARTNER[truth[flipped]]
    return truth, pred


def test_confusion_matrix_rows_are_true_classes():
    conf = dg.confusion_matrix(np.array([0, 0, 1, 2]), torch.tensor([0, 1, 1, 0]), 3)
    assert conf.dtype == np.int64
    assert conf.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]


def test_exact_sampler_has_sampler_distance_zero():
    truth, pred = exact_sampler_predictions()
    assert dg.sampler_distance(truth, pred, T, C) == pytest.approx(0.0, abs=1e-12)


def test_perfect_classifier_is_the_noise_rate_away_from_T():
    truth = np.repeat(np.arange(C), 7)
    assert dg.sampler_distance(truth, truth, T, C) == pytest.approx(0.2)
    # Only classes present in y_true count: class 0 alone, predicted perfectly.
    assert dg.sampler_distance(np.zeros(5, int), np.zeros(5, int), T, C) == pytest.approx(0.2)


def test_sampler_distance_of_a_constant_classifier():
    truth = np.repeat(np.arange(C), 3)
    # Predicting 0 everywhere: class 0 is 0.2 away, class 5 (partner of 0) is 0.8, others 1.
    expected = (0.2 + 0.8 + 8 * 1.0) / C
    assert dg.sampler_distance(truth, np.zeros_like(truth), T, C) == pytest.approx(expected)


def test_pointwise_sampler_distance():
    truth = np.arange(C)
    exact = np.stack([truth] * 4 + [PARTNER[truth]], axis=1).astype(np.uint8)  # 4 of 5 keep
    assert dg.pointwise_sampler_distance(truth, exact, T) == pytest.approx(0.0, abs=1e-12)
    unanimous = np.repeat(truth[:, None], 5, axis=1)
    assert dg.pointwise_sampler_distance(truth, unanimous, T) == pytest.approx(0.2)


def test_teacher_agreement_matches_counting_pairs():
    assert dg.teacher_agreement(np.array([[0, 0, 1]])) == pytest.approx(1 / 3)
    labels = np.random.default_rng(0).integers(0, 4, size=(50, 6))
    pairs = [np.mean(labels[:, a] == labels[:, b]) for a, b in itertools.combinations(range(6), 2)]
    assert dg.teacher_agreement(labels) == pytest.approx(np.mean(pairs))


def test_vote_share_histogram_counts_partner_votes():
    truth = np.array([0, 1, 6])
    teachers = np.array([[0, 5, 5], [1, 1, 1], [1, 6, 1]])
    hist = dg.vote_share_histogram(truth, teachers, PARTNER)
    assert hist.dtype == np.int64 and hist.tolist() == [1, 0, 2, 0]


def brute_force_plurality(p, k):
    """Enumerate all C^k outcomes; split each tie equally among the tied classes."""
    wins = np.zeros(len(p))
    for draws in itertools.product(range(len(p)), repeat=k):
        counts = np.bincount(draws, minlength=len(p))
        tied = np.flatnonzero(counts == counts.max())
        wins[tied] += np.prod(p[list(draws)]) / len(tied)
    return wins


@pytest.mark.parametrize("num_classes,k_max", [(2, 7), (3, 6), (4, 5), (5, 4)])
def test_plurality_probability_matches_enumeration(num_classes, k_max):
    rng = np.random.default_rng(num_classes)
    p = rng.dirichlet(np.ones(num_classes), size=3)
    p[0, 0] = 0.0  # a class that never gets a vote
    p[0] /= p[0].sum()
    all_k = dg.plurality_probability_all_k(p, k_max)
    assert all_k.shape == (k_max, 3, num_classes)
    for k in range(1, k_max + 1):
        for row in range(3):
            np.testing.assert_allclose(all_k[k - 1, row], brute_force_plurality(p[row], k), atol=1e-12)
        np.testing.assert_allclose(dg.plurality_probability(p, k), all_k[k - 1], atol=1e-15)


def test_plurality_of_the_paper_noise_converges_to_the_majority():
    p = T[0]
    wins = dg.plurality_probability_all_k(p, 25)[:, 0]
    assert wins[0] == pytest.approx(0.8) and wins[1] == pytest.approx(0.8)  # a 1-1 tie is a coin flip
    assert wins[2] == pytest.approx(0.8**3 + 3 * 0.8**2 * 0.2)
    assert np.all(np.diff(wins[::2]) > 0) and wins[-1] > 0.999


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=6).filter(lambda v: sum(v) > 0.1),
       st.integers(1, 12))
def test_plurality_probability_is_a_distribution_and_k1_is_p(weights, k):
    p = np.array(weights) / sum(weights)
    wins = dg.plurality_probability(p, k)
    assert wins.sum() == pytest.approx(1.0, abs=1e-9) and (wins >= -1e-15).all()
    assert (wins[p == 0] == 0).all()
    np.testing.assert_allclose(dg.plurality_probability(p, 1), p, atol=1e-12)
    order = np.random.default_rng(k).permutation(len(p))  # relabelling classes permutes the answer
    np.testing.assert_allclose(dg.plurality_probability(p[order], k), wins[order], atol=1e-12)


def test_bad_input_raises_user_errors():
    with pytest.raises(UserError, match="rows must be nonnegative"):
        dg.sampler_distance([0], [0], np.ones((2, 2)), 2)
    with pytest.raises(UserError, match="2 classes, expected 3"):
        dg.sampler_distance([0], [0], np.eye(2), 3)
    with pytest.raises(UserError, match=r"^y_true: label 2 at index 1 is outside \[0, 2\) for 2 classes$"):
        dg.confusion_matrix([0, 2], [0, 1], 2)
    with pytest.raises(UserError, match="^y_pred: 1 labels, but y_true has 2 labels$"):
        dg.confusion_matrix([0, 1], [0], 2)
    with pytest.raises(UserError, match="3 rows, but y_true has 2"):
        dg.pointwise_sampler_distance([0, 1], np.zeros((3, 2), int), np.eye(2))
    with pytest.raises(UserError, match="at least 2 teachers"):
        dg.teacher_agreement(np.zeros((4, 1), int))
    with pytest.raises(UserError, match="sum to 1"):
        dg.plurality_probability([0.5, 0.6], 3)
    with pytest.raises(UserError, match="number of votes"):
        dg.plurality_probability([0.5, 0.5], 0)
    with pytest.raises(UserError, match="^y_true: holds float64 values; expected integer labels$"):
        dg.confusion_matrix([0.0, 1.0], [0, 1], 2)
    with pytest.raises(UserError, match=r"teacher_labels: label -1 at index \(0, 1\) is negative"):
        dg.teacher_agreement(np.array([[0, -1], [1, 1]]))
    with pytest.raises(UserError, match=r"teacher_labels: label 2 at index \(1, 0\) is outside \[0, 2\)"):
        dg.pointwise_sampler_distance([0, 1], np.array([[0, 1], [2, 1]]), np.eye(2))
    with pytest.raises(UserError, match="teacher_labels: holds float64 values"):
        dg.teacher_agreement(np.zeros((3, 2)))
    with pytest.raises(UserError, match=r"teacher_labels: shape \(3,\); expected \[N, K\]"):
        dg.teacher_agreement(np.zeros(3, int))
