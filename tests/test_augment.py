"""Batch crop-and-flip: against a per-image reference with the same draws, and its statistics."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rolemodels.errors import UserError
from rolemodels.training.augment import (
    apply_circular_shift,
    apply_crop_flip,
    draw_crop_flip,
    draw_shifts,
    random_crop_flip,
    random_shift,
)


def reference_crop_flip(x, top, left, flip, pad):
    """One image at a time: zero-pad, crop at (top, left), mirror if asked."""
    out = []
    for b in range(x.shape[0]):
        h, w, c = x[b].shape
        padded = torch.zeros(h + 2 * pad, w + 2 * pad, c, dtype=x.dtype)
        padded[pad : pad + h, pad : pad + w] = x[b]
        crop = padded[int(top[b]) : int(top[b]) + h, int(left[b]) : int(left[b]) + w]
        out.append(crop.flip(1) if bool(flip[b]) else crop)
    return torch.stack(out)


def images(shape, dtype=torch.uint8, seed=0):
    g = torch.Generator().manual_seed(seed)
    if dtype.is_floating_point:
        return torch.randn(shape, generator=g).to(dtype)
    return torch.randint(1, 256, shape, generator=g).to(dtype)  # no zeros: padding is visible


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.int64])
def test_matches_per_image_reference(dtype):
    x = images((64, 8, 6, 3), dtype)
    draws = draw_crop_flip(64, 4, torch.Generator().manual_seed(1))
    expected = reference_crop_flip(x, *draws, pad=4)
    torch.testing.assert_close(apply_crop_flip(x, *draws, pad=4), expected, rtol=0, atol=0)
    # the public function makes exactly those draws from the generator
    got = random_crop_flip(x, torch.Generator().manual_seed(1), pad=4)
    assert got.dtype == dtype and got.shape == x.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 6), h=st.integers(1, 7), w=st.integers(1, 7), c=st.integers(1, 3),
    pad=st.integers(0, 9), seed=st.integers(0, 2**31 - 1),
)
def test_matches_reference_for_any_shape_and_pad(b, h, w, c, pad, seed):
    x = images((b, h, w, c), seed=seed)
    draws = draw_crop_flip(b, pad, torch.Generator().manual_seed(seed))
    assert torch.equal(apply_crop_flip(x, *draws, pad=pad), reference_crop_flip(x, *draws, pad=pad))


def test_known_shift_and_flip_by_hand():
    x = torch.arange(1, 10, dtype=torch.uint8).reshape(1, 3, 3, 1)  # [[1,2,3],[4,5,6],[7,8,9]]
    # crop corner (0, 2) in the 1-padded image: shifted down by one row, left by one column
    out = apply_crop_flip(x, torch.tensor([0]), torch.tensor([2]), torch.tensor([False]), pad=1)
    assert out[0, :, :, 0].tolist() == [[0, 0, 0], [2, 3, 0], [5, 6, 0]]
    out = apply_crop_flip(x, torch.tensor([0]), torch.tensor([2]), torch.tensor([True]), pad=1)
    assert out[0, :, :, 0].tolist() == [[0, 0, 0], [0, 3, 2], [0, 6, 5]]


def test_flip_probability_is_one_half():
    n = 20000
    x = torch.tensor([0, 1], dtype=torch.uint8).reshape(1, 1, 2, 1).expand(n, 1, 2, 1)
    out = random_crop_flip(x, torch.Generator().manual_seed(0), pad=0)
    flipped = (out[:, 0, 0, 0] == 1).float()
    assert ((out[:, 0, :, 0].sum(1)) == 1).all()  # pad 0: only flips, never loses pixels
    assert abs(flipped.mean().item() - 0.5) < 4 * (0.25 / n) ** 0.5


def test_shifts_are_uniform_and_independent_per_image():
    n, pad = 18000, 4
    top, left, flip = draw_crop_flip(n, pad, torch.Generator().manual_seed(2))
    for draws in (top, left):
        counts = torch.bincount(draws, minlength=2 * pad + 1)
        assert len(counts) == 2 * pad + 1
        expected = n / (2 * pad + 1)
        assert ((counts - expected).abs() < 5 * expected**0.5).all()
    assert abs(torch.corrcoef(torch.stack([top.float(), left.float()]))[0, 1]) < 0.05


def test_rejects_bad_arguments():
    with pytest.raises(UserError, match=r"expected \[B, H, W, C\]"):
        random_crop_flip(torch.zeros(3, 32, 32), torch.Generator())
    with pytest.raises(UserError, match="pad=-1"):
        random_crop_flip(torch.zeros(2, 4, 4, 1), torch.Generator(), pad=-1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("generator_device", ["cpu", "cuda"])
def test_runs_on_cuda(generator_device):
    x = images((32, 8, 8, 3))
    g = torch.Generator(device=generator_device).manual_seed(3)
    got = random_crop_flip(x.cuda(), g, pad=2)
    assert got.device.type == "cuda"
    draws = draw_crop_flip(32, 2, torch.Generator(device=generator_device).manual_seed(3))
    assert torch.equal(got.cpu(), reference_crop_flip(x, *(d.cpu() for d in draws), pad=2))


# ----------------------------------------------------------------------------- 1-D shifts


def test_circular_shift_moves_each_signal_by_its_own_shift():
    x = torch.arange(12, dtype=torch.float32).reshape(2, 6)
    out = apply_circular_shift(x, torch.tensor([1, -2]))
    assert out[0].tolist() == [5, 0, 1, 2, 3, 4]  # right by one: the last sample comes round
    assert out[1].tolist() == [8, 9, 10, 11, 6, 7]  # left by two
    assert torch.equal(apply_circular_shift(x, torch.tensor([6, 0])), x)  # a whole turn is no shift


def test_random_shift_matches_a_per_signal_roll_and_stays_in_range():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 40, generator=torch.Generator().manual_seed(1))
    shifts = draw_shifts(64, 3, torch.Generator().manual_seed(0))
    assert shifts.min() >= -3 and shifts.max() <= 3 and len(set(shifts.tolist())) == 7  # every shift drawn
    out = random_shift(x, gen, max_shift=3)
    for b in range(64):
        assert torch.equal(out[b], torch.roll(x[b], int(shifts[b])))


def test_random_shift_of_a_rank_slice_is_the_slice_of_the_whole_batch():
    x = torch.randn(10, 40)
    whole = random_shift(x, torch.Generator().manual_seed(3), max_shift=2)
    part = random_shift(x[4:7], torch.Generator().manual_seed(3), max_shift=2, part=(4, 10))
    assert torch.equal(part, whole[4:7])


def test_random_shift_refuses_images_and_negative_shifts():
    with pytest.raises(UserError, match="expected \\[B, L\\]"):
        random_shift(torch.zeros(2, 4, 4, 1), torch.Generator())
    with pytest.raises(UserError, match="max_shift >= 0"):
        random_shift(torch.zeros(2, 4), torch.Generator(), max_shift=-1)


def test_auto_is_the_usual_augmentation_of_each_registered_network():
    from rolemodels.recipe import FitSpec

    auto = FitSpec(augment="auto", augment_size=3)
    assert auto.for_model("cnn1d").augment == "shift" and auto.for_model("cnn1d").augment_size == 3
    for name in ("cnn2d", "cnn2d_wide", "resnet18"):
        assert auto.for_model(name).augment == "crop_flip"
    assert auto.for_model("mlp").augment == "none"
    assert FitSpec(augment="shift").for_model("mlp").augment == "shift"  # an explicit choice is kept


@pytest.mark.parametrize("override, needle", [("teachers.augment=crop_flip", "teachers.augment: crop_flip augments images"),
                                              ("students.augment=crop_flip", "students.augment: crop_flip")])
def test_an_augmentation_that_does_not_fit_the_inputs_is_refused_before_any_work(tmp_path, capsys, override, needle):
    from rolemodels.cli import main

    out = tmp_path / "run"
    code = main(["run", "--quiet", "--out", str(out), "data.n_train=100", "data.n_test=50", "data.n_pool=300",
                 "data.generator=fast", f"data.cache_dir={tmp_path / 'cache'}", override])
    assert code == 2
    assert needle in capsys.readouterr().err
    assert not out.exists()
