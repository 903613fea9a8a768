"""Turning K teachers into labels: plurality vote, random teacher (per example / batch / epoch),
summed logits, mean probability."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rolemodels.method.combine import (
    mean_probability,
    per_batch_teacher_targets,
    per_epoch_teacher_targets,
    plurality_vote,
    random_teacher_draws,
    random_teacher_labels,
    summed_logits_labels,
    vote_counts,
    vote_shares,
)

FAST = settings(max_examples=40, deadline=None)


def labels(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.uint8)


def naive_vote(rows: list[list[int]], num_classes: int, prob_sum: list[list[float]] | None = None) -> list[int]:
    """Reference: count by hand; among the most-voted classes take the largest prob_sum, then the lowest index."""
    out = []
    for i, row in enumerate(rows):
        counts = [0] * num_classes
        for label in row:
            counts[label] += 1
        best = max(counts)
        tied = [c for c in range(num_classes) if counts[c] == best]
        if prob_sum is not None:
            top = max(prob_sum[i][c] for c in tied)
            tied = [c for c in tied if prob_sum[i][c] == top]
        out.append(min(tied))
    return out


# ----------------------------------------------------------------------------- vote counts


def test_vote_counts_by_hand():
    counts = vote_counts(labels([[0, 0, 2], [1, 2, 1], [3, 3, 3]]), 4)
    assert counts.dtype == torch.int64
    assert counts.tolist() == [[2, 0, 1, 0], [0, 2, 1, 0], [0, 0, 0, 3]]


def test_vote_counts_accepts_int64_and_rows_sum_to_k():
    tl = torch.randint(5, (50, 7), generator=torch.Generator().manual_seed(0))
    counts = vote_counts(tl, 5)
    assert counts.shape == (50, 5)
    assert (counts.sum(1) == 7).all()
    for i in range(50):
        for c in range(5):
            assert counts[i, c] == int((tl[i] == c).sum())


def test_vote_shares_are_fractions():
    shares = vote_shares(labels([[0, 0, 1, 2]]), 3)
    assert shares.dtype == torch.float32
    assert shares.tolist() == [[0.5, 0.25, 0.25]]


def test_vote_shares_in_float64_are_counts_over_k_as_numpy_divides():
    # diagnostics' float64 numbers were numpy's integer counts / K: the same bits, for every K.
    for k in (3, 22, 25, 100):
        tl = torch.randint(7, (400, k), generator=torch.Generator().manual_seed(k)).to(torch.uint8)
        shares = vote_shares(tl, 7, dtype=torch.float64)
        counts = np.stack([np.bincount(row, minlength=7) for row in tl.numpy()])
        assert shares.dtype == torch.float64 and np.array_equal(shares.numpy(), counts / k)


# ----------------------------------------------------------------------------- plurality vote


def test_plurality_vote_by_hand():
    tl = labels([[0, 0, 1], [2, 1, 2], [3, 3, 3], [4, 0, 4]])
    vote = plurality_vote(tl, 5)
    assert vote.dtype == torch.int64
    assert vote.tolist() == [0, 2, 3, 4]


def test_plurality_not_majority():
    # 2 of 5 votes is no majority but is the plurality
    assert plurality_vote(labels([[1, 1, 2, 3, 4]]), 5).tolist() == [1]


def test_tie_without_prob_sum_goes_to_lowest_class():
    assert plurality_vote(labels([[3, 1]]), 5).tolist() == [1]
    assert plurality_vote(labels([[2, 0, 0, 2]]), 5).tolist() == [0]
    assert plurality_vote(labels([[4, 3, 2, 1]]), 5).tolist() == [1]


def test_tie_broken_by_prob_sum():
    tl = labels([[0, 1], [0, 1]])
    prob_sum = torch.tensor([[0.3, 1.2, 0.5], [1.1, 0.6, 0.3]])
    assert plurality_vote(tl, 3, prob_sum).tolist() == [1, 0]
    assert plurality_vote(tl, 3).tolist() == [0, 0]


def test_tie_break_only_among_tied_classes():
    # classes 0 and 1 tie with 2 votes; class 2 (1 vote) has by far the largest probability sum
    tl = labels([[0, 0, 1, 1, 2]])
    prob_sum = torch.tensor([[0.5, 1.0, 3.5]])
    assert plurality_vote(tl, 3, prob_sum).tolist() == [1]


@pytest.mark.parametrize("extreme", [5.0, 1e3, 1e30, float("inf")])
def test_tie_break_never_overrides_a_strict_majority(extreme):
    # class 0 wins 2 to 1; class 1 gets an extreme probability sum, class 0 none (or negative)
    tl = labels([[0, 0, 1], [1, 0, 0]])
    prob_sum = torch.tensor([[0.0, extreme, 0.0], [-extreme, extreme, 0.0]])
    assert plurality_vote(tl, 3, prob_sum).tolist() == [0, 0]


def test_tie_break_with_largest_possible_prob_sum_still_loses_by_one_vote():
    # K=9: 5 votes vs 4 votes; the loser's prob_sum is K (everything), the winner's 0
    tl = labels([[0] * 5 + [1] * 4])
    prob_sum = torch.tensor([[0.0, 9.0]])
    assert plurality_vote(tl, 2, prob_sum).tolist() == [0]


def test_vote_equals_naive_reference_on_seeded_random_inputs():
    rng = random.Random(1)
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        n, k, c = rng.randint(1, 40), rng.randint(1, 8), rng.randint(2, 6)
        logits = torch.randn(k, n, c, generator=gen) * 3
        tl = logits.argmax(2).T.to(torch.uint8).contiguous()  # labels as teachers would give them
        prob_sum = torch.softmax(logits, 2).sum(0)
        rows = tl.tolist()
        assert plurality_vote(tl, c).tolist() == naive_vote(rows, c)
        assert plurality_vote(tl, c, prob_sum).tolist() == naive_vote(rows, c, prob_sum.double().tolist())


@FAST
@given(st.integers(1, 6), st.integers(2, 5), st.data())
def test_vote_equals_naive_reference_hypothesis(k, c, data):
    n = data.draw(st.integers(1, 12))
    rows = data.draw(st.lists(st.lists(st.integers(0, c - 1), min_size=k, max_size=k), min_size=n, max_size=n))
    # probability sums on a coarse grid so ties in prob_sum happen too
    probs = data.draw(st.lists(st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0]), min_size=c, max_size=c),
                               min_size=n, max_size=n))
    probs = [[p * k / c for p in row] for row in probs]  # within [0, K]
    tl = torch.tensor(rows, dtype=torch.uint8)
    assert plurality_vote(tl, c).tolist() == naive_vote(rows, c)
    assert plurality_vote(tl, c, torch.tensor(probs, dtype=torch.float64)).tolist() == naive_vote(rows, c, probs)


@FAST
@given(st.integers(1, 7), st.integers(2, 5), st.data())
def test_vote_is_always_a_most_voted_class(k, c, data):
    rows = data.draw(st.lists(st.lists(st.integers(0, c - 1), min_size=k, max_size=k), min_size=1, max_size=8))
    probs = data.draw(st.lists(st.lists(st.floats(-1e6, 1e6), min_size=c, max_size=c),
                               min_size=len(rows), max_size=len(rows)))
    vote = plurality_vote(torch.tensor(rows), c, torch.tensor(probs)).tolist()
    for row, v in zip(rows, vote):
        assert row.count(v) == max(row.count(x) for x in range(c))


# ----------------------------------------------------------------------------- random teacher per example


def distinct_teacher_labels(n: int, k: int, c: int) -> torch.Tensor:
    """labels[i, t] = (i + t) mod c: the K teachers of each example disagree, so a label names its teacher."""
    assert k <= c
    return ((torch.arange(n)[:, None] + torch.arange(k)[None, :]) % c).to(torch.uint8)


def teacher_of(tl: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """Which column of tl each chosen label came from (columns must differ within each row)."""
    match = tl.long() == chosen.long()[:, None]
    assert (match.sum(1) == 1).all(), "a label is not one of its example's teachers' labels"
    return match.long().argmax(1)


def test_random_teacher_label_is_one_of_that_examples_teachers():
    tl = distinct_teacher_labels(300, 4, 10)
    out = random_teacher_labels(tl, seed=3)
    assert out.dtype == torch.int64 and out.shape == (300,)
    for i in range(300):
        assert int(out[i]) in tl[i].tolist()


def test_random_teacher_is_reproducible_by_seed():
    tl = distinct_teacher_labels(500, 5, 10)
    assert torch.equal(random_teacher_labels(tl, 11), random_teacher_labels(tl, 11))
    assert not torch.equal(random_teacher_labels(tl, 11), random_teacher_labels(tl, 12))


def test_random_teacher_with_one_teacher_is_that_teacher():
    tl = torch.randint(10, (100, 1), generator=torch.Generator().manual_seed(0)).to(torch.uint8)
    assert torch.equal(random_teacher_labels(tl, 5), tl[:, 0].long())


def test_random_teacher_independent_per_example_with_two_disagreeing_teachers():
    n = 20000
    tl = torch.stack([torch.zeros(n), torch.ones(n)], 1).to(torch.uint8)  # teacher 0 says 0, teacher 1 says 1
    picks = random_teacher_labels(tl, seed=0)  # label == teacher index
    sigma = math.sqrt(0.25 / n)
    assert abs((picks == 0).double().mean().item() - 0.5) < 5 * sigma
    # consecutive examples: same teacher half the time (independent), not always (per batch)
    same_next = (picks[1:] == picks[:-1]).double().mean().item()
    assert abs(same_next - 0.5) < 5 * math.sqrt(0.25 / (n - 1))
    # lag-1 correlation near zero
    x = picks.double() - picks.double().mean()
    corr = (x[1:] * x[:-1]).mean() / x.var(unbiased=False)
    assert abs(corr.item()) < 0.04
    # every batch of 256 consecutive examples mixes both teachers
    for batch in picks.split(256):
        assert 0 < int(batch.sum()) < len(batch)


def test_random_teacher_from_a_generator_draws_what_its_seed_draws():
    tl = distinct_teacher_labels(1000, 5, 10)
    generator = torch.Generator().manual_seed(7)
    first, second = random_teacher_labels(tl, generator), random_teacher_labels(tl, generator)
    assert torch.equal(first, random_teacher_labels(tl, 7))
    assert not torch.equal(first, second)  # the generator advanced
    reference = torch.Generator().manual_seed(7)
    torch.randint(5, (1000,), generator=reference)  # the first call's draws
    assert torch.equal(second, tl[torch.arange(1000), torch.randint(5, (1000,), generator=reference)].long())
    assert torch.equal(random_teacher_draws(1000, 5, torch.Generator().manual_seed(3)),
                       random_teacher_draws(1000, 5, 3))


def test_random_teacher_from_a_generator_draws_what_the_theory_drew():
    # theory.py drew one [N, 1] randint and gathered: same stream, same labels, same next draw.
    votes = torch.randint(10, (600, 5), generator=torch.Generator().manual_seed(1))
    old, new = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    pick = torch.randint(votes.shape[1], (votes.shape[0], 1), generator=old)
    assert torch.equal(random_teacher_labels(votes, new), votes.gather(1, pick).squeeze(1))
    assert torch.equal(torch.rand(3, generator=old), torch.rand(3, generator=new))


def test_random_teacher_from_a_generator_picks_each_teacher_equally_often():
    g = torch.Generator().manual_seed(5)
    picks = random_teacher_labels(torch.tensor([[0, 1, 2]]).expand(30000, -1), g)
    share = torch.bincount(picks, minlength=3).double() / 30000
    assert torch.allclose(share, torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.012)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_teacher_is_uniform_over_teachers(seed):
    n, k = 10000, 5
    tl = distinct_teacher_labels(n, k, 10)
    who = teacher_of(tl, random_teacher_labels(tl, seed))
    counts = torch.bincount(who, minlength=k).double()
    expected = n / k
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 18.47  # chi-square, 4 degrees of freedom, p = 0.001


# ----------------------------------------------------------------------------- random teacher per batch


def test_per_batch_one_teacher_labels_the_whole_batch_and_all_teachers_occur():
    n, k = 200, 4
    tl = distinct_teacher_labels(n, k, 10)
    targets = per_batch_teacher_targets(tl, seed=0)
    gen = torch.Generator().manual_seed(5)
    drawn = []
    for call in range(200):
        idx = torch.randperm(n, generator=gen)[:32]
        y = targets(idx, epoch=call // 10)
        assert y.dtype == torch.int64
        who = teacher_of(tl[idx], y)
        assert (who == who[0]).all(), "a batch mixes teachers"
        assert torch.equal(y, tl[idx, int(who[0])].long())
        drawn.append(int(who[0]))
    counts = np.bincount(drawn, minlength=k)
    assert (counts > 0).all()
    assert counts.max() < 200 * 0.5  # not stuck on one teacher
    assert len({tuple(drawn[i:i + 5]) for i in range(0, 200, 5)}) > 10  # the sequence varies


def test_per_batch_draw_sequence_is_fixed_by_seed():
    tl = distinct_teacher_labels(64, 5, 10)
    idx = torch.arange(16)
    a = per_batch_teacher_targets(tl, seed=7)
    b = per_batch_teacher_targets(tl, seed=7)
    c = per_batch_teacher_targets(tl, seed=8)
    seq_a = [teacher_of(tl[idx], a(idx, 0))[0].item() for _ in range(40)]
    seq_b = [teacher_of(tl[idx], b(idx, 0))[0].item() for _ in range(40)]
    seq_c = [teacher_of(tl[idx], c(idx, 0))[0].item() for _ in range(40)]
    assert seq_a == seq_b
    assert seq_a != seq_c


# ----------------------------------------------------------------------------- random teacher per epoch


def test_per_epoch_same_epoch_same_labels_and_independent_of_batching():
    n, k = 500, 3
    tl = distinct_teacher_labels(n, k, 10)
    targets = per_epoch_teacher_targets(tl, seed=4)
    idx = torch.arange(n)
    first = targets(idx, 2)
    assert torch.equal(first, targets(idx, 2))
    # the label of an example does not depend on which batch asks for it
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    parts = torch.cat([targets(part, 2) for part in perm.split(37)])
    assert torch.equal(parts, first[perm])
    # and each is one of its own teachers' labels
    teacher_of(tl, first)


def test_per_epoch_different_epochs_redraw():
    n = 4000
    tl = torch.stack([torch.zeros(n), torch.ones(n)], 1).to(torch.uint8)
    targets = per_epoch_teacher_targets(tl, seed=0)
    idx = torch.arange(n)
    epochs = [targets(idx, e) for e in range(4)]
    sigma = math.sqrt(0.25 / n)
    for e in range(3):
        changed = (epochs[e] != epochs[e + 1]).double().mean().item()
        assert abs(changed - 0.5) < 5 * sigma  # a fresh, independent draw for each example
    for y in epochs:
        assert abs(y.double().mean().item() - 0.5) < 5 * sigma


# ----------------------------------------------------------------------------- logits


def test_summed_logits_labels_by_hand():
    logits = torch.tensor([
        [[1.0, 2.0, 0.0], [0.0, 0.0, 5.0]],   # teacher 0
        [[3.0, 0.5, 0.0], [2.0, 2.0, -4.0]],  # teacher 1
    ])  # sums: [4, 2.5, 0] -> 0;  [2, 2, 1] -> 0 (tie, first)
    out = summed_logits_labels(logits)
    assert out.dtype == torch.int64
    assert out.tolist() == [0, 0]
    assert summed_logits_labels(logits.half()).tolist() == [0, 0]


def test_mean_probability_by_hand():
    logits = torch.tensor([[[0.0, math.log(3.0)]], [[math.log(4.0), 0.0]]])  # K=2, N=1, C=2
    # teacher 0: softmax = [1/4, 3/4]; teacher 1: [4/5, 1/5]
    expected = [(1 / 4 + 4 / 5) / 2, (3 / 4 + 1 / 5) / 2]
    out = mean_probability(logits)
    assert out.dtype == torch.float32 and out.shape == (1, 2)
    assert out[0].tolist() == pytest.approx(expected, abs=1e-6)


def test_mean_probability_rows_sum_to_one():
    logits = torch.randn(4, 30, 7, generator=torch.Generator().manual_seed(0)) * 10
    assert (mean_probability(logits).sum(1) - 1).abs().max().item() < 1e-5


def test_summed_logits_and_vote_can_disagree():
    # two teachers mildly prefer class 1, one is very confident in class 0
    logits = torch.tensor([[[0.0, 1.0]], [[0.0, 1.0]], [[10.0, 0.0]]])
    teacher_labels = logits.argmax(2).T.to(torch.uint8)
    assert teacher_labels.tolist() == [[1, 1, 0]]
    assert plurality_vote(teacher_labels, 2, torch.softmax(logits, 2).sum(0)).tolist() == [1]
    assert summed_logits_labels(logits).tolist() == [0]
    # the mean probability follows the confident teacher here as well
    assert mean_probability(logits).argmax(1).tolist() == [0]
