"""ELR (experiments/baselines/elr.py): the target update and the loss on small cases with known
answers, the schedules, and end-to-end fits on tiny data."""
from __future__ import annotations

import math
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

import baselines.elr as elr_module  # noqa: E402
from baselines.elr import (  # noqa: E402
    ORACLE_BY_NOISE,
    PRACTITIONER,
    ELRClassifier,
    cosine_lr,
    elr_loss,
    elr_regularizer,
    elr_target_update,
    oracle_config,
    step_lr,
)
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(n: int = 60, classes: int = 3, seed: int = 0):
    X, y = make_classification(n, n_features=6, n_informative=4, n_redundant=0, n_classes=classes,
                               n_clusters_per_class=1, class_sep=2.0, random_state=seed)
    return X.astype(np.float32), y


# ------------------------------------------------------------------------------------ targets and loss


def test_target_update_is_the_temporal_ensemble_formula():
    targets = torch.tensor([[0.2, 0.3, 0.5], [0.0, 0.0, 0.0]])
    probs = torch.tensor([[0.7, 0.2, 0.1], [1.0, 0.0, 0.0]])
    updated = elr_target_update(targets, probs, beta=0.7)
    # row 0: inside the clamp, already normalised: 0.7 t + 0.3 p
    assert torch.allclose(updated[0], torch.tensor([0.35, 0.27, 0.38]))
    # row 1: p clamped to [1 - 1e-4, 1e-4, 1e-4], renormalised by its sum 1 + 1e-4, then 0.3 of it
    q = torch.tensor([1 - 1e-4, 1e-4, 1e-4]) / (1 + 1e-4)
    assert torch.allclose(updated[1], 0.3 * q)
    assert not updated.requires_grad


def test_target_update_carries_no_gradient():
    logits = torch.randn(2, 3, requires_grad=True)
    updated = elr_target_update(torch.zeros(2, 3), torch.softmax(logits, 1), beta=0.9)
    assert not updated.requires_grad


def test_loss_is_cross_entropy_plus_lambda_log_one_minus_agreement():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    labels = torch.tensor([0, 2])
    targets = torch.tensor([[0.6, 0.3, 0.1], [0.1, 0.8, 0.1]])
    p = torch.softmax(logits, 1)
    expected = F.cross_entropy(logits, labels) + 3.0 * torch.log(1 - (p * targets).sum(1)).mean()
    assert torch.allclose(elr_loss(logits, labels, targets, 3.0), expected)
    assert torch.allclose(elr_loss(logits, labels, targets, 0.0), F.cross_entropy(logits, labels))


def test_the_regularizer_pulls_p_towards_the_target_even_against_the_label():
    target = torch.tensor([[0.8, 0.1, 0.1]])
    logits = torch.zeros(1, 3, requires_grad=True)
    elr_regularizer(logits, target).backward()
    assert logits.grad[0, 0] < 0 < logits.grad[0, 1]  # descent raises class 0's logit, lowers the others
    # one descent step on the whole loss, label 1 (a wrong label by the target): with lambda = 3
    # p moves towards t; with lambda = 0 (plain cross-entropy) towards the label
    for lam, towards_target in ((3.0, True), (0.0, False)):
        z = torch.zeros(1, 3, requires_grad=True)
        elr_loss(z, torch.tensor([1]), target, lam).backward()
        p_after = torch.softmax(z.detach() - 0.5 * z.grad, 1)
        assert (p_after[0, 0] > 1 / 3) == towards_target
        assert ((p_after * target).sum() > (torch.full((1, 3), 1 / 3) * target).sum()) == towards_target


# ------------------------------------------------------------------------------------ schedules


def test_step_schedule_divides_by_100_after_a_third_and_two_thirds():
    assert step_lr(39, 120, 0.02) == pytest.approx(0.02)
    assert step_lr(40, 120, 0.02) == pytest.approx(2e-4)
    assert step_lr(80, 120, 0.02) == pytest.approx(2e-6)
    assert step_lr(10, 30, 0.02) == pytest.approx(2e-4)  # 40/120 of a 30-epoch run


def test_cosine_schedule_restarts_every_period():
    assert cosine_lr(0, 150, 0.02) == pytest.approx(0.02)
    assert cosine_lr(5, 150, 0.02) == pytest.approx((0.02 + 0.001) / 2)  # halfway down a 10-epoch period
    assert cosine_lr(10, 150, 0.02) == pytest.approx(0.02)  # the warm restart
    assert cosine_lr(9, 150, 0.02) == pytest.approx(0.001 + 0.019 * (1 + math.cos(0.9 * math.pi)) / 2)


