"""One training loop for teachers and students: batches by index, bf16 autocast, resumable.

The loop never sees where labels come from. It asks its targets for the labels of each batch:
    Targets                (idx, epoch) -> labels: a fixed label vector, a random teacher per
                           example, per batch or per epoch
    LabelsFromInputs       (idx, epoch, inputs, part) -> labels, computed from the batch's inputs
                           after augmentation (the authors' code's online teacher labels)
so every way of labelling a student goes through the same loop.
"""
from __future__ import annotations

import math
import time
from functools import lru_cache
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from rolemodels.config import FitSpec
from rolemodels.runtime.world import SINGLE, World, my_slice, shard_range, wrap_model
from rolemodels.errors import UserError

# (batch indices int64[B], epoch) -> class labels int64[B], or class probabilities float[B, C] (soft labels)
Targets = Callable[[torch.Tensor, int], torch.Tensor]


class LabelsFromInputs:
    """Targets computed from each batch's inputs as the model sees them (after augmentation).

    `fit` calls such targets as targets(idx, epoch, inputs, part): idx int64 [B] the batch's
    indices, inputs the batch on the device, part = (offset, total) this rank's slice of a global
    batch of `total` examples under DistributedDataParallel ((0, B) in one process), so that random
    draws can be made for the global batch. Returns labels int64 [B] on the inputs' device.
    Subclass it; plain `Targets` are called as targets(idx, epoch).
    """

    def __call__(self, idx: torch.Tensor, epoch: int, inputs: torch.Tensor,
                 part: tuple[int, int]) -> torch.Tensor:
        raise NotImplementedError


