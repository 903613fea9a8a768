"""Co-teaching (experiments/baselines/coteaching.py): its pieces on small cases with known answers
(the small-loss selection, the exchange, the schedules), and end-to-end fits on tiny data."""
from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

pytest.importorskip("sklearn")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

from baselines.coteaching import (  # noqa: E402
    PRACTITIONER,
    CoTeachingClassifier,
    adam_plan,
    coteaching_step,
    decay_start_for,
    exchange_losses,
    forget_rate_at,
    keep_count,
    oracle_config,
    ramp_epochs_for,
    small_loss_selection,
)
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(n: int = 60, classes: int = 3, seed: int = 0):
    X, y = make_classification(n, n_features=6, n_informative=4, n_redundant=0, n_classes=classes,
                               n_clusters_per_class=1, class_sep=2.0, random_state=seed)
    return X.astype(np.float32), y


# ------------------------------------------------------------------------------------ selection


def test_small_loss_selection_picks_exactly_the_k_smallest():
    losses = torch.tensor([0.5, 0.1, 0.9, 0.3, 0.2])
    assert small_loss_selection(losses, 3).tolist() == [1, 4, 3]
    assert small_loss_selection(losses, 5).tolist() == [1, 4, 3, 0, 2]
    random = torch.rand(200, generator=torch.Generator().manual_seed(0))
    chosen = small_loss_selection(random, 37)
    assert len(chosen) == 37 and len(set(chosen.tolist())) == 37
    assert random[chosen].max() < random[np.setdiff1d(np.arange(200), chosen.numpy())].min()


def test_small_loss_selection_breaks_ties_by_row():
    assert small_loss_selection(torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0]), 3).tolist() == [1, 3, 0]


def test_keep_count_as_the_official_code_counts_but_never_zero():
    assert keep_count(128, 0.0) == 128
    assert keep_count(128, 0.4) == 76  # int(0.6 * 128) = int(76.8)
    assert keep_count(3, 0.9) == 1  # int(0.3) would be 0: no gradient from a small last batch


# ------------------------------------------------------------------------------------ the exchange


def confident(rows: int, classes: int, right: list[int], labels: torch.Tensor) -> torch.Tensor:
    """Logits float [rows, classes], confidently right on the rows `right`, confidently wrong elsewhere."""
    logits = torch.zeros(rows, classes)
    for i in range(rows):
        logits[i, labels[i] if i in right else (labels[i] + 1) % classes] = 5.0
    return logits.requires_grad_()


def test_exchange_each_network_learns_from_the_others_selection():
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    logits_a = confident(6, 3, [0, 1], labels)  # A's small-loss rows: 0, 1
    logits_b = confident(6, 3, [2, 3], labels)  # B's: 2, 3
    loss_a, loss_b, chosen_a, chosen_b = exchange_losses(logits_a, logits_b, labels, keep=2)
    assert sorted(chosen_a.tolist()) == [0, 1] and sorted(chosen_b.tolist()) == [2, 3]
    (loss_a + loss_b).backward()
    rows_with_gradient = lambda t: torch.nonzero(t.grad.abs().sum(1)).flatten().tolist()  # noqa: E731
    assert rows_with_gradient(logits_a) == [2, 3]  # A is taught by B's picks, not by its own
    assert rows_with_gradient(logits_b) == [0, 1]
    # and the loss is the mean cross-entropy on the partner's rows
    expected_a = nn.functional.cross_entropy(logits_a[[2, 3]], labels[[2, 3]])
    assert torch.allclose(loss_a, expected_a)


def test_a_coteaching_step_updates_each_network_as_plain_training_on_the_partners_rows():
    torch.manual_seed(0)
    net_a, net_b = nn.Linear(4, 3), nn.Linear(4, 3)
    x, labels = torch.randn(10, 4), torch.randint(0, 3, (10,))
    reference_a, reference_b = copy.deepcopy(net_a), copy.deepcopy(net_b)
    opt_a, opt_b = (torch.optim.Adam(n.parameters(), lr=0.1) for n in (net_a, net_b))
    chosen_a, chosen_b = coteaching_step(net_a, net_b, opt_a, opt_b, x, labels, keep=6)
    with torch.no_grad():
        own_a = small_loss_selection(nn.functional.cross_entropy(reference_a(x), labels, reduction="none"), 6)
        own_b = small_loss_selection(nn.functional.cross_entropy(reference_b(x), labels, reduction="none"), 6)
    assert chosen_a.tolist() == own_a.tolist() and chosen_b.tolist() == own_b.tolist()
    assert set(own_a.tolist()) != set(own_b.tolist())  # the case tells the two apart
    for reference, rows, trained in ((reference_a, own_b, net_a), (reference_b, own_a, net_b)):
        opt = torch.optim.Adam(reference.parameters(), lr=0.1)
        nn.functional.cross_entropy(reference(x[rows]), labels[rows]).backward()
        opt.step()
        for p, q in zip(reference.parameters(), trained.parameters()):
            assert torch.allclose(p, q)


# ------------------------------------------------------------------------------------ schedules


