"""RoleModelClassifier and NetworkClassifier follow scikit-learn's conventions and the paper's recipe."""
from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch

pytest.importorskip("sklearn")

from sklearn.datasets import make_classification  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.neighbors import KNeighborsClassifier  # noqa: E402
from sklearn.utils.estimator_checks import check_estimator  # noqa: E402

from rolemodels.practice.estimator import RoleModelClassifier  # noqa: E402
from rolemodels.practice.network_classifier import NetworkClassifier  # noqa: E402
from rolemodels.practice.student import load_student  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def quick(**options) -> NetworkClassifier:
    """A network small and short enough for scikit-learn's ~50 checks in seconds."""
    return NetworkClassifier("mlp", width=2, epochs=5, min_examples=1000, batch_size=64, lr=3e-2, device="cpu",
                             **options)


def small_problem(n: int = 240, seed: int = 0):
    X, y = make_classification(n, n_features=8, n_informative=6, n_redundant=0, n_classes=3, n_clusters_per_class=1,
                               class_sep=2.0, random_state=seed)
    return X.astype(np.float32), y


def statuses(estimator, expected=None) -> dict[str, str]:
    results = check_estimator(estimator, on_fail=None, on_skip=None, expected_failed_checks=expected)
    return {r["check_name"]: r["status"] for r in results}


def test_network_classifier_passes_check_estimator():
    found = statuses(quick())
    assert not [name for name, status in found.items() if status == "failed"], found


def test_role_model_classifier_passes_check_estimator():
    # labels [-1, 1] are two classes (signs), not one class and unlabelled rows: check_classifiers_classes too
    found = statuses(RoleModelClassifier(quick(), quick(), n_teachers=2, cv=2, device="cpu"))
    assert not [name for name, status in found.items() if status in ("failed", "xfail")], found
    assert found["check_classifiers_classes"] == "passed"


def test_rows_labelled_minus_one_are_the_pool():
    X, y = small_problem()
    marked = y.copy()
    marked[160:] = -1
    a = RoleModelClassifier(quick(), quick(), n_teachers=2, random_state=0).fit(X, marked)
    b = RoleModelClassifier(quick(), quick(), n_teachers=2, random_state=0).fit(X[:160], y[:160], X_pool=X[160:])
    assert a.pool_labels_.dtype == np.uint8 and a.pool_labels_.shape == (80, 2)
    assert np.array_equal(a.pool_labels_, b.pool_labels_)  # the same computation, in the same order
    assert np.array_equal(a.predict(X), b.predict(X))
    assert a.diagnostics_["n_train"] == 160 and a.diagnostics_["n_pool"] == 80
    assert list(a.classes_) == [0, 1, 2]


def test_a_small_pool_takes_the_training_inputs_only_from_robust_teachers():
    """Under 3,125 pool rows the training inputs join the pool, labelled by the teachers, where they
    train on GCE; an interpolating teacher would hand the student the noisy labels it must judge."""
    X, y = small_problem()
    robust = RoleModelClassifier(quick(loss="gce"), quick(), n_teachers=2, random_state=0).fit(X[:160], y[:160],
                                                                                               X_pool=X[160:])
    assert robust.pool_labels_.shape == (80 + 160, 2) and robust.diagnostics_["n_pool"] == 240
    assert robust.diagnostics_["pool"] == "given, with the training inputs"
    # the training rows' labels are the teachers' own predictions, after the pool's
    assert np.array_equal(robust.pool_labels_[80:, 0], robust.teachers_[0].predict(X[:160]))
    plain = RoleModelClassifier(quick(), quick(), n_teachers=2, random_state=0).fit(X[:160], y[:160], X_pool=X[160:])
    assert plain.pool_labels_.shape == (80, 2) and plain.diagnostics_["pool"] == "given"
    with mock.patch("rolemodels.practice.estimator.is_small_pool", lambda n: False):  # a large pool: alone
        large = RoleModelClassifier(quick(loss="gce"), quick(), n_teachers=2, random_state=0).fit(
            X[:160], y[:160], X_pool=X[160:])
    assert large.pool_labels_.shape == (80, 2)


