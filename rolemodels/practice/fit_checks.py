"""Checks of a finished fit that no clean label is needed for: a fit that went wrong says so.

A distilled student can fail silently: teachers that learnt nothing, a student that predicts one
class, a student that learnt less than its teachers knew. Each check returns what it found as
plain data; `warn_degenerate` turns the findings into a `DegenerateFitWarning` each (as
scikit-learn's ConvergenceWarning does) and the estimator and `rolemodels distill` record them.
"""
from __future__ import annotations

import warnings

import numpy as np

# A class that holds at least this share of the labels must get at least this fraction of its
# share in the student's predictions; fewer, and the student has (nearly) dropped it.
COLLAPSE_MIN_SHARE = 0.05
COLLAPSE_FRACTION = 0.1
# Teachers whose fit of their own labels is within this of always predicting the most common
# label have learnt nothing from the inputs.
CHANCE_MARGIN = 0.02
# A student should agree with the labels it was taught (its teachers' vote on the pool) at least
# as well as two teachers agree with each other; this much less, and it has not learnt them.
STUDENT_SHORTFALL = 0.10


class DegenerateFitWarning(UserWarning):
    """A fit that finished but is probably useless: a (near-)constant student, teachers at chance,
    or a student that learnt less than its teachers."""


def collapsed_classes(given: np.ndarray, predicted: np.ndarray, num_classes: int) -> list[dict]:
    """Classes common among the given labels int [n] that the student's predictions int [n] (nearly)
    never name: [{"class", "label_share", "predicted_share"}], empty when none."""
    label_share = np.bincount(given, minlength=num_classes) / max(len(given), 1)
    predicted_share = np.bincount(predicted, minlength=num_classes) / max(len(predicted), 1)
    return [{"class": c, "label_share": float(label_share[c]), "predicted_share": float(predicted_share[c])}
            for c in range(num_classes)
            if label_share[c] >= COLLAPSE_MIN_SHARE and predicted_share[c] < COLLAPSE_FRACTION * label_share[c]]


def teachers_at_chance(given: np.ndarray, teacher_fit: list[float], num_classes: int) -> dict | None:
    """{"teacher_fit", "majority_share"} when the teachers' mean fit of their own labels is no better
    than always answering the most common label (within CHANCE_MARGIN), else None."""
    majority = float(np.bincount(given, minlength=num_classes).max() / max(len(given), 1))
    fit = float(np.mean(teacher_fit)) if len(teacher_fit) else float("nan")
    return {"teacher_fit": fit, "majority_share": majority} if fit <= majority + CHANCE_MARGIN else None


def student_shortfall(taught: np.ndarray, student: np.ndarray, teacher_agreement: float) -> dict | None:
    """{"student_agreement", "teacher_agreement"} when the student's labels of the pool int [N]
    agree with what it was taught there (the teachers' vote, int [N]) STUDENT_SHORTFALL less than
    two teachers agree with each other, else None."""
    ours = float(np.mean(student == taught)) if len(taught) else float("nan")
    shortfall = ours < teacher_agreement - STUDENT_SHORTFALL
    return {"student_agreement": ours, "teacher_agreement": float(teacher_agreement)} if shortfall else None


def degenerate_fit(given: np.ndarray, student_train: np.ndarray, teacher_fit: list[float], taught: np.ndarray,
                   student_pool: np.ndarray, teacher_agreement: float, classes: list) -> list[dict]:
    """Every finding of the three checks as {"kind", "message"}: what happened and what to try.

    given: int [n] the training labels (encoded 0..C-1); student_train: int [n] the student's labels
    of the training inputs; teacher_fit: each teacher's fit of its own labels; taught: int [N] the
    teachers' vote on the pool; student_pool: int [N] the student's labels of the pool;
    teacher_agreement: how often two teachers agree on the pool; classes: the classes' names."""
    found = []
    dropped = collapsed_classes(given, student_train, len(classes))
    if dropped:
        named = ", ".join(f"class {classes[d['class']]} ({d['label_share']:.0%} of the labels, {d['predicted_share']:.1%} "
                          f"of its predictions)" for d in dropped)
        found.append({"kind": "collapsed_student", "message": (
            f"the student (nearly) never predicts {named}: it is close to a constant predictor. Try more "
            f"student passes, another network or recipe='paper'")})
    chance = teachers_at_chance(given, teacher_fit, len(classes))
    if chance:
        found.append({"kind": "teachers_at_chance", "message": (
            f"the teachers fit {chance['teacher_fit']:.1%} of their own labels, no better than always "
            f"answering the most common label ({chance['majority_share']:.1%}): they learnt nothing from the "
            f"inputs. Try more teacher epochs, a higher learning rate or another network")})
    short = student_shortfall(taught, student_pool, teacher_agreement)
    if short:
        found.append({"kind": "student_below_teachers", "message": (
            f"the student agrees with its teachers' vote on {short['student_agreement']:.1%} of the pool, two "
            f"teachers with each other on {short['teacher_agreement']:.1%}: it did not learn what they taught. "
            f"Try more student passes or a larger student")})
    return found


def warn_degenerate(findings: list[dict], who: str, stacklevel: int = 3) -> None:
    """One DegenerateFitWarning per finding, naming `who` fitted."""
    for finding in findings:
        warnings.warn(f"{who}: {finding['message']}", DegenerateFitWarning, stacklevel=stacklevel)
