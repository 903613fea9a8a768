"""Accuracy, noise replication, confusion and summaries over seeds."""
from __future__ import annotations

import math
import statistics

import pytest
import torch

from rolemodels.method.metrics import accuracy, confusion, noise_replication, summarize

C = 10
PARTNER = (torch.arange(C) + 5) % C  # the paper's noise: c -> (c + 5) mod 10


def balanced_labels(per_class: int) -> torch.Tensor:
    return torch.arange(C).repeat_interleave(per_class)


# ----------------------------------------------------------------------------- accuracy


def test_accuracy_by_hand():
    assert accuracy(torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 0, 0])) == 0.5
    assert accuracy(torch.tensor([1, 1, 1]), torch.tensor([1, 1, 1])) == 1.0
    assert accuracy(torch.tensor([0, 0, 0]), torch.tensor([1, 1, 1])) == 0.0
    assert accuracy(torch.tensor([2, 0, 1]), torch.tensor([2, 2, 2])) == pytest.approx(1 / 3)


def test_accuracy_mixed_dtypes():
    pred = torch.tensor([3, 4, 5], dtype=torch.uint8)
    assert accuracy(pred, torch.tensor([3, 4, 6])) == pytest.approx(2 / 3)


def test_accuracy_of_empty_is_nan():
    assert math.isnan(accuracy(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)))


# ----------------------------------------------------------------------------- noise replication


def test_perfect_classifier_replicates_no_noise():
    labels = balanced_labels(20)
    assert noise_replication(labels.clone(), labels, PARTNER) == 0.0


def test_always_predicting_the_partner_replicates_fully():
    labels = balanced_labels(20)
    assert noise_replication(PARTNER[labels], labels, PARTNER) == 1.0


def test_exact_twenty_percent_sampler_scores_point_two():
    per_class = 50  # 10 of each class predicted as the partner, 40 correct
    labels = balanced_labels(per_class)
    pred = labels.clone()
    for c in range(C):
        rows = torch.nonzero(labels == c).flatten()
        pred[rows[:10]] = PARTNER[c]
    assert noise_replication(pred, labels, PARTNER) == pytest.approx(0.2)
    assert accuracy(pred, labels) == pytest.approx(0.8)


def test_errors_to_other_classes_are_not_replication():
    labels = balanced_labels(10)
    pred = (labels + 1) % C  # always wrong, never the partner
    assert noise_replication(pred, labels, PARTNER) == 0.0


def test_average_is_over_classes_not_examples():
    # class 0: 2 examples, both replicated (rate 1); class 1: 8 examples, none (rate 0)
    labels = torch.tensor([0, 0] + [1] * 8)
    partner = torch.tensor([1, 0])
    pred = torch.tensor([1, 1] + [1] * 8)
    assert noise_replication(pred, labels, partner) == pytest.approx(0.5)  # per example it would be 0.2


def test_classes_with_partner_itself_are_excluded():
    # class 2 maps to itself (no noise); class 0 <-> 1 swap
    partner = torch.tensor([1, 0, 2])
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 2, 2])
    pred = torch.tensor([1, 0, 0, 0, 2, 2, 2, 2])
    # class 0: 1/2, class 1: 2/2; class 2 would count 4/4 if (wrongly) included
    assert noise_replication(pred, labels, partner) == pytest.approx(0.75)


def test_absent_classes_are_excluded_and_no_class_gives_nan():
    labels = torch.tensor([0, 0, 0])
    pred = torch.tensor([5, 0, 0])
    assert noise_replication(pred, labels, PARTNER) == pytest.approx(1 / 3)
    assert math.isnan(noise_replication(torch.tensor([1]), torch.tensor([1]), torch.tensor([0, 1])))


def test_partner_given_as_list():
    labels = torch.tensor([0, 1])
    assert noise_replication(torch.tensor([1, 0]), labels, [1, 0]) == 1.0


# ----------------------------------------------------------------------------- confusion


def test_confusion_by_hand():
    pred = torch.tensor([0, 1, 1, 2, 0])
    labels = torch.tensor([0, 1, 0, 2, 2])
    expected = [[1, 1, 0], [0, 1, 0], [1, 0, 1]]
    out = confusion(pred, labels, 3)
    assert out.dtype == torch.int64
    assert out.tolist() == expected


def test_confusion_equals_naive_loop():
    gen = torch.Generator().manual_seed(0)
    for c, n in [(2, 1), (3, 50), (10, 500), (7, 0)]:
        labels = torch.randint(c, (n,), generator=gen)
        pred = torch.randint(c, (n,), generator=gen).to(torch.uint8)
        naive = [[0] * c for _ in range(c)]
        for t, p in zip(labels.tolist(), pred.tolist()):
            naive[t][p] += 1
        out = confusion(pred, labels, c)
        assert out.shape == (c, c)
        assert out.tolist() == naive


def test_confusion_agrees_with_accuracy_and_replication():
    gen = torch.Generator().manual_seed(1)
    labels = torch.randint(C, (400,), generator=gen)
    pred = torch.where(torch.rand(400, generator=gen) < 0.3, PARTNER[labels], labels)
    m = confusion(pred, labels, C).double()
    assert m.trace().item() / 400 == pytest.approx(accuracy(pred, labels))
    per_class = [m[c, PARTNER[c]].item() / m[c].sum().item() for c in range(C)]
    assert noise_replication(pred, labels, PARTNER) == pytest.approx(sum(per_class) / C)


# ----------------------------------------------------------------------------- summarize


def test_summarize_mean_and_sample_std():
    values = [0.8, 0.9, 0.7, 0.85]
    s = summarize(values)
    assert s["mean"] == pytest.approx(statistics.mean(values))
    assert s["std"] == pytest.approx(statistics.stdev(values))  # n - 1 in the denominator
    assert s["std"] != pytest.approx(statistics.pstdev(values))
    assert s["values"] == values


def test_summarize_by_hand():
    s = summarize([1, 3])
    assert s["mean"] == 2.0
    assert s["std"] == pytest.approx(math.sqrt(2.0))  # ((1)^2 + (1)^2) / (2 - 1)
    assert all(isinstance(v, float) for v in s["values"])


def test_summarize_single_value_has_zero_std():
    assert summarize([0.42]) == {"mean": 0.42, "std": 0.0, "values": [0.42]}


def test_summarize_skips_nan_but_keeps_it_in_values():
    s = summarize([1.0, float("nan"), 3.0])
    assert s["mean"] == 2.0
    assert s["std"] == pytest.approx(math.sqrt(2.0))
    assert len(s["values"]) == 3 and math.isnan(s["values"][1])


def test_summarize_all_nan_or_empty():
    s = summarize([float("nan"), float("nan")])
    assert math.isnan(s["mean"]) and math.isnan(s["std"])
    e = summarize([])
    assert math.isnan(e["mean"]) and math.isnan(e["std"]) and e["values"] == []


def test_summarize_one_finite_value_among_nans_has_zero_std():
    s = summarize([float("nan"), 5.0])
    assert s["mean"] == 5.0 and s["std"] == 0.0