def test_string_labels_map_through_classes():
    X, y = small_problem()
    names = np.array(["cat", "dog", "emu"])[y]
    clf = RoleModelClassifier(quick(), quick(), n_teachers=2, random_state=0).fit(X[:160], names[:160], X_pool=X[160:])
    assert list(clf.classes_) == ["cat", "dog", "emu"]
    assert set(clf.predict(X)) <= {"cat", "dog", "emu"} and set(clf.ensemble_predict(X)) <= {"cat", "dog", "emu"}
    assert clf.predict_proba(X).shape == (240, 3)


def test_without_a_pool_the_teachers_label_the_folds_they_did_not_see():
    X, y = small_problem()
    clf = RoleModelClassifier(quick(), quick(), n_teachers=2, cv=3, random_state=0).fit(X, y)
    assert clf.diagnostics_["pool"] == "cross-fitted" and clf.pool_labels_.shape == (240, 2)
    assert len(clf.teachers_) == 6  # 3 folds x 2 teachers
    assert clf.score(X, y) > 0.8


def test_a_deterministic_teacher_gets_different_data():
    X, y = small_problem()
    with pytest.raises(ValueError, match="random_state"):
        RoleModelClassifier(KNeighborsClassifier(1), quick(), n_teachers=3, teacher_data="same").fit(X, y, X_pool=X[:5] + 1)
    clf = RoleModelClassifier(KNeighborsClassifier(1), quick(), n_teachers=3, random_state=0).fit(X[:160], y[:160],
                                                                                                  X_pool=X[160:])
    assert clf.diagnostics_["teacher_data"] == "bootstrap"
    assert clf.diagnostics_["teacher_fit"] == [1.0, 1.0, 1.0]  # 1-NN fits its own examples: a sampler
    assert (clf.pool_labels_ != clf.pool_labels_[:, :1]).any()  # bootstrap samples: teachers that differ


def test_any_classifier_can_teach_and_each_clone_has_its_own_seed():
    X, y = small_problem()
    clf = RoleModelClassifier(LogisticRegression(max_iter=200), quick(), n_teachers=2, combine="random",
                              random_state=0).fit(X[:160], y[:160], X_pool=X[160:])
    assert [t.random_state for t in clf.teachers_] == [0, 1]  # Seeds(0).teacher(k)
    assert clf.score(X, y) > 0.8


def test_your_own_module_can_be_the_network():
    X, y = small_problem()
    factory = lambda shape, classes: torch.nn.Sequential(torch.nn.Linear(shape[0], 16), torch.nn.ReLU(),
                                                         torch.nn.Linear(16, classes))
    clf = RoleModelClassifier(factory, quick(), n_teachers=2, random_state=0).fit(X[:160], y[:160], X_pool=X[160:])
    assert clf.score(X, y) > 0.8
    assert clf.teachers_[0].gce_warmup == 0.0  # the warm-up was measured on the registry's networks only
    with pytest.raises(ValueError, match="NetworkClassifier"):
        RoleModelClassifier(quick(), LogisticRegression(), n_teachers=2).fit(X[:160], y[:160], X_pool=X[160:]) \
            .save_student("never.pt")


def test_saved_student_predicts_what_the_estimator_predicts(tmp_path):
    X, y = small_problem()
    names = np.array(["cat", "dog", "emu"])[y]
    clf = RoleModelClassifier(quick(), quick(), n_teachers=2, random_state=0).fit(X[:160], names[:160], X_pool=X[160:])
    clf.save_student(tmp_path / "student.pt")
    state = torch.load(tmp_path / "student.pt", weights_only=True)  # plain data, no pickled code
    assert state["classes"] == ["cat", "dog", "emu"] and state["architecture"] == "mlp"
    student = load_student(tmp_path / "student.pt")
    assert np.array_equal(student.predict(X), clf.predict(X))
    assert np.allclose(student.predict_proba(X), clf.predict_proba(X), atol=1e-6)


def test_bad_parameters_say_what_is_allowed():
    X, y = small_problem()
    for options, needle in (({"combine": "mean"}, "combine"), ({"teacher_data": "half"}, "teacher_data"),
                            ({"n_teachers": 0}, "n_teachers"), ({"cv": 1}, "cv")):
        with pytest.raises(ValueError, match=needle):
            RoleModelClassifier(quick(), quick(), **options).fit(X, y)
    with pytest.raises(ValueError, match="X_pool"):
        RoleModelClassifier(quick(), quick()).fit(X, y, X_pool=X[:, :3])


