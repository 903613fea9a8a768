"""What fitted classifiers say, in the estimator's class order, and what a student learns from it.

Functions over arrays that RoleModelClassifier composes: which rows are unlabelled, a classifier's
labels and probabilities over all C classes (even one fitted on a few of them), held-out agreement
with noisy labels, and the student's targets from the teachers' pool labels.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.base import clone

from rolemodels.method.combine import plurality_vote, random_teacher_labels
from rolemodels.practice.network_classifier import NetworkClassifier


def unlabelled_rows(y: np.ndarray) -> np.ndarray:
    """bool [n]: True where y == -1, scikit-learn.semi_supervised's mark of an unlabelled row.
    Never for string labels, nor when the labels are exactly {-1, 1}: binary labels written as
    signs, where -1 is a class."""
    if y.dtype.kind in "iuf":
        values = y
    elif y.dtype == object:  # mixed: only numbers can be the mark
        number = (int, float, np.integer, np.floating)
        values = np.array([v if isinstance(v, number) and not isinstance(v, bool) else np.nan for v in y], dtype=float)
    else:
        return np.zeros(len(y), dtype=bool)
    marks = values == -1
    signs = bool(np.isin(values, (-1, 1)).all()) and not marks.all()
    return np.zeros(len(y), dtype=bool) if signs else marks


def class_probabilities(classifier, X, num_classes: int, fast: bool = False) -> np.ndarray | None:
    """float [N, C] probabilities in the estimator's class order (a classifier fitted on the
    encoded labels 0..C-1, perhaps seeing only some of them); None without predict_proba."""
    if fast and isinstance(classifier, NetworkClassifier):
        probs = classifier.fast_proba(X)
    elif hasattr(classifier, "predict_proba"):
        probs = classifier.predict_proba(X)
    else:
        return None
    out = np.zeros((len(probs), num_classes), dtype=np.float64)
    out[:, np.asarray(classifier.classes_, dtype=np.int64)] = probs
    return out


def class_labels(classifier, X, num_classes: int) -> tuple[np.ndarray, np.ndarray | None]:
    """A fitted classifier's encoded labels int64 [N] and probabilities [N, C] (or None) on X."""
    probs = class_probabilities(classifier, X, num_classes, fast=True)
    if isinstance(classifier, NetworkClassifier):
        return probs.argmax(1), probs
    return np.asarray(classifier.predict(X), dtype=np.int64), probs


def noisy_agreement(teacher, X, y, folds: int, seed: int) -> float:
    """How often copies of `teacher`, each fit on all but one of `folds` folds, predict the noisy
    label of the fold they did not see: a score of a recipe that needs no clean label. Under
    symmetric noise of rate r < (C - 1) / C it is r / (C - 1) + accuracy * (1 - r C / (C - 1)),
    so it ranks recipes as clean accuracy does; under pair noise a model that predicts the noise
    partner agrees more, so the ranks can differ (docs/practitioners.md measures how often)."""
    order = np.random.default_rng(seed).permutation(len(y))
    agreed = 0
    for held in np.array_split(order, folds):
        rest = np.setdiff1d(order, held)
        copy = clone(teacher).fit(X[rest], y[rest])
        agreed += int((np.asarray(copy.predict(X[held])) == y[held]).sum())
    return agreed / len(y)


def student_targets(combine: str, pool_labels: np.ndarray, prob_sum: torch.Tensor | None, num_classes: int,
                    draw_seed: int) -> np.ndarray:
    """What the student learns for each pool example, from the teachers' labels uint8 [N, K] and
    summed probabilities float [N, C] (None without them): soft, their mean probabilities float64
    [N, C]; vote, their plurality vote int64 [N]; random, one random teacher's label int64 [N]."""
    if combine == "soft":  # each teacher's probabilities sum to 1: the mean is the sum over its total
        return (prob_sum / prob_sum.sum(1, keepdim=True)).numpy()
    labels = torch.from_numpy(pool_labels)
    if combine == "vote":
        return plurality_vote(labels, num_classes, prob_sum).numpy()
    return random_teacher_labels(labels, draw_seed).numpy()