def test_forget_rate_ramps_linearly_to_tau_over_tk_epochs():
    assert forget_rate_at(0, 0.4, 10) == 0.0  # R = 1: the first epoch keeps everything
    assert forget_rate_at(5, 0.4, 10) == pytest.approx(0.2)
    assert forget_rate_at(10, 0.4, 10) == pytest.approx(0.4)
    assert forget_rate_at(150, 0.4, 10) == pytest.approx(0.4)


def test_the_paper_schedule_scales_as_fractions_of_the_run():
    assert (ramp_epochs_for(200), decay_start_for(200)) == (10, 80)
    assert (ramp_epochs_for(100), decay_start_for(100)) == (5, 40)
    assert ramp_epochs_for(2) == 1  # never 0: the ramp divides by it


def test_adam_plan_decays_lr_linearly_and_drops_beta1_from_the_decay_start():
    assert adam_plan(79, 200, 1e-3, 80) == (1e-3, 0.9)
    assert adam_plan(80, 200, 1e-3, 80) == (pytest.approx(1e-3), 0.1)
    assert adam_plan(140, 200, 1e-3, 80) == (pytest.approx(0.5e-3), 0.1)
    assert adam_plan(199, 200, 1e-3, 80) == (pytest.approx(1e-3 / 120), 0.1)


def test_oracle_and_practitioner_configurations():
    assert oracle_config("symmetric", 0.4) == {"forget_rate": 0.4}
    assert oracle_config("pairflip", 0.25) == {"forget_rate": 0.25}
    assert CoTeachingClassifier().forget_rate == PRACTITIONER["forget_rate"] == 0.2
    with pytest.raises(ValueError, match="rate"):
        oracle_config("symmetric", 1.0)


# ------------------------------------------------------------------------------------ the classifier


def test_fits_tiny_data_predicts_its_classes_and_is_reproducible():
    X, y = tiny()
    names = np.array(["cat", "dog", "eel"])[y]
    started = time.perf_counter()
    first = CoTeachingClassifier(forget_rate=0.4, epochs=2, random_state=3).fit(X, names)
    assert time.perf_counter() - started < 10
    assert set(first.predict(X)) <= set(names) and list(first.classes_) == ["cat", "dog", "eel"]
    assert len(first.networks_) == 2
    again = CoTeachingClassifier(forget_rate=0.4, epochs=2, random_state=3).fit(X, names)
    np.testing.assert_array_equal(first.predict_proba(X), again.predict_proba(X))
    np.testing.assert_array_equal(first.rejected_, again.rejected_)
    other = CoTeachingClassifier(forget_rate=0.4, epochs=2, random_state=4).fit(X, names)
    assert not np.array_equal(first.predict_proba(X), other.predict_proba(X))


def test_flags_what_both_networks_rejected_in_the_last_epoch():
    X, y = tiny()
    est = CoTeachingClassifier(forget_rate=0.4, epochs=2, random_state=0).fit(X, y)
    # 2 epochs: T_k = 1, so the last epoch forgets 0.4 of its one batch of 60: each network keeps 36
    assert est.rejected_.shape == (60, 2) and est.rejected_.dtype == bool
    assert est.rejected_.sum(0).tolist() == [24, 24]
    np.testing.assert_array_equal(est.flagged_, est.rejected_.all(1))
    nothing = CoTeachingClassifier(forget_rate=0.0, epochs=2, random_state=0).fit(X, y)
    assert not nothing.flagged_.any()


def test_the_rejected_rows_are_mostly_the_flipped_ones():
    X, clean = tiny(150, seed=1)
    rng = np.random.default_rng(0)
    flipped = rng.choice(150, 30, replace=False)
    noisy = clean.copy()
    noisy[flipped] = (clean[flipped] + 1) % 3
    est = CoTeachingClassifier(forget_rate=0.2, epochs=30, lr=0.01, batch_size=32, random_state=0).fit(X, noisy)
    truly = np.isin(np.arange(150), flipped)
    assert truly[est.flagged_].mean() > 0.7  # precision; 0.2 by chance
    assert est.flagged_[truly].mean() > 0.6  # recall


def test_epochs_grow_to_see_min_examples():
    X, y = tiny()
    assert CoTeachingClassifier(epochs=1, min_examples=150, random_state=0).fit(X, y).epochs_ == 3


def test_get_params_and_clone_keep_every_setting():
    est = CoTeachingClassifier("mlp", forget_rate=0.3, epochs=7, width=4, augment="none", random_state=1)
    params = clone(est).get_params()
    assert params["forget_rate"] == 0.3 and params["epochs"] == 7 and params["width"] == 4
    assert {"model", "input_shape", "device", "lr", "batch_size", "min_examples"} <= set(params)


@pytest.mark.parametrize("name, value", [("forget_rate", 1.0), ("forget_rate", -0.1), ("forget_rate", "0.2"),
                                         ("epochs", 0), ("min_examples", -1), ("batch_size", 0), ("lr", 0.0),
                                         ("lr", float("nan"))])
def test_bad_parameters_name_themselves(name, value):
    X, y = tiny()
    with pytest.raises(ValueError, match=name):
        CoTeachingClassifier(epochs=1, random_state=0).set_params(**{name: value}).fit(X, y)