@lru_cache(maxsize=None)
def cpu_bf16_support() -> str:
    """"amx" (bf16 matrix units), "avx512" (AVX-512 BF16 dot products only) or "" (none)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    return "amx" if "amx_bf16" in flags else "avx512" if "avx512_bf16" in flags else ""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"config key train.device: {name!r} is not a device (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"config key train.device: {name} asked for, but no CUDA device is available")
    return device


def autocast_dtype(device: torch.device, precision: str, training: bool = True) -> torch.dtype | None:
    """The autocast dtype (None: fp32) for `precision` auto | bf16 | fp32.

    auto picks bf16 on CUDA and on CPUs with AMX. On CPUs with AVX-512 BF16 but no AMX it picks
    bf16 for inference only: measured on such a CPU (docs/benchmarks.md), the default teachers
    trained 25% slower under bf16 than in fp32, while labelling the pool ran 1.6x faster.
    """
    if precision == "fp32":
        return None
    if precision == "bf16" or device.type == "cuda":
        return torch.bfloat16
    support = cpu_bf16_support()
    if support == "amx" or (support == "avx512" and not training):
        return torch.bfloat16
    return None


def _optimizer(model: nn.Module, spec: FitSpec) -> torch.optim.Optimizer:
    if spec.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=spec.momentum,
                               weight_decay=spec.weight_decay, nesterov=spec.momentum > 0)
    return torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)


def _scheduler(opt: torch.optim.Optimizer, spec: FitSpec, total_steps: int):
    if spec.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, spec.lr, total_steps=total_steps, pct_start=0.15)
    if spec.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)


def fixed_targets(labels: torch.Tensor) -> Targets:
    """Targets for a label vector int64[N] that does not change between epochs."""
    return lambda idx, epoch: labels[idx]


DEVICE_COPY_LIMIT = 4 * 2**30  # inputs up to this size are copied to the GPU once, as stored (uint8 stays uint8)


def to_device_if_small(x, device: torch.device):
    """The inputs on the device when they are a tensor that fits; else as they are (e.g. a memory map)."""
    if device.type == "cpu" or not isinstance(x, torch.Tensor) or x.device == device:
        return x
    if x.numel() * x.element_size() <= DEVICE_COPY_LIMIT:
        return x.to(device)
    return x


def batches(x, order: torch.Tensor, batch_size: int, device: torch.device, world: World = SINGLE):
    """(indices, inputs on the device) for consecutive slices of `order` (this rank's part of each).

    Inputs already on the device are gathered there. Otherwise (a pool in host memory or
    memory-mapped) each batch is gathered on the host by a background thread one batch ahead,
    pinned when the device is a GPU, and copied without blocking, so the copy of batch i + 1
    overlaps the computation of batch i.
    """
    slices = [my_slice(order[first:first + batch_size], world) for first in range(0, len(order), batch_size)]
    if getattr(x, "device", None) == device:
        for idx in slices:
            yield idx, x[idx]
        return
    from concurrent.futures import ThreadPoolExecutor

    pin = device.type == "cuda"

    def gather(idx: torch.Tensor) -> torch.Tensor:
        part = torch.as_tensor(x[idx])
        return part.pin_memory() if pin else part

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(gather, slices[0]) if slices else None
        for i, idx in enumerate(slices):
            host = pending.result()
            pending = pool.submit(gather, slices[i + 1]) if i + 1 < len(slices) else None
            yield idx, host.to(device, non_blocking=True)


def fit(model: nn.Module, x: torch.Tensor, targets: Targets | LabelsFromInputs, spec: FitSpec, *, seed: int,
        device: torch.device, n: int | None = None, precision: str = "auto", checkpoint: Path | None = None,
        checkpoint_every: int = 5, save: Callable[[Path, dict], None] | None = None,
        log: Callable[[dict], None] | None = None, compile_model: bool = False, world: World = SINGLE) -> nn.Module:
    """Train `model` on x[:n] (inputs [N, ...], any dtype the model's Standardize accepts; n
    defaults to all of x) with the labels `targets` gives for each batch; returns the model.

    The shuffle order comes from a generator seeded with `seed`, so two runs with the same seed
    see the same batches. With `checkpoint`, the model, optimizer, scheduler and generator are
    saved every `checkpoint_every` epochs (through `save`, which should write atomically), and a
    run that finds the file resumes after the saved epoch with identical results.

    With a `world` of W > 1 ranks the model trains as DistributedDataParallel: every rank draws
    the same shuffle, takes its contiguous slice of each global batch of spec.batch_size (any
    size; slices differ by at most one example) and scales its loss so that the gradients DDP
    averages are those of the whole global batch. Batches, steps and learning-rate schedule are
    those of one process; only the order of floating-point sums differs.
    """
    n = len(x) if n is None else n
    if n < 1:
        raise UserError("cannot train on an empty set")
    model.to(device)
    if device.type == "cuda":  # image models: NHWC weights to match the NHWC batches (4-D tensors only)
        model.to(memory_format=torch.channels_last)
    model.train()
    dtype = autocast_dtype(device, precision)
    steps_per_epoch = math.ceil(n / spec.batch_size)
    epochs = spec.epochs_for(n)  # spec.epochs, or more passes over a small set (spec.min_examples)
    opt = _optimizer(model, spec)
    sched = _scheduler(opt, spec, epochs * steps_per_epoch)
    shuffle = torch.Generator().manual_seed(seed)
    augment_gen = torch.Generator(device=device).manual_seed(seed + 1)
    start_epoch = 0
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        shuffle.set_state(state["shuffle"])
        augment_gen.set_state(state["augment"])
        start_epoch = state["epoch"]
    if spec.augment == "crop_flip":
        from rolemodels.augment import random_crop_flip
    x = to_device_if_small(x, device)
    forward = wrap_model(model, world, device)
    forward = torch.compile(forward) if compile_model else forward
    for epoch in range(start_epoch, epochs):
        started = time.perf_counter()
        order = torch.randperm(n, generator=shuffle)
        loss_sum = torch.zeros((), device=device)
        for step, (idx, xb) in enumerate(batches(x, order, spec.batch_size, device, world)):
            # This rank's slice starts at `offset` in a global batch of `total` examples: random
            # draws are made for the whole global batch, so a slice gets what one process gives it.
            total = min(spec.batch_size, n - step * spec.batch_size)
            part = (shard_range(total, world.rank, world.size)[0], total)
            if spec.augment == "crop_flip":
                xb = random_crop_flip(xb, augment_gen, part=part)
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                if isinstance(targets, LabelsFromInputs):  # labels computed from the augmented batch
                    yb = targets(idx, epoch, xb, part)
                else:
                    yb = targets(idx, epoch).to(device, non_blocking=True)
                logits = forward(xb)
            loss = slice_loss(logits, yb, total, world)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.detach() * (total / world.size)
        world.sum(loss_sum)
        if log is not None:
            log({"epoch": epoch + 1, "loss": loss_sum.item() / n, "lr": opt.param_groups[0]["lr"],
                 "seconds": time.perf_counter() - started})
        last = epoch + 1 == epochs
        if (checkpoint is not None and save is not None and world.is_main and not last
                and (epoch + 1) % checkpoint_every == 0):
            save(checkpoint, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                              "scheduler": sched.state_dict(), "shuffle": shuffle.get_state(),
                              "augment": augment_gen.get_state(), "epoch": epoch + 1})
    model.eval()
    return model


def slice_loss(logits: torch.Tensor, labels: torch.Tensor, total: int, world: World) -> torch.Tensor:
    """Cross-entropy of this rank's slice, scaled so that the mean over the W ranks (what DDP
    averages) is the mean over the global batch of `total` examples; one process: the plain mean."""
    if len(labels) == 0:  # a last global batch smaller than the world leaves this rank nothing
        return logits.sum() * 0.0  # zero gradients, but a backward pass for DDP to match
    return F.cross_entropy(logits.float(), labels) * (len(labels) * world.size / total)


@torch.inference_mode()
def predict_logits(model: nn.Module, x: torch.Tensor, device: torch.device, precision: str = "auto",
                   batch_size: int = 8192) -> torch.Tensor:
    """Logits float32 [N, C] on the CPU, computed in chunks (x may be memory-mapped)."""
    model.to(device)
    model.eval()
    dtype = autocast_dtype(device, precision, training=False)
    out = []
    for first in range(0, x.shape[0], batch_size):
        xb = torch.as_tensor(x[first:first + batch_size]).to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out.append(model(xb).float().cpu())
    if not out:  # no examples: an empty batch still gives [0, C]
        return model(torch.as_tensor(x[:0]).to(device)).float().cpu()
    return torch.cat(out)