def test_network_classifier_on_gce_does_not_fit_the_wrong_labels():
    """loss="gce": the same network and recipe that fit every flipped label with cross-entropy
    fits few of them (measured over data seeds 0-3: cross-entropy 1.0 of the flips, GCE 0.01-0.21)."""
    X, y = small_problem()
    flip = np.random.default_rng(0).random(len(y)) < 0.3
    noisy = np.where(flip, (y + 1) % 3, y)
    fitted = {loss: NetworkClassifier("mlp", width=64, epochs=5, min_examples=20_000, batch_size=64, lr=1e-2,
                                      device="cpu", loss=loss, random_state=0).fit(X, noisy)
              for loss in ("cross_entropy", "gce")}
    flips_fit = {loss: (clf.predict(X[flip]) == noisy[flip]).mean() for loss, clf in fitted.items()}
    assert flips_fit["cross_entropy"] >= 0.95 and flips_fit["gce"] <= 0.5, flips_fit
    assert (fitted["gce"].predict(X) == y).mean() > (fitted["cross_entropy"].predict(X) == y).mean() + 0.1
    with pytest.raises(ValueError, match="loss: 'hinge' is not one of cross_entropy, gce"):
        quick(loss="hinge").fit(X, y)
    for q in (1.5, "high"):
        with pytest.raises(ValueError, match=rf"gce_q: {q!r} is not in \(0, 1\]"):
            quick(loss="gce", gce_q=q).fit(X, y)


def test_the_default_recipe_trains_robust_teachers_and_the_papers_is_one_option_away():
    X, y = small_problem()
    robust = RoleModelClassifier("mlp", quick(), n_teachers=2, random_state=0, device="cpu")
    assert robust.recipe == "robust" and (robust._base_teacher(1000).loss, robust._base_teacher(1000).gce_q) == ("gce", 0.8)
    paper = RoleModelClassifier("mlp", quick(), recipe="paper", n_teachers=2, random_state=0, device="cpu")
    assert paper._base_teacher(1000).loss == "cross_entropy"
    own = RoleModelClassifier(quick(), quick(), n_teachers=2)
    assert own._base_teacher(1000).loss == quick().loss  # a teacher the user configured keeps its own loss
    with pytest.raises(ValueError, match="recipe='fast': expected one of robust, paper"):
        RoleModelClassifier("mlp", quick(), recipe="fast").fit(X, y)


def test_soft_labels_train_like_their_hard_labels_when_they_are_one_hot():
    """Cross-entropy against a one-hot row is cross-entropy against its class, so fit_proba on
    one-hot rows and fit on the classes compute the same steps (up to float rounding)."""
    X, y = small_problem()
    hard = quick(random_state=0).fit(X, y)
    soft = quick(random_state=0).fit_proba(X, np.eye(3)[y])
    assert list(soft.classes_) == [0, 1, 2] and soft.train_accuracy_ == pytest.approx(hard.train_accuracy_, abs=0.01)
    assert np.allclose(soft.predict_proba(X), hard.predict_proba(X), atol=1e-3)


def test_soft_labels_are_learned_as_probabilities():
    """A network trained on rows that put 0.6 on the true class and 0.2 on each other one
    predicts about 0.6, where one trained on the classes is near certain (measured on data
    seeds 0-2: 0.600 and 1.000)."""
    X, y = small_problem()
    soft_rows = np.full((len(y), 3), 0.2) + 0.4 * np.eye(3)[y]
    soft = NetworkClassifier("mlp", width=4, epochs=20, batch_size=64, lr=1e-2, random_state=0,
                             device="cpu").fit_proba(X, soft_rows)
    hard = NetworkClassifier("mlp", width=4, epochs=20, batch_size=64, lr=1e-2, random_state=0, device="cpu").fit(X, y)
    assert abs(soft.predict_proba(X).max(1).mean() - 0.6) < 0.1 and hard.predict_proba(X).max(1).mean() > 0.9
    assert soft.train_accuracy_ > 0.9  # the most probable class is still the true one


