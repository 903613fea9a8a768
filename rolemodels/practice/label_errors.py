"""Diagnostics a practitioner can compute without clean labels: arrays in, numbers and indices out.

The student learns from the teachers' labels on the pool, never from the training labels, so on
the training set its prediction is a second opinion on each given label:

    errors = suspected_label_errors(given, proba)              # indices, most confident first
    estimate = estimate_noise(given, proba.argmax(1), C)       # rate and transition matrix
    margins = vote_margins(pool_labels, C)                     # how clear each pool label was

How well these recover the truth where it is known (MNIST-1D, Fashion-MNIST, synthetic tables
with the paper's noise and 40% symmetric noise) is measured in docs/practitioners.md.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rolemodels.labels import as_numpy, check_labels
from rolemodels.method.combine import vote_counts
from rolemodels.method.diagnostics import as_teacher_labels, teacher_agreement


def suspected_label_errors(given, proba) -> np.ndarray:
    """The examples whose given label the student contradicts, the most confident contradiction first.

    given: int[N] labels as given (noisy); proba: float[N, C] the student's probabilities on the
    same examples. Returns int64[M] indices (ties keep the examples' order).
    """
    probs = as_numpy(proba).astype(np.float64)
    labels = check_labels(given, "given", probs.shape[1], floats=False)
    predicted = probs.argmax(1)
    contradicted = np.flatnonzero(predicted != labels)
    confidence = probs[contradicted, predicted[contradicted]]
    return contradicted[np.argsort(-confidence, kind="stable")]


@dataclass
class NoiseEstimate:
    """What (given label, student prediction) pairs say about the noise.

    rate: the estimated fraction of wrong labels, the fraction the student contradicts;
    matrix: float64 [C, C], row j = the given labels of the examples the student puts in class j
    (the transition matrix's convention: row = true class, column = given label), a row of
    zeros where the student predicts class j nowhere; counts: int64 [C, C] behind it.
    """

    rate: float
    matrix: np.ndarray
    counts: np.ndarray


def estimate_noise(given, predicted, num_classes: int) -> NoiseEstimate:
    """The noise rate and transition matrix estimated from the student's predictions.

    given, predicted: int[N]. The rate is biased two ways that partly cancel: the student's own
    mistakes raise it, and the wrong labels it inherited from teachers that memorised them lower
    it. Measured (docs/practitioners.md): within 3 points of the truth with 4,000 labelled examples
    and a pool of 50,000; 5 to 9 points high with a pool as small as the training set, 10 low with
    one 70 times larger. The corrections we tried (the student's confident predictions only, the
    teachers' labels on the pool) read lower still.
    """
    labels = check_labels(given, "given", num_classes, floats=False)
    guesses = check_labels(predicted, "predicted", num_classes, floats=False)
    counts = np.bincount(guesses * num_classes + labels, minlength=num_classes * num_classes)
    counts = counts.reshape(num_classes, num_classes).astype(np.int64)
    rows = counts.sum(1, keepdims=True)
    matrix = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    rate = float((guesses != labels).mean()) if labels.size else float("nan")
    return NoiseEstimate(rate, matrix, counts)


def vote_margins(teacher_labels, num_classes: int) -> np.ndarray:
    """Votes for the winning class minus votes for the runner-up, per example.

    teacher_labels: uint8/int [N, K] -> int64 [N] in 0..K (K: all teachers agree; 0: a tie).
    """
    labels = torch.from_numpy(as_teacher_labels(teacher_labels, num_classes=num_classes))
    counts = vote_counts(labels, num_classes)
    top = counts.topk(min(2, num_classes), dim=1).values
    second = top[:, 1] if num_classes > 1 else torch.zeros_like(top[:, 0])
    return (top[:, 0] - second).numpy()


def margin_histogram(teacher_labels, num_classes: int) -> np.ndarray:
    """How many examples have each vote margin 0..K: int64 [K + 1], summing to N."""
    margins = vote_margins(teacher_labels, num_classes)
    return np.bincount(margins, minlength=as_numpy(teacher_labels).shape[1] + 1).astype(np.int64)


def distillation_diagnostics(given, student_proba, teacher_fit: list[float], pool_labels, num_classes: int,
                             *, top: int = 100) -> dict:
    """Everything `diagnostics.json` and the estimator's `diagnostics_` hold, as plain numbers.

    given: int[n] the training labels; student_proba: float[n, C] the student's probabilities on
    the training inputs; teacher_fit: each teacher's accuracy on the labels it was trained on;
    pool_labels: uint8 [N, K] the teachers' labels of the pool; top: how many suspected errors
    to list by index (all of them are counted).
    """
    probs = as_numpy(student_proba).astype(np.float64)
    errors = suspected_label_errors(given, probs)
    noise = estimate_noise(given, probs.argmax(1), num_classes)
    pool = as_teacher_labels(pool_labels, num_classes=num_classes)
    histogram = margin_histogram(pool, num_classes)
    return {
        "teacher_fit": [float(f) for f in teacher_fit],
        "teachers_interpolate": bool(min(teacher_fit) >= 0.99) if teacher_fit else False,
        "teacher_agreement": teacher_agreement(pool) if pool.shape[1] > 1 else 1.0,
        "vote_margin_histogram": histogram.tolist(),
        "unanimous_pool_fraction": float(histogram[-1] / max(1, len(pool))),
        "estimated_noise_rate": noise.rate,
        "estimated_transition_matrix": noise.matrix.round(4).tolist(),
        "suspected_label_errors": len(errors),
        "suspected_label_errors_top": [{"index": int(i), "given": int(as_numpy(given)[i]),
                                        "student": int(probs[i].argmax()), "confidence": round(float(probs[i].max()), 4)}
                                       for i in errors[:top]],
    }
