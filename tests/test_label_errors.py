"""Diagnostics without clean labels: suspected label errors, the estimated noise, vote margins."""
from __future__ import annotations

import numpy as np
import pytest

from rolemodels.errors import UserError
from rolemodels.method.noise import apply_noise, realized_matrix, transition_matrix
from rolemodels.practice.label_errors import (
    distillation_diagnostics,
    estimate_noise,
    margin_histogram,
    suspected_label_errors,
    vote_margins,
)


def test_suspected_errors_are_the_contradicted_labels_most_confident_first():
    given = np.array([0, 1, 2, 0, 1])
    proba = np.array([[0.9, 0.1, 0.0],   # agrees
                      [0.6, 0.4, 0.0],   # contradicts at 0.6
                      [0.05, 0.9, 0.05],  # contradicts at 0.9
                      [0.2, 0.1, 0.7],   # contradicts at 0.7
                      [0.1, 0.8, 0.1]])  # agrees
    assert suspected_label_errors(given, proba).tolist() == [2, 3, 1]


def test_no_contradiction_no_suspects():
    assert suspected_label_errors(np.array([1, 0]), np.array([[0.2, 0.8], [0.7, 0.3]])).size == 0


def test_labels_outside_the_classes_are_refused():
    with pytest.raises(UserError, match="given"):
        suspected_label_errors(np.array([0, 3]), np.full((2, 2), 0.5))


def test_a_perfect_student_recovers_the_realised_noise_exactly():
    """When the student predicts every true class, (student, given) pairs are (true, given) pairs."""
    truth = np.repeat(np.arange(10), 100)
    noisy = apply_noise(truth, transition_matrix("paper", 10, 0.2), seed=0)
    estimate = estimate_noise(noisy, truth, 10)
    counts, _ = realized_matrix(truth, noisy, 10)
    assert estimate.rate == pytest.approx(0.2)
    assert np.array_equal(estimate.counts, counts)
    assert np.allclose(estimate.matrix, counts / counts.sum(1, keepdims=True))


def test_a_class_the_student_never_predicts_has_a_row_of_zeros():
    estimate = estimate_noise(np.array([0, 1, 1]), np.array([0, 0, 0]), 3)
    assert estimate.matrix[0].tolist() == pytest.approx([1 / 3, 2 / 3, 0])
    assert estimate.matrix[1:].sum() == 0
    assert estimate.rate == pytest.approx(2 / 3)


def test_vote_margins_and_their_histogram():
    teacher_labels = np.array([[0, 0, 0, 0],   # unanimous: margin 4
                               [0, 0, 1, 1],   # tie: 0
                               [2, 2, 2, 1],   # 3 - 1 = 2
                               [0, 1, 2, 2]])  # 2 - 1 = 1
    assert vote_margins(teacher_labels, 3).tolist() == [4, 0, 2, 1]
    assert margin_histogram(teacher_labels, 3).tolist() == [1, 1, 1, 0, 1]


def test_diagnostics_hold_plain_numbers():
    given = np.array([0, 1, 1, 0])
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.6, 0.4]])
    pool = np.array([[0, 0], [1, 0], [1, 1]], dtype=np.uint8)
    d = distillation_diagnostics(given, proba, [1.0, 0.98], pool, 2, top=1)
    assert d["estimated_noise_rate"] == 0.25 and d["suspected_label_errors"] == 1
    assert d["suspected_label_errors_top"] == [{"index": 2, "given": 1, "student": 0, "confidence": 0.7}]
    assert d["teachers_interpolate"] is False  # one teacher fits 98%
    assert d["vote_margin_histogram"] == [1, 0, 2] and d["unanimous_pool_fraction"] == pytest.approx(2 / 3)
    assert d["teacher_agreement"] == pytest.approx(2 / 3)