@pytest.mark.parametrize("rows, needle", [(np.full((240, 1), 1.0), "C >= 2"), (np.full((10, 3), 1 / 3), r"\[240, C\]"),
                                          (np.full((240, 3), 0.5), "sum to 1"), (np.full((240, 2), [1.5, -0.5]), "non-negative")])
def test_fit_proba_refuses_rows_that_are_not_probabilities(rows, needle):
    X, _ = small_problem()
    with pytest.raises(ValueError, match=needle):
        quick().fit_proba(X, rows)


def test_student_targets_follow_the_combine_rule():
    from rolemodels.practice.outputs import student_targets

    labels = np.array([[0, 0, 1], [2, 1, 1]], dtype=np.uint8)
    probs = torch.tensor([[1.8, 1.2, 0.0], [0.1, 1.5, 1.4]], dtype=torch.float64)
    assert np.allclose(student_targets("soft", labels, probs, 3, 0), probs.numpy() / 3)
    assert list(student_targets("vote", labels, probs, 3, 0)) == [0, 1]
    drawn = student_targets("random", labels, probs, 3, 0)
    assert all(d in row for d, row in zip(drawn, labels))


def test_auto_combine_is_soft_for_robust_teachers_and_the_vote_otherwise():
    X, y = small_problem()
    fit = lambda **options: RoleModelClassifier(quick(), quick(), n_teachers=2, random_state=0, **options).fit(
        X[:160], y[:160], X_pool=X[160:])
    robust, paper = fit(), fit(recipe="paper")
    assert robust.diagnostics_["combine"] == "soft" and paper.diagnostics_["combine"] == "vote"
    assert not np.allclose(robust.predict_proba(X), paper.predict_proba(X))  # the students learnt different targets
    lr = RoleModelClassifier(quick(), LogisticRegression(max_iter=200), n_teachers=2, random_state=0)
    assert lr.fit(X[:160], y[:160], X_pool=X[160:]).diagnostics_["combine"] == "vote"  # no soft labels for it
    with pytest.raises(ValueError, match="combine='soft'.*NetworkClassifier"):
        lr.set_params(combine="soft").fit(X[:160], y[:160], X_pool=X[160:])


def test_the_recipes_budgets_scale_with_the_data():
    from rolemodels.practice.recipe import student_examples

    robust, paper = RoleModelClassifier()._base_teacher(1000), RoleModelClassifier(recipe="paper")._base_teacher(1000)
    assert (robust.loss, robust.epochs, robust.min_examples) == ("gce", 30, 10_000)
    assert (paper.loss, paper.epochs, paper.min_examples) == ("cross_entropy", 30, 60_000)
    # 200,000 examples and 4 passes, but at most 64 passes of a small pool
    assert [student_examples(n) for n in (797, 3125, 50_000, 200_000, 1_000_000)] == \
        [51_008, 200_000, 200_000, 800_000, 4_000_000]
    assert RoleModelClassifier()._base_student(robust, 797).min_examples == 51_008
    # bounded in steps too: at most 200 passes of a tiny training set (3 rows: 600 examples, not 10,000)
    assert [RoleModelClassifier()._base_teacher(n).min_examples for n in (3, 40, 50, 1000)] == [600, 8_000, 10_000,
                                                                                                10_000]


def test_networks_with_a_preset_get_its_teacher_recipe_in_the_robust_recipe():
    """cnn1d and cnn2d_wide train as configs/mnist1d.toml and configs/fashion-mnist.toml train their
    teachers, on GCE; their students are augmented as the teachers are; the paper's recipe and the
    other networks keep the generic recipe."""
    import tomllib
    from pathlib import Path

    from rolemodels.practice.recipe import ROBUST_BY_NETWORK

    configs = Path(__file__).resolve().parents[1] / "configs"
    for network, preset in (("cnn1d", "mnist1d"), ("cnn2d_wide", "fashion-mnist")):
        table = tomllib.loads((configs / f"{preset}.toml").read_text())["teachers"]
        assert table["model"] == network
        teacher = RoleModelClassifier(network)._base_teacher(1000)
        for key in set(ROBUST_BY_NETWORK[network]) - {"min_examples"}:
            assert getattr(teacher, key) == table.get(key, NetworkClassifier().get_params()[key]), (network, key)
        assert (teacher.loss, teacher.gce_q) == ("gce", 0.8)
        assert RoleModelClassifier(network)._base_student(teacher, 2000).augment == teacher.augment
    wide = RoleModelClassifier("cnn2d_wide")._base_teacher(1000)
    assert (wide.augment, wide.epochs, wide.min_examples) == ("none", 18, 30_000)  # 30 passes of 1,000 images
    paper = RoleModelClassifier("cnn1d", recipe="paper")._base_teacher(1000)
    assert (paper.loss, paper.epochs, paper.batch_size, paper.augment) == ("cross_entropy", 30, 128, "none")
    mlp = RoleModelClassifier("mlp")._base_teacher(1000)
    assert (mlp.epochs, mlp.batch_size, mlp.augment) == (30, 128, "auto")
    chosen = RoleModelClassifier("cnn1d")._base_teacher(1000, 12)  # teacher_epochs, given or chosen, wins
    assert (chosen.epochs, chosen.min_examples, chosen.batch_size) == (12, 0, 256)


