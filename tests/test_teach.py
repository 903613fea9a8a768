"""Teachers' training subsets; labelling a pool chunk by chunk; summed softmaxes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rolemodels.errors import UserError
from rolemodels.method.teach import label_pool, softmax_sum, teacher_subsets

# ----------------------------------------------------------------------------- teacher subsets


def test_same_gives_every_teacher_everything():
    subsets = teacher_subsets(13, 4, "same", 0.5, seed=0)
    assert len(subsets) == 4
    for s in subsets:
        assert s.dtype == torch.int64
        assert s.tolist() == list(range(13))


@pytest.mark.parametrize("n, k", [(10, 3), (12, 4), (7, 7), (100, 6), (5, 1)])
def test_disjoint_partitions_range_with_sizes_within_one(n, k):
    subsets = teacher_subsets(n, k, "disjoint", 0.5, seed=1)
    assert len(subsets) == k
    everything = torch.cat(subsets).tolist()
    assert sorted(everything) == list(range(n))  # a partition: no repeats, nothing missing
    sizes = [len(s) for s in subsets]
    assert max(sizes) - min(sizes) <= 1
    for s in subsets:
        assert s.dtype == torch.int64
        assert s.tolist() == sorted(s.tolist())


def test_disjoint_is_a_random_split_not_contiguous_blocks():
    subsets = teacher_subsets(100, 4, "disjoint", 0.5, seed=0)
    blocks = [list(range(25 * i, 25 * (i + 1))) for i in range(4)]
    assert [s.tolist() for s in subsets] != blocks


def test_disjoint_with_more_teachers_than_examples_is_a_user_error():
    with pytest.raises(UserError, match="disjoint"):
        teacher_subsets(3, 5, "disjoint", 0.5, seed=0)


@pytest.mark.parametrize("n, overlap, size", [(100, 0.5, 50), (10, 0.3, 3), (10, 1.0, 10), (10, 0.01, 1), (7, 0.6, 4)])
def test_overlap_sizes_and_no_repeats(n, overlap, size):
    subsets = teacher_subsets(n, 5, "overlap", overlap, seed=2)
    assert len(subsets) == 5
    for s in subsets:
        values = s.tolist()
        assert len(values) == size
        assert len(set(values)) == size  # without replacement
        assert all(0 <= v < n for v in values)
        assert values == sorted(values)


def test_overlap_subsets_differ_between_teachers():
    subsets = teacher_subsets(100, 4, "overlap", 0.5, seed=3)
    as_sets = [frozenset(s.tolist()) for s in subsets]
    assert len(set(as_sets)) == 4
    # independent halves share about a quarter of the data, neither nothing nor everything
    shared = len(as_sets[0] & as_sets[1])
    assert 10 < shared < 45


def test_bootstrap_draws_n_with_replacement():
    n = 200
    subsets = teacher_subsets(n, 3, "bootstrap", 0.5, seed=4)
    for s in subsets:
        values = s.tolist()
        assert len(values) == n
        assert all(0 <= v < n for v in values)
        assert values == sorted(values)
        distinct = len(set(values))
        # with replacement: repeats occur; about 1 - 1/e = 63% are distinct
        assert distinct < n
        assert 0.55 * n < distinct < 0.71 * n
    assert not torch.equal(subsets[0], subsets[1])


@pytest.mark.parametrize("mode", ["overlap", "disjoint", "bootstrap"])
def test_subsets_reproducible_by_seed(mode):
    a = teacher_subsets(50, 3, mode, 0.4, seed=9)
    b = teacher_subsets(50, 3, mode, 0.4, seed=9)
    c = teacher_subsets(50, 3, mode, 0.4, seed=10)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_unknown_mode_is_a_user_error():
    with pytest.raises(UserError, match="same, overlap, disjoint, bootstrap"):
        teacher_subsets(10, 2, "halves", 0.5, seed=0)


# ----------------------------------------------------------------------------- label_pool


# 4 features -> 3 classes. Weights and inputs are multiples of 1/8 and 1/16 with few bits, so every
# product and sum is exact in float32: a chunk's logits equal the whole pool's in any summation
# order, on any processor's kernels, and the comparisons below are exact by construction.
W = torch.tensor([[1.0, -2.0, 0.5], [0.375, 1.0, -1.0], [-0.75, 0.25, 2.0], [1.5, -0.5, 0.125]])


def dyadic(x: torch.Tensor) -> torch.Tensor:
    return (x * 16).round() / 16


def linear_predict(xb: torch.Tensor) -> torch.Tensor:
    return dyadic(xb.float()) @ W


@pytest.mark.parametrize("chunk", [1, 3, 7, 23, 1000])
def test_label_pool_in_chunks_equals_one_shot(chunk):
    x = torch.randn(23, 4, generator=torch.Generator().manual_seed(0))
    full = linear_predict(x)
    labels, logits = label_pool(linear_predict, x, chunk=chunk)
    assert labels.dtype == np.uint8 and labels.shape == (23,)
    assert logits.dtype == np.float16 and logits.shape == (23, 3)
    np.testing.assert_array_equal(labels, full.argmax(1).numpy())
    np.testing.assert_array_equal(logits, full.numpy().astype(np.float16))


def test_label_pool_counts_each_example_once():
    calls = []

    def predict(xb):
        calls.append(len(xb))
        return linear_predict(xb)

    label_pool(predict, torch.randn(10, 4), chunk=4)
    assert calls == [4, 4, 2]


@pytest.mark.filterwarnings("ignore:The given NumPy array is not writable")
def test_label_pool_reads_numpy_and_memmap(tmp_path):
    x = np.random.default_rng(0).standard_normal((11, 4)).astype(np.float32)
    path = tmp_path / "pool.npy"
    np.save(path, x)
    mapped = np.load(path, mmap_mode="r")
    labels, logits = label_pool(linear_predict, mapped, chunk=5)
    expected = linear_predict(torch.from_numpy(x))
    np.testing.assert_array_equal(labels, expected.argmax(1).numpy())
    np.testing.assert_array_equal(logits, expected.numpy().astype(np.float16))


def test_label_pool_writes_into_given_arrays():
    x = torch.randn(9, 4, generator=torch.Generator().manual_seed(1))
    labels_out = np.full(9, 255, dtype=np.uint8)
    logits_out = np.zeros((9, 3), dtype=np.float16)
    labels, logits = label_pool(linear_predict, x, chunk=4, labels_out=labels_out, logits_out=logits_out)
    assert labels is labels_out and logits is logits_out
    np.testing.assert_array_equal(labels_out, linear_predict(x).argmax(1).numpy())
    np.testing.assert_array_equal(logits_out, linear_predict(x).numpy().astype(np.float16))


def test_label_pool_with_only_labels_out():
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(2))
    labels_out = np.zeros(6, dtype=np.uint8)
    labels, logits = label_pool(linear_predict, x, chunk=4, labels_out=labels_out)
    np.testing.assert_array_equal(labels_out, linear_predict(x).argmax(1).numpy())
    assert logits.shape == (6, 3)


def test_label_pool_of_empty_pool_is_a_user_error():
    with pytest.raises(UserError, match="empty"):
        label_pool(linear_predict, torch.zeros(0, 4))


# ----------------------------------------------------------------------------- softmax_sum


def naive_softmax(row: list[float]) -> list[float]:
    m = max(row)
    e = [np.exp(v - m) for v in row]
    return [v / sum(e) for v in e]


@pytest.mark.parametrize("chunk", [1, 4, 1000])
def test_softmax_sum_equals_sum_of_softmaxes(chunk):
    rng = np.random.default_rng(0)
    logits = [(rng.standard_normal((9, 5)) * 4).astype(np.float16) for _ in range(3)]
    out = softmax_sum(logits, chunk=chunk)
    assert out.dtype == torch.float32 and out.shape == (9, 5)
    for i in range(9):
        expected = np.sum([naive_softmax(t[i].astype(np.float64).tolist()) for t in logits], axis=0)
        np.testing.assert_allclose(out[i].numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.sum(1).numpy(), np.full(9, 3.0), rtol=1e-5)


def test_softmax_sum_of_one_teacher_is_its_softmax():
    logits = np.array([[0.0, np.log(3.0)], [100.0, 0.0]], dtype=np.float32)
    out = softmax_sum([logits])
    np.testing.assert_allclose(out.numpy(), [[0.25, 0.75], [1.0, 0.0]], atol=1e-6)


def test_online_teacher_labels_follow_the_inputs():
    """Online labels are the teachers' answers on the batch given (e.g. after augmentation)."""
    import torch.nn as nn

    from rolemodels.method.teach import OnlineTeacherLabels

    class Fixed(nn.Module):  # a teacher that always answers `label`, with a margin
        def __init__(self, label, scale=1.0):
            super().__init__()
            self.label, self.scale = label, scale

        def forward(self, x):
            logits = torch.zeros(len(x), 4)
            logits[:, self.label] = self.scale
            return logits

    teachers = [Fixed(0), Fixed(1), Fixed(1, 0.1)]
    idx, x = torch.arange(6), torch.zeros(6, 3)
    assert OnlineTeacherLabels(teachers, "vote", 0, 4)(idx, 0, x).tolist() == [1] * 6
    assert OnlineTeacherLabels(teachers, "sum_logits", 0, 4)(idx, 0, x).tolist() == [1] * 6
    assert OnlineTeacherLabels([Fixed(0, 5.0), Fixed(1), Fixed(1)], "sum_logits", 0, 4)(idx, 0, x).tolist() == [0] * 6
    per_batch = OnlineTeacherLabels(teachers[:2], "batch", 0, 4)
    batches = [per_batch(idx, 0, x) for _ in range(40)]
    assert all(len(set(b.tolist())) == 1 for b in batches)  # one teacher for the whole batch
    assert {b[0].item() for b in batches} == {0, 1}  # ... drawn anew for each batch
    per_example = OnlineTeacherLabels(teachers[:2], "example", 0, 4)(torch.arange(400), 0, torch.zeros(400, 3))
    assert 150 < int((per_example == 0).sum()) < 250
