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
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from rolemodels.errors import RunError, UserError
from rolemodels.recipe import FitSpec
from rolemodels.runtime.device import (
    DeviceLike,
    Resident,
    autocast_dtype,
    canonical_device,
    is_on,
    on_device,
    pinned,
    place_model,
)
from rolemodels.runtime.world import SINGLE, World, my_slice, shard_range, wrap_model
from rolemodels.training.augment import batch_augmentation

# (batch indices int64[B] on the training device, epoch) -> class labels int64[B], or class
# probabilities float[B, C] (soft labels), best on the indices' device (see `Resident`)
Targets = Callable[[torch.Tensor, int], torch.Tensor]


class LabelsFromInputs:
    """Targets computed from each batch's inputs as the model sees them (after augmentation).

    `fit` calls such targets as targets(idx, epoch, inputs, part): idx int64 [B] the batch's
    indices and inputs the batch, both on the device, part = (offset, total) this rank's slice of a global
    batch of `total` examples under DistributedDataParallel ((0, B) in one process), so that random
    draws can be made for the global batch. Returns labels int64 [B] on the inputs' device.
    Subclass it; plain `Targets` are called as targets(idx, epoch).
    """

    def __call__(self, idx: torch.Tensor, epoch: int, inputs: torch.Tensor,
                 part: tuple[int, int]) -> torch.Tensor:
        raise NotImplementedError


def make_optimizer(params, spec: FitSpec, device: torch.device) -> torch.optim.Optimizer:
    """The recipe's optimizer over `params` (a model's parameters, or models' stacked ones)."""
    # On a GPU one fused kernel updates every parameter (fewer launches per step); elsewhere torch's default.
    fused = {"fused": True} if device.type == "cuda" else {}
    params = list(params)
    if spec.optimizer == "sgd":
        return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum,
                               weight_decay=spec.weight_decay, nesterov=spec.momentum > 0, **fused)
    return torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay, **fused)


def make_scheduler(opt: torch.optim.Optimizer, spec: FitSpec, total_steps: int):
    if spec.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, spec.lr, total_steps=total_steps, pct_start=0.15)
    if spec.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)


def fixed_targets(labels: torch.Tensor) -> Targets:
    """Targets for a label vector int64[N] (or soft labels float[N, C]) that does not change
    between epochs: labels[idx] on the indices' device."""
    resident = Resident(labels)
    return lambda idx, epoch: resident.on(idx.device)[idx]


def batches(x, order: torch.Tensor, batch_size: int, device: torch.device, world: World = SINGLE):
    """(indices, inputs), both on the device, for consecutive slices of `order` (this rank's part of each).

    `order` (int64 [n], on the CPU) is copied to the device once, so no step copies its
    indices from the host. Inputs already on the device are gathered there. Otherwise (a pool
    in host memory or memory-mapped) each batch is gathered on the host by a background thread
    one batch ahead, pinned when the device is a GPU, and copied without blocking, so the copy
    of batch i + 1 overlaps the computation of batch i.
    """
    device = canonical_device(device)
    starts = range(0, len(order), batch_size)
    here = order.to(device)
    slices = [my_slice(here[first:first + batch_size], world) for first in starts]
    if is_on(x, device):
        for idx in slices:
            yield idx, x[idx]
        return
    from concurrent.futures import ThreadPoolExecutor

    host = [my_slice(order[first:first + batch_size], world) for first in starts]

    def gather(idx: torch.Tensor) -> torch.Tensor:
        # x may be a tensor on another device: gathered there, and pinned only if that is the host
        return pinned(torch.as_tensor(x[idx.to(x.device) if isinstance(x, torch.Tensor) else idx]), device)

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(gather, host[0]) if host else None
        for i, idx in enumerate(slices):
            inputs = pending.result()
            pending = pool.submit(gather, host[i + 1]) if i + 1 < len(host) else None
            yield idx, inputs.to(device, non_blocking=True)


def load_checkpoint(path: Path) -> dict:
    """A training checkpoint read onto the CPU, whichever device wrote it.

    Generator states must arrive as CPU byte tensors (Generator.set_state refuses others, on
    every device); model and optimizer tensors are copied to the parameters' device when loaded.
    """
    return torch.load(path, map_location="cpu", weights_only=True)