def test_noisy_agreement_scores_a_recipe_without_clean_labels():
    """Held-out agreement with the noisy labels: for a constant predictor exactly the share of
    its class among the labels; for a recipe that learns (logistic regression) far higher."""
    from sklearn.dummy import DummyClassifier

    from rolemodels.practice.outputs import noisy_agreement

    X, y = small_problem()
    noisy = np.where(np.random.default_rng(0).random(len(y)) < 0.3, (y + 1) % 3, y)
    constant = noisy_agreement(DummyClassifier(strategy="constant", constant=0), X, noisy, 5, 0)
    assert constant == pytest.approx((noisy == 0).mean())
    learner = noisy_agreement(LogisticRegression(max_iter=500), X, noisy, 5, 0)
    assert learner > constant + 0.2 and learner < 1.0


def test_teacher_epochs_auto_picks_the_choice_with_the_best_held_out_agreement(monkeypatch):
    import rolemodels.practice.estimator as estimator

    X, y = small_problem()
    monkeypatch.setattr(estimator, "EPOCH_CHOICES", (1, 8))
    clf = RoleModelClassifier("mlp", quick(), n_teachers=2, teacher_epochs="auto", random_state=0, device="cpu")
    clf.fit(X[:160], y[:160], X_pool=X[160:])
    scores = clf.diagnostics_["teacher_epoch_agreement"]
    assert set(scores) == {1, 8} and clf.diagnostics_["teacher_epochs"] == max(scores, key=scores.get)
    assert all(t.epochs == clf.diagnostics_["teacher_epochs"] and t.min_examples == 0 for t in clf.teachers_)
    fixed = RoleModelClassifier("mlp", quick(), n_teachers=2, teacher_epochs=3, random_state=0, device="cpu")
    fixed.fit(X[:160], y[:160], X_pool=X[160:])
    assert fixed.diagnostics_["teacher_epochs"] == 3 and fixed.diagnostics_["teacher_epoch_agreement"] is None
    for bad, needle in (("many", "teacher_epochs='many'"), (0, "teacher_epochs=0")):
        with pytest.raises(ValueError, match=needle):
            RoleModelClassifier("mlp", teacher_epochs=bad).fit(X, y)
    with pytest.raises(ValueError, match="your own NetworkClassifier"):
        RoleModelClassifier(quick(), teacher_epochs="auto").fit(X, y)


def test_pool_graph_spreads_the_soft_labels_of_a_small_pool_and_only_those():
    X, y = small_problem()
    fit = lambda **options: RoleModelClassifier(quick(), quick(), n_teachers=2, random_state=0, **options).fit(
        X[:160], y[:160], X_pool=X[160:])
    auto, off, paper = fit(), fit(pool_graph=0), fit(recipe="paper")
    assert auto.diagnostics_["pool_graph"] == 10 and off.diagnostics_["pool_graph"] == 0  # 80 pool rows: small
    assert paper.diagnostics_["pool_graph"] == 0  # the vote: nothing to spread
    assert np.array_equal(auto.pool_labels_, off.pool_labels_)  # the same teachers ...
    assert not np.allclose(auto.predict_proba(X), off.predict_proba(X))  # ... but the student learnt other targets
    assert fit(pool_graph=3).diagnostics_["pool_graph"] == 3
    with pytest.raises(ValueError, match="pool_graph=3 .*combine='vote'"):
        fit(pool_graph=3, combine="vote")
    for bad in ("yes", -1, True, 2.5):
        with pytest.raises(ValueError, match="pool_graph"):
            fit(pool_graph=bad)


