"""A fit that went wrong says so: each degenerate-fit check on small arrays, then each warning raised
by RoleModelClassifier on a fit made to go wrong that way."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.datasets import make_classification  # noqa: E402
from sklearn.dummy import DummyClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.neighbors import KNeighborsClassifier  # noqa: E402

from rolemodels.practice.estimator import RoleModelClassifier  # noqa: E402
from rolemodels.practice.fit_checks import (  # noqa: E402
    DegenerateFitWarning,
    collapsed_classes,
    degenerate_fit,
    student_shortfall,
    teachers_at_chance,
)


def test_a_class_the_student_never_predicts_is_collapsed_and_a_rare_one_is_not():
    given = np.array([0] * 70 + [1] * 27 + [2] * 3)
    constant = np.zeros(100, dtype=np.int64)
    assert [d["class"] for d in collapsed_classes(given, constant, 3)] == [1]  # class 2 is under 5% of the labels
    assert collapsed_classes(given, given, 3) == []
    fewer = given.copy()
    fewer[70:95] = 0  # class 1 predicted 2 times for 27 labels: under a tenth of its share
    assert [d["class"] for d in collapsed_classes(given, fewer, 3)] == [1]
    fewer[70:92] = 1  # 24 times: kept
    assert collapsed_classes(given, fewer, 3) == []


def test_teachers_are_at_chance_when_they_fit_no_more_than_the_majority_label():
    given = np.array([0] * 80 + [1] * 20)
    assert teachers_at_chance(given, [0.80, 0.81], 2) == {"teacher_fit": pytest.approx(0.805), "majority_share": 0.8}
    assert teachers_at_chance(given, [0.85, 0.9], 2) is None


def test_a_student_short_of_what_its_teachers_agree_on_is_found():
    taught = np.arange(100) % 3
    learnt = taught.copy()
    learnt[:15] = (learnt[:15] + 1) % 3  # agrees on 85%
    assert student_shortfall(taught, learnt, 0.9) is None  # within 10 points of the teachers' agreement
    assert student_shortfall(taught, learnt, 0.96) == {"student_agreement": 0.85, "teacher_agreement": 0.96}


def test_each_finding_names_what_happened():
    given = np.array([0] * 60 + [1] * 40)
    found = degenerate_fit(given, np.zeros(100, dtype=np.int64), [0.6, 0.61], given, np.zeros(100, dtype=np.int64),
                           1.0, ["cat", "dog"])
    assert [f["kind"] for f in found] == ["collapsed_student", "teachers_at_chance", "student_below_teachers"]
    assert "class dog (40% of the labels, 0.0% of its predictions)" in found[0]["message"]


def problem():
    X, y = make_classification(300, n_features=6, n_informative=4, n_redundant=0, class_sep=2.0, random_state=0)
    return X, y


def fit_warnings(teacher, student, **options) -> list[str]:
    """The kinds of finding a fit records; each was warned too, with its message."""
    X, y = problem()
    with pytest.warns(DegenerateFitWarning) as caught:
        clf = RoleModelClassifier(teacher, student, n_teachers=3, random_state=0, **options).fit(X, y, X_pool=X)
    findings = clf.diagnostics_["warnings"]
    messages = [str(w.message) for w in caught if issubclass(w.category, DegenerateFitWarning)]
    assert messages == [f"RoleModelClassifier: {f['message']}" for f in findings]
    return [f["kind"] for f in findings]


def test_a_constant_student_warns():
    kinds = fit_warnings(LogisticRegression(), DummyClassifier(strategy="most_frequent"), teacher_data="bootstrap")
    assert "collapsed_student" in kinds and "teachers_at_chance" not in kinds


def test_teachers_at_chance_warn():
    # (a student that can learn a single class: their labels are all the majority one)
    kinds = fit_warnings(DummyClassifier(strategy="most_frequent"), KNeighborsClassifier(1))
    assert kinds == ["collapsed_student", "teachers_at_chance"]


def test_a_student_that_did_not_learn_its_teachers_labels_warns():
    kinds = fit_warnings(LogisticRegression(), DummyClassifier(strategy="uniform", random_state=0),
                            teacher_data="bootstrap")
    assert "student_below_teachers" in kinds and "teachers_at_chance" not in kinds


def test_a_sound_fit_does_not_warn(recwarn):
    X, y = problem()
    clf = RoleModelClassifier(LogisticRegression(), LogisticRegression(), n_teachers=3, teacher_data="bootstrap",
                              random_state=0).fit(X, y, X_pool=X)
    assert clf.diagnostics_["warnings"] == []
    assert not [w for w in recwarn if issubclass(w.category, DegenerateFitWarning)]
