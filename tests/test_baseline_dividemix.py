"""DivideMix (experiments/baselines/dividemix.py): its pieces on small cases with known answers, and
end-to-end fits on tiny data, with and without an unlabelled pool."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("sklearn")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

from baselines.dividemix import (  # noqa: E402
    ORACLE_BY_NOISE,
    PRACTITIONER,
    DivideMixClassifier,
    clean_probability,
    co_guess,
    co_refine,
    divide,
    labelled_side,
    mixmatch_mix,
    negative_entropy,
    normalise_losses,
    oracle_config,
    probability_mse,
    schedule_for,
    sharpen,
    soft_cross_entropy,
    uniform_prior_penalty,
    unlabelled_weight,
)
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------ the division


def test_mixture_gives_the_low_loss_group_high_clean_probability():
    rng = np.random.default_rng(0)
    low = rng.normal(0.2, 0.1, 300).clip(0)  # clean examples: small losses
    high = rng.normal(2.5, 0.4, 200)  # wrong labels: large losses
    w = clean_probability(torch.from_numpy(np.concatenate([low, high])), seed=0)
    assert w.shape == (500,) and np.all((0 <= w) & (w <= 1))
    assert (w[:300] > 0.5).mean() >= 0.95
    assert (w[300:] < 0.5).mean() >= 0.95


def test_mixture_is_reproducible_and_degenerate_losses_are_all_clean():
    losses = torch.from_numpy(np.random.default_rng(1).exponential(1.0, 200))
    np.testing.assert_array_equal(clean_probability(losses, 3), clean_probability(losses, 3))
    np.testing.assert_array_equal(clean_probability(torch.full((10,), 0.7), 0), np.ones(10))


def test_normalise_losses_spans_zero_to_one():
    out = normalise_losses(torch.tensor([2.0, 4.0, 3.0]))
    np.testing.assert_allclose(out.numpy(), [0.0, 1.0, 0.5])


def test_divide_is_strictly_above_the_threshold_and_never_empty():
    w = np.array([0.2, 0.5, 0.51, 0.9])
    np.testing.assert_array_equal(divide(w, 0.5), [False, False, True, True])
    # nothing above 0.95: the upper half by median is labelled rather than an empty labelled set
    np.testing.assert_array_equal(labelled_side(w, 0.95), [False, False, True, True])


# ------------------------------------------------------------------------------------ the targets


def test_sharpen_known_values_and_rows_sum_to_one():
    out = sharpen(torch.tensor([[0.6, 0.4]]), 0.5)
    np.testing.assert_allclose(out.numpy(), [[0.6923077, 0.3076923]], atol=1e-6)
    p = torch.softmax(torch.randn(5, 4, generator=torch.Generator().manual_seed(0)), 1)
    for T in (0.1, 0.5, 1.0, 2.0):
        np.testing.assert_allclose(sharpen(p, T).sum(1).numpy(), np.ones(5), atol=1e-6)
    np.testing.assert_allclose(sharpen(p, 1.0).numpy(), p.numpy(), atol=1e-6)  # T = 1 changes nothing
    assert (sharpen(p, 0.5).max(1).values > p.max(1).values).all()  # T < 1 sharpens


def test_co_refine_uses_the_label_when_clean_and_the_prediction_when_not():
    labels = F.one_hot(torch.tensor([0, 2]), 3).float()
    p = torch.tensor([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]])
    np.testing.assert_allclose(co_refine(labels, torch.ones(2), p, 0.5).numpy(), labels.numpy(), atol=1e-6)
    np.testing.assert_allclose(co_refine(labels, torch.zeros(2), p, 0.5).numpy(), sharpen(p, 0.5).numpy(), atol=1e-6)
    half = co_refine(labels, torch.full((2,), 0.5), p, 1.0)
    np.testing.assert_allclose(half.numpy(), (0.5 * labels + 0.5 * p).numpy(), atol=1e-6)


def test_co_guess_averages_both_networks():
    p_a = torch.tensor([[0.9, 0.1], [0.5, 0.5]])
    p_b = torch.tensor([[0.3, 0.7], [0.1, 0.9]])
    np.testing.assert_allclose(co_guess(p_a, p_b, 1.0).numpy(), [[0.6, 0.4], [0.3, 0.7]], atol=1e-6)
    np.testing.assert_allclose(co_guess(p_a, p_b, 0.5).numpy(), sharpen((p_a + p_b) / 2, 0.5).numpy(), atol=1e-6)
    np.testing.assert_allclose(co_guess(p_a, p_b, 0.5).numpy(), co_guess(p_b, p_a, 0.5).numpy(), atol=1e-6)


def test_mixup_stays_nearer_its_first_input():
    inputs = torch.tensor([[0.0, 0.0], [10.0, 10.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    perm = torch.tensor([1, 0])
    for lam in (0.2, 0.8):  # lambda and 1 - lambda give the same lambda' = 0.8
        mixed, mixed_targets = mixmatch_mix(inputs, targets, lam, perm)
        np.testing.assert_allclose(mixed.numpy(), [[2.0, 2.0], [8.0, 8.0]], atol=1e-6)
        np.testing.assert_allclose(mixed_targets.numpy(), [[0.8, 0.2], [0.2, 0.8]], atol=1e-6)
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(1))
    mixed, _ = mixmatch_mix(x, torch.eye(8), 0.3, perm)
    assert ((mixed - x).norm(dim=1) <= (mixed - x[perm]).norm(dim=1) + 1e-6).all()


# ------------------------------------------------------------------------------------ the losses


def test_losses_known_values():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    labels = torch.tensor([0, 1])
    onehot = F.one_hot(labels, 3).float()
    assert torch.isclose(soft_cross_entropy(logits, onehot), F.cross_entropy(logits, labels))
    p = torch.softmax(logits, 1)
    assert torch.isclose(probability_mse(logits, p), torch.tensor(0.0))
    assert torch.isclose(probability_mse(logits, onehot), ((p - onehot) ** 2).mean())
    assert torch.isclose(negative_entropy(torch.zeros(4, 3)), torch.tensor(-np.log(3.0), dtype=torch.float32))
    assert torch.isclose(uniform_prior_penalty(torch.zeros(4, 3)), torch.tensor(0.0), atol=1e-7)
    assert uniform_prior_penalty(torch.tensor([[5.0, 0.0, 0.0]] * 4)) > 0.5  # everything in one class costs


def test_unlabelled_weight_ramps_up_linearly_after_the_warm_up():
    assert unlabelled_weight(25, 5.0, warmup=10, rampup=16) == 0
    assert unlabelled_weight(25, 18.0, warmup=10, rampup=16) == pytest.approx(12.5)
    assert unlabelled_weight(25, 40.0, warmup=10, rampup=16) == 25
    assert unlabelled_weight(25, 10.0, warmup=10, rampup=0) == 25


def test_schedule_scales_the_papers_epochs():
    plan = schedule_for(1000, epochs=30, min_examples=300_000)
    assert (plan.total, plan.warmup, plan.lr_step, plan.rampup) == (300, 10, 150, pytest.approx(16))
    plan = schedule_for(80, epochs=3, min_examples=0)
    assert (plan.total, plan.warmup, plan.lr_step) == (3, 1, 2)  # warm-up never below one epoch


def test_oracle_and_practitioner_configurations():
    assert oracle_config("symmetric", 0.2)["lambda_u"] == 0
    assert oracle_config("symmetric", 0.4) == ORACLE_BY_NOISE[("symmetric", 0.5)]  # nearest published rate
    high = oracle_config("symmetric", 0.9)
    assert (high["lambda_u"], high["p_threshold"], high["loss_average_epochs"]) == (50, 0.6, 5)
    pair = oracle_config("pairflip", 0.3)
    assert pair["confidence_penalty"] and pair["lambda_u"] == 0
    defaults = DivideMixClassifier().get_params()
    assert all(defaults[k] == v for k, v in PRACTITIONER.items())
    with pytest.raises(ValueError, match="noise"):
        oracle_config("instance", 0.4)


# ------------------------------------------------------------------------------------ end to end


def tiny_problem(n: int = 80, seed: int = 0):
    X, y = make_classification(n, n_features=6, n_informative=4, n_redundant=0, n_classes=3, n_clusters_per_class=1,
                               class_sep=2.0, random_state=seed)
    return X.astype(np.float32), np.array(["ant", "bee", "cat"])[y]


def tiny(**options) -> DivideMixClassifier:
    settings = {"width": 2, "epochs": 3, "min_examples": 0, "batch_size": 16, "random_state": 7, **options}
    return DivideMixClassifier("mlp", **settings)


@pytest.mark.parametrize("with_pool", [False, True])
def test_fit_predicts_classes_quickly_and_reproducibly(with_pool):
    X, y = tiny_problem()
    pool = {"X_pool": tiny_problem(40, seed=1)[0]} if with_pool else {}
    start = time.perf_counter()
    model = tiny().fit(X, y, **pool)
    assert time.perf_counter() - start < 10
    assert model.schedule_.warmup == 1 and model.schedule_.total == 3
    assert len(model.networks_) == 2
    assert set(model.predict(X)) <= set(model.classes_) and list(model.classes_) == ["ant", "bee", "cat"]
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1, atol=1e-6)
    assert model.flagged_.dtype == bool and model.flagged_.shape == (80,)
    np.testing.assert_array_equal(model.flagged_, model.clean_probability_ <= model.p_threshold)
    again = tiny().fit(X, y, **pool)
    np.testing.assert_array_equal(again.predict_proba(X), proba)
    np.testing.assert_array_equal(again.flagged_, model.flagged_)
    other = tiny(random_state=8).fit(X, y, **pool)
    assert not np.array_equal(other.predict_proba(X), proba)


def test_fit_flags_most_flipped_labels_on_an_easy_problem():
    X, y = make_classification(300, n_features=6, n_informative=4, n_redundant=0, n_classes=3,
                               n_clusters_per_class=1, class_sep=3.0, random_state=0)
    rng = np.random.default_rng(0)
    flipped = rng.choice(300, 60, replace=False)
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + rng.integers(1, 3, 60)) % 3
    model = DivideMixClassifier("mlp", width=4, epochs=20, min_examples=0, warmup_fraction=0.25,
                                random_state=0).fit(X.astype(np.float32), noisy)
    truly = noisy != y
    caught = (model.flagged_ & truly).sum()
    assert caught / truly.sum() >= 0.9  # recall of the flipped labels (measured 1.0)
    assert caught / max(model.flagged_.sum(), 1) >= 0.8  # precision, against a 20% base rate (measured 0.95)
    assert (model.predict(X) == y).mean() >= 0.9  # the true labels, not the 80% a fit of the noise would give


def test_augmented_signals_and_confidence_penalty_run():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 40)
    X = (rng.normal(size=(40, 12)) + 2.0 * y[:, None]).astype(np.float32)
    model = DivideMixClassifier("cnn1d", width=2, augment="shift", epochs=2, min_examples=0, batch_size=8,
                                confidence_penalty=True, loss_average_epochs=2, random_state=0).fit(X, y)
    assert set(model.predict(X)) <= {0, 1}


def test_clone_keeps_every_parameter():
    model = tiny(lambda_u=0.0, p_threshold=0.6)
    params = clone(model).get_params()
    assert params["lambda_u"] == 0.0 and params["p_threshold"] == 0.6 and params["width"] == 2


@pytest.mark.parametrize("name, value", [("p_threshold", 1.5), ("lambda_u", -1.0), ("epochs", 0), ("batch_size", 0),
                                         ("confidence_penalty", "yes"), ("alpha", 0.0), ("T", 0.0),
                                         ("loss_average_epochs", 0), ("warmup_fraction", 2.0),
                                         ("optimizer", "adam")])
def test_bad_parameters_raise_value_errors_naming_them(name, value):
    X, y = tiny_problem()
    with pytest.raises(ValueError, match=name):
        tiny(**{name: value}).fit(X, y)


def test_bad_pool_raises_value_error_naming_it():
    X, y = tiny_problem()
    with pytest.raises(ValueError, match="X_pool"):
        tiny().fit(X, y, X_pool=np.zeros((5, 3), dtype=np.float32))