def test_pool_graph_auto_leaves_a_large_pool_and_other_networks_alone(monkeypatch):
    X, y = small_problem()
    fit = lambda student: RoleModelClassifier(quick(), student, n_teachers=2, random_state=0).fit(
        X[:160], y[:160], X_pool=X[160:])
    factory = lambda shape, classes: torch.nn.Sequential(torch.nn.Linear(shape[0], 4), torch.nn.ReLU(),
                                                         torch.nn.Linear(4, classes))
    other = fit(NetworkClassifier(factory, epochs=2, min_examples=0, device="cpu"))  # not an mlp: raw rows' neighbours
    assert other.diagnostics_["combine"] == "soft" and other.diagnostics_["pool_graph"] == 0
    assert fit(quick()).diagnostics_["pool_graph"] == 10
    monkeypatch.setattr("rolemodels.practice.recipe.POOL_GRAPH_ROWS", 79)  # the 80-row pool counts as large
    large = fit(quick())
    assert large.diagnostics_["combine"] == "soft" and large.diagnostics_["pool_graph"] == 0


# ---------------------------------------------------------------------------------------------
# Raw columns, sign labels, settings checked before training, and the student's placement


def raw_columns(X: np.ndarray) -> np.ndarray:
    """X with one column on the scale of 5e4 and another of 1e-3, as a table's raw columns come."""
    raw = X.astype(np.float64).copy()
    raw[:, 0] = raw[:, 0] * 1000 + 5e4
    raw[:, 1] = raw[:, 1] * 1e-3
    return raw


def test_an_mlp_standardises_each_column_so_raw_scales_do_not_matter():
    X, y = small_problem()
    scaled = quick(random_state=0).fit(X, y)
    raw = quick(random_state=0).fit(raw_columns(X), y)
    assert raw.model_[0].mean.shape == (8,)  # one mean and std per column, not one for the table
    # the same standardised inputs: the same training, up to float rounding
    assert np.mean(raw.predict(raw_columns(X)) == scaled.predict(X)) >= 0.99
    assert raw.train_accuracy_ == pytest.approx(scaled.train_accuracy_, abs=0.01)


def test_labels_minus_one_and_one_are_two_classes_not_unlabelled_rows():
    X, y = small_problem()
    signs = np.where(y == 0, -1, 1)
    clf = RoleModelClassifier(quick(), quick(), n_teachers=2, random_state=0).fit(X, signs)
    assert list(clf.classes_) == [-1, 1] and clf.diagnostics_["n_train"] == len(y)
    assert set(clf.predict(X)) == {-1, 1}
    # with a third class, -1 is scikit-learn's mark of an unlabelled row, and the error says so
    marked = np.where(y == 0, -1, 2)
    with pytest.raises(ValueError, match=r"1 class .* rows of -1, which mark unlabelled rows"):
        RoleModelClassifier(quick(), quick(), n_teachers=2).fit(X, marked)


class RefusesToFit(LogisticRegression):
    """A teacher that fails the test if it is ever trained: settings must be refused before."""

    def fit(self, X, y, sample_weight=None):
        raise AssertionError("a teacher was trained before the settings were checked")


@pytest.mark.parametrize("options, message", [
    ({"overlap": 0}, r"overlap=0: expected .* in \(0, 1\]"),
    ({"overlap": -1}, r"overlap=-1"),
    ({"overlap": 1.5}, r"overlap=1.5"),
    ({"overlap": True}, r"overlap=True"),
    ({"precision": "fp16"}, r"precision='fp16': expected one of auto, bf16, fp32"),
    ({"precision": "FP32"}, r"precision='FP32'"),
    ({"combine": "vote", "pool_graph": 3, "student": "mlp"}, r"pool_graph=3 .*combine='vote'"),
])
def test_bad_settings_are_refused_before_any_teacher_trains(options, message):
    X, y = small_problem()
    options = {"student": quick(), **options}
    with pytest.raises(ValueError, match=message):
        RoleModelClassifier(RefusesToFit(), teacher_data="bootstrap", **options).fit(X, y, X_pool=X)