def load_optimizer_state(opt: torch.optim.Optimizer, state: dict) -> None:
    """The saved optimizer state, written on any device, continued by this optimizer.

    This device's implementation (fused on a GPU) is kept, not the saver's. Every state tensor
    is laid out like its parameter (its device, dtype and strides: channels_last on a GPU),
    since fused kernels take parameters and state together and a CPU's contiguous buffer
    beside a GPU's NHWC weight is refused; `step` goes where the implementation keeps it (on
    the parameter's device when fused or capturable, else on the host).
    """
    kept = [{key: group[key] for key in ("fused", "foreach") if key in group} for group in opt.param_groups]
    opt.load_state_dict(state)
    for group, settings in zip(opt.param_groups, kept):
        group.update(settings)
        step_on_device = bool(group.get("fused") or group.get("capturable"))
        for param in group["params"]:
            saved = opt.state.get(param, {})
            for key, value in saved.items():
                if not isinstance(value, torch.Tensor):
                    continue
                if key == "step":
                    saved[key] = value.to(device=param.device if step_on_device else "cpu", dtype=torch.float32)
                elif value.shape == param.shape:
                    saved[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)
                else:
                    saved[key] = value.to(param.device)


def restore_generator(generator: torch.Generator, state: torch.Tensor) -> bool:
    """Continue `generator` from a saved state. A state of another device's kind (a checkpoint
    written on a GPU resumed on a CPU, or the reverse: the generators differ) cannot be; then the
    generator stays as seeded, its draws differ from an uninterrupted run's, and this returns False."""
    try:
        generator.set_state(state)
    except RuntimeError:
        return False
    return True


def fit(model: nn.Module, x: torch.Tensor, targets: Targets | LabelsFromInputs, spec: FitSpec, *, seed: int,
        device: DeviceLike, n: int | None = None, precision: str = "auto", checkpoint: Path | None = None,
        checkpoint_every: int = 5, save: Callable[[Path, dict], None] | None = None,
        log: Callable[[dict], None] | None = None, compile_model: bool = False, compile_mode: str = "default",
        world: World = SINGLE, name: str = "model") -> nn.Module:
    """Train `model` on x[:n] (inputs [N, ...], any dtype the model's Standardize accepts; n
    defaults to all of x) with the labels `targets` gives for each batch; returns the model.

    The shuffle order comes from a CPU generator seeded with `seed`, so two runs with the same
    seed see the same batches on any device; each epoch's order is copied to the device once.
    Inputs are kept on the device when they fit (`on_device`). With `checkpoint`, the model,
    optimizer, scheduler and generators are saved every `checkpoint_every` epochs (through
    `save`, which should write atomically), and a run that finds the file resumes after the
    saved epoch, on whichever device, with the results of an uninterrupted run (on a GPU only
    with deterministic kernels: `train.deterministic`). compile_mode: torch.compile's mode
    ("default", or "reduce-overhead" for CUDA graphs) when compile_model.

    With a `world` of W > 1 ranks the model trains as DistributedDataParallel: every rank draws
    the same shuffle, takes its contiguous slice of each global batch of spec.batch_size (any
    size; slices differ by at most one example) and scales its loss so that the gradients DDP
    averages are those of the whole global batch. Batches, steps and learning-rate schedule are
    those of one process; only the order of floating-point sums differs.

    A loss that becomes NaN or infinite stops the training with a RunError naming `name`.
    """
    n = len(x) if n is None else n
    if n < 1:
        raise UserError("cannot train on an empty set")
    spec.check_loss()  # once here, not in slice_loss on every batch
    device = canonical_device(device)
    place_model(model, device)
    model.train()
    dtype = autocast_dtype(device, precision)
    steps_per_epoch = math.ceil(n / spec.batch_size)
    epochs = spec.epochs_for(n)  # spec.epochs, or more passes over a small set (spec.min_examples)
    opt = make_optimizer(model.parameters(), spec, device)
    sched = make_scheduler(opt, spec, epochs * steps_per_epoch)
    shuffle = torch.Generator().manual_seed(seed)
    augment_gen = torch.Generator(device=device).manual_seed(seed + 1)
    start_epoch = 0
    if checkpoint is not None and checkpoint.exists():
        state = load_checkpoint(checkpoint)
        model.load_state_dict(state["model"])
        load_optimizer_state(opt, state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        shuffle.set_state(state["shuffle"])
        restore_generator(augment_gen, state["augment"])
        start_epoch = state["epoch"]
    augment = batch_augmentation(spec.augment, spec.augment_size)
    x = on_device(x, device)
    forward = wrap_model(model, world, device)
    forward = torch.compile(forward, mode=None if compile_mode == "default" else compile_mode) if compile_model \
        else forward
    for epoch in range(start_epoch, epochs):
        started = time.perf_counter()
        order = torch.randperm(n, generator=shuffle)
        loss_sum = torch.zeros((), device=device)
        for step, (idx, xb) in enumerate(batches(x, order, spec.batch_size, device, world)):
            # This rank's slice starts at `offset` in a global batch of `total` examples: random
            # draws are made for the whole global batch, so a slice gets what one process gives it.
            total = min(spec.batch_size, n - step * spec.batch_size)
            part = (shard_range(total, world.rank, world.size)[0], total)
            if augment is not None:
                xb = augment(xb, augment_gen, part=part)
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                if isinstance(targets, LabelsFromInputs):  # labels computed from the augmented batch
                    yb = targets(idx, epoch, xb, part)
                else:
                    yb = targets(idx, epoch).to(device, non_blocking=True)
                logits = forward(xb)
            loss_name = spec.loss_at(epoch * steps_per_epoch + step, epochs * steps_per_epoch)
            loss = slice_loss(logits, yb, total, world, loss_name, spec.gce_q)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.detach() * (total / world.size)
        world.sum(loss_sum)
        epoch_loss = loss_sum.item() / n
        check_finite(epoch_loss, name, epoch, epochs, spec)
        if log is not None:
            log({"epoch": epoch + 1, "loss": epoch_loss, "lr": opt.param_groups[0]["lr"],
                 "seconds": time.perf_counter() - started})
        last = epoch + 1 == epochs
        if (checkpoint is not None and save is not None and world.is_main and not last
                and (epoch + 1) % checkpoint_every == 0):
            save(checkpoint, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                              "scheduler": sched.state_dict(), "shuffle": shuffle.get_state(),
                              "augment": augment_gen.get_state(), "epoch": epoch + 1})
    model.eval()
    return model