def test_oracle_and_practitioner_configurations():
    assert oracle_config("symmetric", 0.4) == {"beta": 0.7, "lam": 3.0}
    assert oracle_config("asymmetric", 0.4) == oracle_config("pairflip", 0.2) == {"beta": 0.9, "lam": 1.0}
    assert PRACTITIONER == ORACLE_BY_NOISE["symmetric"]
    est = ELRClassifier()
    assert (est.beta, est.lam) == (PRACTITIONER["beta"], PRACTITIONER["lam"])
    with pytest.raises(ValueError, match="noise"):
        oracle_config("instance", 0.3)


# ------------------------------------------------------------------------------------ the classifier


def test_fits_tiny_data_predicts_its_classes_and_is_reproducible():
    X, y = tiny()
    names = np.array(["cat", "dog", "eel"])[y]
    started = time.perf_counter()
    first = ELRClassifier(epochs=2, random_state=3).fit(X, names)
    assert time.perf_counter() - started < 10
    assert set(first.predict(X)) <= set(names) and list(first.classes_) == ["cat", "dog", "eel"]
    again = ELRClassifier(epochs=2, random_state=3).fit(X, names)
    np.testing.assert_array_equal(first.predict_proba(X), again.predict_proba(X))
    np.testing.assert_array_equal(first.targets_, again.targets_)
    other = ELRClassifier(epochs=2, random_state=4).fit(X, names)
    assert not np.array_equal(first.predict_proba(X), other.predict_proba(X))


def test_flags_the_rows_whose_prediction_differs_from_their_label():
    X, y = tiny()
    est = ELRClassifier(epochs=2, schedule="cosine", random_state=0).fit(X, y)
    assert est.flagged_.dtype == bool and est.flagged_.shape == (60,)
    np.testing.assert_array_equal(est.flagged_, est.predict(X) != y)
    # one batch of 60, two epochs: every target is 0.3 q1 * 0.7 + 0.3 q2, summing to 1 - 0.7^2
    assert est.targets_.shape == (60, 3)
    np.testing.assert_allclose(est.targets_.sum(1), 1 - 0.7 ** 2, rtol=1e-5)


def test_the_regularizer_keeps_the_network_off_the_flipped_labels():
    X, clean = tiny(150, seed=1)
    flipped = np.random.default_rng(0).choice(150, 45, replace=False)
    noisy = clean.copy()
    noisy[flipped] = (clean[flipped] + 1) % 3
    truly = np.isin(np.arange(150), flipped)
    elr = ELRClassifier(epochs=60, lr=0.05, batch_size=32, schedule="cosine", random_state=0).fit(X, noisy)
    assert (elr.predict(X)[truly] == noisy[truly]).mean() < 0.3  # few wrong labels learnt
    assert elr.flagged_[truly].mean() > 0.7 and truly[elr.flagged_].mean() > 0.7


def test_get_params_and_clone_keep_every_setting():
    est = ELRClassifier("mlp", beta=0.9, lam=1.0, schedule="cosine", width=4, random_state=1)
    params = clone(est).get_params()
    assert (params["beta"], params["lam"], params["schedule"], params["width"]) == (0.9, 1.0, "cosine", 4)
    assert {"model", "input_shape", "augment", "device", "epochs", "min_examples", "lr", "momentum",
            "weight_decay", "batch_size"} <= set(params)


@pytest.mark.parametrize("name, value", [("beta", 1.0), ("beta", -0.5), ("lam", -1.0), ("lam", float("inf")),
                                         ("schedule", "linear"), ("epochs", 0), ("lr", -0.02),
                                         ("momentum", 1.0), ("weight_decay", -1e-3), ("batch_size", 0),
                                         ("optimizer", "adam")])
def test_bad_parameters_name_themselves(name, value):
    X, y = tiny()
    with pytest.raises(ValueError, match=name):
        ELRClassifier(epochs=1, random_state=0).set_params(**{name: value}).fit(X, y)


def test_the_optimizer_is_the_one_named(monkeypatch):
    """optimizer="adamw" trains with AdamW at lr (momentum unused), "sgd" with SGD and momentum."""
    import baselines.networks as networks

    made = []
    real = networks.new_optimizer
    monkeypatch.setattr(elr_module, "new_optimizer", lambda *a: made.append(real(*a)) or made[-1])
    X, y = tiny()
    for name, kind in (("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)):
        ELRClassifier(epochs=1, optimizer=name, lr=0.003, random_state=0).fit(X, y)
        assert type(made[-1]) is kind and made[-1].defaults["lr"] == 0.003
    assert made[-1].defaults["momentum"] == 0.9