def test_an_explicit_pool_graph_refuses_a_pool_too_large_for_its_distances(monkeypatch):
    monkeypatch.setattr("rolemodels.practice.estimator.POOL_GRAPH_MAX_ROWS", 100)
    X, y = small_problem()
    with pytest.raises(ValueError, match=r"pool_graph=5: the pool has 240 rows.*at most 100"):
        RoleModelClassifier(RefusesToFit(), quick(), teacher_data="bootstrap", pool_graph=5,
                            combine="soft").fit(X, y, X_pool=X)


def test_the_default_student_runs_where_and_as_its_teacher_does():
    teacher = NetworkClassifier("mlp", input_shape=(2, 4), device="cpu", precision="fp32")
    clf = RoleModelClassifier(teacher, input_shape=(8,), device="auto", precision="auto")
    student = clf._base_student(teacher, 1000)
    assert (student.input_shape, student.device, student.precision) == ((2, 4), "cpu", "fp32")


def test_the_auto_pool_graph_leaves_a_minority_class_that_its_neighbours_would_erase():
    """400 rows, a 5% minority class mixed among the majority, a column of scale 1,000: the graph's
    neighbours of minority rows are mostly majority rows (graph_homophily 0.2-0.3), so spreading
    would turn every one of them into the majority class. auto measures that and does not spread."""
    X, y = make_classification(400, n_features=8, n_informative=4, weights=[0.95, 0.05], flip_y=0, random_state=0)
    X[:, 0] = X[:, 0] * 1000
    teacher = NetworkClassifier("mlp", epochs=30, min_examples=0, device="cpu")  # finds the minority rows
    clf = RoleModelClassifier(teacher, quick(), n_teachers=2, random_state=0).fit(X, y, X_pool=X)
    assert clf.diagnostics_["combine"] == "soft" and clf.diagnostics_["pool_graph"] == 0
    assert min(clf.diagnostics_["pool_graph_homophily"]) < 0.5
    forced = RoleModelClassifier(teacher, quick(), n_teachers=2, random_state=0, pool_graph=10).fit(X, y, X_pool=X)
    assert forced.diagnostics_["pool_graph"] == 10  # an explicit k is the user's to choose


def test_auto_teachers_are_ten_with_a_pool_three_generic_networks_and_two_a_fold_without():
    from rolemodels.practice.recipe import teacher_count

    assert [teacher_count("auto", pool=True), teacher_count("auto", pool=False), teacher_count(4, pool=False)] == \
        [10, 2, 4]
    # with a pool: 3 of the robust recipe's generic networks; the preset networks, the paper's
    # recipe and teachers that are not registry networks keep the paper's 10
    assert [teacher_count("auto", True, "mlp"), teacher_count("auto", True, "cnn2d"),
            teacher_count("auto", True, "cnn1d"), teacher_count("auto", True, "cnn2d_wide"),
            teacher_count("auto", True, "mlp", recipe="paper"), teacher_count("auto", True, "knn"),
            teacher_count(7, True, "mlp"), teacher_count("auto", False, "cnn1d")] == [3, 3, 10, 10, 10, 10, 7, 2]
    X, y = small_problem()
    lr = LogisticRegression(max_iter=200)
    crossed = RoleModelClassifier(lr, quick(), cv=3, random_state=0).fit(X, y)
    assert len(crossed.teachers_) == 6 and crossed.pool_labels_.shape == (240, 2)  # 3 folds x 2 teachers
    assert crossed.diagnostics_["n_teachers"] == 2
    given = RoleModelClassifier(lr, quick(), random_state=0).fit(X[:160], y[:160], X_pool=X[160:])
    assert len(given.teachers_) == 10 and given.diagnostics_["n_teachers"] == 10
    # the same fits as asking for that many: the seeds follow the teachers' count, not how it was set
    two = RoleModelClassifier(lr, quick(), n_teachers=2, cv=3, random_state=0).fit(X, y)
    assert np.array_equal(two.pool_labels_, crossed.pool_labels_)
    for bad in ("some", 0, True, 2.5):
        with pytest.raises(ValueError, match="n_teachers=.*expected 'auto' or an integer"):
            RoleModelClassifier(lr, quick(), n_teachers=bad).fit(X, y)
