"""Batch augmentation: random translation (a padded crop) and flip of channels-last images, the
paper's "standard augmentation"; random circular shifts of 1-D signals (MNIST-1D's own translation).

Everything is vectorised over the batch and runs on the inputs' device; no Python loop over
examples. The random draws are separate from applying them, so tests can replay them.
"""
from __future__ import annotations

from typing import Callable

import torch

from rolemodels.errors import UserError


def draw_crop_flip(
    batch: int, pad: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw per-image crop offsets and flips on the generator's device.

    Returns (top int64[B], left int64[B], flip bool[B]): the crop's corner in the image
    padded by `pad` on every side (uniform over 0 .. 2*pad, i.e. a shift of -pad .. pad),
    and whether to mirror the image left-right (probability 1/2).
    """
    device = generator.device
    top = torch.randint(0, 2 * pad + 1, (batch,), generator=generator, device=device)
    left = torch.randint(0, 2 * pad + 1, (batch,), generator=generator, device=device)
    flip = torch.randint(0, 2, (batch,), generator=generator, device=device).bool()
    return top, left, flip


def apply_crop_flip(
    x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor, pad: int
) -> torch.Tensor:
    """Crop each image of x [B, H, W, C] from its zero-padded copy at (top, left), then flip.

    out[b, i, j] = padded[b, top[b] + i, left[b] + j'] with j' = W-1-j if flip[b] else j,
    where padded[b, r, c] = x[b, r - pad, c - pad] inside the image and 0 outside.
    Same dtype and device as x.
    """
    b, h, w, _ = x.shape
    device = x.device
    top, left, flip = top.to(device), left.to(device), flip.to(device)
    cols = torch.arange(w, device=device)
    cols = torch.where(flip[:, None], w - 1 - cols, cols)  # [B, W]
    rows = torch.arange(h, device=device)[None, :] + (top - pad)[:, None]  # [B, H], source rows
    cols = cols + (left - pad)[:, None]  # [B, W], source columns
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]  # [B, H, W]
    images = torch.arange(b, device=device)[:, None, None]
    gathered = x[images, rows.clamp(0, h - 1)[:, :, None], cols.clamp(0, w - 1)[:, None, :]]  # [B, H, W, C]
    return torch.where(inside[..., None], gathered, torch.zeros((), dtype=x.dtype, device=device))


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4,
                     part: tuple[int, int] | None = None) -> torch.Tensor:
    """Randomly translate each image of x [B, H, W, C] by up to `pad` pixels (zero fill)
    and mirror it left-right with probability 1/2. Any dtype; any device (the generator
    may live on another device). Returns a new tensor shaped like x.

    part=(offset, total): x is rows offset .. offset + B of a batch of `total` images (one
    rank's slice under DistributedDataParallel); the draws are made for the whole batch, so
    each image is moved as it would be in one process and no two ranks repeat a draw."""
    if x.ndim != 4:
        raise UserError(f"random_crop_flip: images of shape {tuple(x.shape)}, expected [B, H, W, C]")
    if pad < 0:
        raise UserError(f"random_crop_flip: pad={pad}, expected pad >= 0")
    offset, total = part or (0, x.shape[0])
    top, left, flip = (d[offset:offset + x.shape[0]] for d in draw_crop_flip(total, pad, generator))
    return apply_crop_flip(x, top, left, flip, pad)


def draw_shifts(batch: int, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Per-signal shifts int64 [B], uniform over -max_shift .. max_shift, on the generator's device."""
    return torch.randint(-max_shift, max_shift + 1, (batch,), generator=generator, device=generator.device)


def apply_circular_shift(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """out[b, i] = x[b, (i - shifts[b]) mod L] for signals x [B, L]: each moved right by its shift,
    what leaves one end coming back at the other (MNIST-1D places its digits on a circle). Same
    dtype and device as x."""
    length = x.shape[1]
    source = (torch.arange(length, device=x.device)[None, :] - shifts.to(x.device)[:, None]) % length
    return torch.gather(x, 1, source)


def random_shift(x: torch.Tensor, generator: torch.Generator, max_shift: int = 2,
                 part: tuple[int, int] | None = None) -> torch.Tensor:
    """Circularly shift each signal of x [B, L] by a random -max_shift .. max_shift samples.

    part=(offset, total): as in random_crop_flip, the draws are made for the whole global batch."""
    if x.ndim != 2:
        raise UserError(f"random_shift: signals of shape {tuple(x.shape)}, expected [B, L]")
    if max_shift < 0:
        raise UserError(f"random_shift: max_shift={max_shift}, expected max_shift >= 0")
    offset, total = part or (0, x.shape[0])
    return apply_circular_shift(x, draw_shifts(total, max_shift, generator)[offset:offset + x.shape[0]])


Augmentation = Callable[..., torch.Tensor]  # (x, generator, part=None) -> augmented x, the same shape
DEFAULT_SIZES = {"crop_flip": 4, "shift": 2}


def batch_augmentation(name: str, size: int = 0) -> Augmentation | None:
    """The augmentation a recipe names (none | crop_flip | shift) at `size` (0: its default), or None."""
    if name == "none":
        return None
    if name not in DEFAULT_SIZES:
        raise UserError(f"augmentation {name!r}: choose none, {', '.join(DEFAULT_SIZES)}")
    size = size or DEFAULT_SIZES[name]
    if name == "crop_flip":
        return lambda x, generator, part=None: random_crop_flip(x, generator, pad=size, part=part)
    return lambda x, generator, part=None: random_shift(x, generator, max_shift=size, part=part)