def check_finite(epoch_loss: float, name: str, epoch: int, epochs: int, spec: FitSpec) -> None:
    """A diverged model is no result: stop, and say where and why."""
    if not math.isfinite(epoch_loss):
        raise RunError(f"{name}: the training loss became {epoch_loss} in epoch {epoch + 1} of {epochs}; "
                       f"the learning rate (lr={spec.lr:g}) is likely too high for this model, or the inputs "
                       f"hold extreme values")


GCE_Q = FitSpec.gce_q  # generalised cross-entropy's default q: Zhang & Sabuncu's choice for noisy labels


def generalized_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, q: float = GCE_Q) -> torch.Tensor:
    """Mean of (1 - p_y^q) / q over the batch (Zhang & Sabuncu 2018), p = softmax(logits).

    logits: float [B, C]; labels: int64 [B] classes, or float [B, C] class probabilities (soft
    labels: sum_c t_c (1 - p_c^q) / q). Between cross-entropy (q -> 0) and the mean absolute error
    (q = 1): a wrong label costs at most 1 / q, where cross-entropy's cost has no bound.
    """
    # p^q as exp(q log p): softmax(...) ** q has an infinite derivative where p underflows to 0,
    # which turns a confidently wrong example's gradient into NaN (seen with bf16 training).
    powered = torch.exp(q * torch.log_softmax(logits.float(), 1))
    if labels.dim() == 1:
        return ((1 - powered.gather(1, labels[:, None]).squeeze(1)) / q).mean()
    return (labels.float() * (1 - powered) / q).sum(1).mean()


def slice_loss(logits: torch.Tensor, labels: torch.Tensor, total: int, world: World,
               loss: str = "cross_entropy", q: float = GCE_Q) -> torch.Tensor:
    """The loss (cross_entropy | gce) of this rank's slice, scaled so that the mean over the W
    ranks (what DDP averages) is the mean over the global batch of `total` examples; one
    process: the plain mean."""
    if len(labels) == 0:  # a last global batch smaller than the world leaves this rank nothing
        return logits.sum() * 0.0  # zero gradients, but a backward pass for DDP to match
    return mean_loss(logits, labels, loss, q) * (len(labels) * world.size / total)


def mean_loss(logits: torch.Tensor, labels: torch.Tensor, loss: str = "cross_entropy", q: float = GCE_Q
              ) -> torch.Tensor:
    """The batch's mean loss, cross_entropy or gce (with this q), in float32: logits float [B, C],
    labels int64 [B] or class probabilities float [B, C]."""
    return generalized_cross_entropy(logits, labels, q) if loss == "gce" else F.cross_entropy(logits.float(), labels)
