"""Many models of one architecture trained as one: stacked parameters, one step for all.

The paper trains K teachers of one network, and a dozen students of another on one pool. Each is
a small model that leaves a GPU idle between kernel launches, or a CPU's cores idle between
small operations. `fit_many` trains a group of them together: their parameters stacked on a
leading axis of K (torch.func.stack_module_state), one forward of all K (vmap over
functional_call), the sum of their K mean losses, one optimizer step over the stacked tensors.

Each model is trained as `train.fit` trains it alone:
- its own initial weights, its own shuffle (a CPU generator seeded with its seed) and its own
  augmentation draws (a generator seeded with seed + 1 on the device), so every model sees the
  batches and augmentations `fit` gives it;
- its own inputs and targets; the gradient of the sum of the losses with respect to model k's
  parameters is the gradient of model k's loss alone, and SGD and AdamW update each element on
  its own, so the models never mix;
- the same schedule: a group shares the recipe and the number of examples.
Only the order of floating-point sums inside the batched kernels differs from one-at-a-time
training, so results agree within rounding (tests/test_train_many.py measures how closely).

What cannot be trained together is named by `why_not_together` and trained one at a time.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
from torch.func import functional_call, stack_module_state, vmap

from rolemodels.errors import UserError
from rolemodels.recipe import FitSpec
from rolemodels.runtime.device import DeviceLike, autocast_dtype, canonical_device, on_device, place_model
from rolemodels.training.augment import batch_augmentation
from rolemodels.training.train import (
    LabelsFromInputs,
    Targets,
    check_finite,
    load_checkpoint,
    load_optimizer_state,
    make_optimizer,
    make_scheduler,
    mean_loss,
    restore_generator,
)


@dataclass
class FitTask:
    """One model's training as `train.fit` takes it: inputs x[:n] [N, ...], the targets of each
    batch, the recipe and the seed (shuffle and augmentation)."""

    x: Any
    n: int
    targets: Targets | LabelsFromInputs
    spec: FitSpec
    seed: int

    # The executor (runtime/work.py) groups and trains tasks through these, without importing
    # the training code: the science says how, the machinery only when and where.
    @staticmethod
    def why_not_together(models: list[nn.Module], tasks: list["FitTask"]) -> str | None:
        return why_not_together(models, tasks)

    @staticmethod
    def fit_together(models: list[nn.Module], tasks: list["FitTask"], **options) -> list[nn.Module]:
        return fit_many(models, tasks, **options)


def same_architecture(models: list[nn.Module]) -> bool:
    """Whether the models are networks of one architecture: one module class, the same parameter
    and buffer names and shapes, and parameters to stack (a k-NN teacher has none)."""
    shapes = [{k: v.shape for k, v in model.state_dict().items()} for model in models]
    return (all(type(model) is type(models[0]) for model in models) and all(s == shapes[0] for s in shapes)
            and all(any(True for _ in model.parameters()) for model in models))


def why_not_together(models: list[nn.Module], tasks: list[FitTask]) -> str | None:
    """Why these models cannot train as one group (None: they can).

    A group needs one architecture (the same module class and parameter shapes), one recipe
    and one number of examples (so every model takes the same steps on the same schedule),
    labels fixed per example (not computed from each batch's inputs, as the authors' code's
    online teachers do) and inputs held as tensors (a memory-mapped pool is streamed one model
    at a time)."""
    if len(models) < 2:
        return "a single model"
    if not same_architecture(models):
        return "different architectures"
    for task in tasks[1:]:
        if task.spec != tasks[0].spec:
            return "different recipes"
        if task.n != tasks[0].n:
            return "different numbers of training examples"
    if any(isinstance(task.targets, LabelsFromInputs) for task in tasks):
        return "labels computed from each batch's inputs (students.labels=online)"
    if any(not isinstance(task.x, torch.Tensor) for task in tasks):
        return "inputs not held in memory as tensors (a memory-mapped pool)"
    return None


class StackedModels:
    """K models' parameters and buffers stacked on a leading axis [K, ...], and their forward:
    inputs [K, B, ...] -> logits [K, B, C]."""

    def __init__(self, models: list[nn.Module]):
        self.params, self.buffers = stack_module_state(models)  # new leaf tensors on the models' device
        self.base = copy.deepcopy(models[0]).to("meta")  # the architecture alone: no memory of its own
        self.base.train()

        def one(params, buffers, x):
            return functional_call(self.base, (params, buffers), (x,))

        # BatchNorm's running statistics are buffers stacked like the parameters, so each model
        # updates its own in place.
        self.forward = vmap(one, in_dims=(0, 0, 0))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(self.params, self.buffers, x)

    def state(self) -> dict[str, torch.Tensor]:
        return {**self.params, **self.buffers}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, tensor in self.state().items():
                tensor.copy_(state[name])

    @torch.no_grad()
    def write_back(self, models: list[nn.Module]) -> None:
        """Each model's own parameters and buffers set to its slice of the stack."""
        stacked = self.state()
        for k, model in enumerate(models):
            for name, tensor in model.state_dict(keep_vars=True).items():
                tensor.copy_(stacked[name][k])


def fit_many(models: list[nn.Module], tasks: list[FitTask], *, device: DeviceLike, precision: str = "auto",
             checkpoint: Path | None = None, checkpoint_every: int = 5,
             save: Callable[[Path, dict], None] | None = None,
             logs: list[Callable[[dict], None] | None] | None = None,
             names: list[str] | None = None) -> list[nn.Module]:
    """Train models[k] on tasks[k] as `train.fit` would, all K in one loop; returns the models.

    `why_not_together(models, tasks)` must be None (a UserError says why otherwise). With
    `checkpoint`, the group's state (stacked weights, optimizer, schedule and every model's
    generators) is saved every `checkpoint_every` epochs and a run that finds the file resumes
    from it. logs[k] receives model k's record of each epoch (epoch, loss, lr, seconds: the
    group's). A loss that becomes NaN or infinite stops the training with a RunError naming
    the model (names[k]).
    """
    reason = why_not_together(models, tasks)
    if reason is not None:
        raise UserError(f"these {len(models)} models cannot train as one group: {reason}")
    device = canonical_device(device)
    names = names or [f"model{k}" for k in range(len(models))]
    logs = logs or [None] * len(models)
    spec, n, K = tasks[0].spec, tasks[0].n, len(models)
    spec.check_loss()
    for model in models:
        place_model(model, device)
    stacked = StackedModels(models)
    dtype = autocast_dtype(device, precision)
    steps_per_epoch = math.ceil(n / spec.batch_size)
    epochs = spec.epochs_for(n)
    opt = make_optimizer(stacked.params.values(), spec, device)
    sched = make_scheduler(opt, spec, epochs * steps_per_epoch)
    shuffles = [torch.Generator().manual_seed(task.seed) for task in tasks]
    augment_gens = [torch.Generator(device=device).manual_seed(task.seed + 1) for task in tasks]
    start_epoch = 0
    if checkpoint is not None and checkpoint.exists():
        state = load_checkpoint(checkpoint)
        if state.get("names") != names:
            raise UserError(f"{checkpoint}: a checkpoint of the group {state.get('names')}, not of {names}")
        stacked.load(state["models"])
        load_optimizer_state(opt, state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        for generator, saved in zip(shuffles, state["shuffles"]):
            generator.set_state(saved)
        for generator, saved in zip(augment_gens, state["augments"]):
            restore_generator(generator, saved)
        start_epoch = state["epoch"]
    augment = batch_augmentation(spec.augment, spec.augment_size)
    inputs = _shared_inputs([task.x for task in tasks], device)
    for epoch in range(start_epoch, epochs):
        started = time.perf_counter()
        orders = torch.stack([torch.randperm(n, generator=g) for g in shuffles]).to(device)  # [K, n]
        loss_sum = torch.zeros(K, device=device)
        for first in range(0, n, spec.batch_size):
            idx = orders[:, first:first + spec.batch_size]  # [K, B]
            xb = inputs(idx)
            if augment is not None:  # each model's draws from its own generator, as fit draws them
                xb = torch.stack([augment(xb[k], augment_gens[k]) for k in range(K)])
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                yb = torch.stack([task.targets(idx[k], epoch).to(device, non_blocking=True)
                                  for k, task in enumerate(tasks)])
                logits = stacked(xb)  # [K, B, C]
            loss_name = spec.loss_at(epoch * steps_per_epoch + first // spec.batch_size, epochs * steps_per_epoch)
            losses = vmap(lambda lk, yk, name=loss_name: mean_loss(lk, yk, name, spec.gce_q))(logits, yb)  # [K]
            opt.zero_grad(set_to_none=True)
            losses.sum().backward()  # model k's gradient is that of its own loss alone
            opt.step()
            sched.step()
            loss_sum += losses.detach() * idx.shape[1]
        epoch_losses = (loss_sum / n).tolist()
        seconds = time.perf_counter() - started
        for k, loss in enumerate(epoch_losses):
            check_finite(loss, names[k], epoch, epochs, spec)
            if logs[k] is not None:
                logs[k]({"epoch": epoch + 1, "loss": loss, "lr": opt.param_groups[0]["lr"], "seconds": seconds})
        if (checkpoint is not None and save is not None and epoch + 1 < epochs
                and (epoch + 1) % checkpoint_every == 0):
            save(checkpoint, {"names": names, "models": stacked.state(), "optimizer": opt.state_dict(),
                              "scheduler": sched.state_dict(), "shuffles": [g.get_state() for g in shuffles],
                              "augments": [g.get_state() for g in augment_gens], "epoch": epoch + 1})
    stacked.write_back(models)
    for model in models:
        model.eval()
    return models


def _shared_inputs(xs: list, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """indices int64 [K, B] -> inputs [K, B, ...] on the device: model k's batch from its own x.

    Models that share one input tensor (teachers of one training set, students of one pool)
    gather all K batches in one indexing; each distinct tensor is placed on the device once."""
    placed: dict[int, torch.Tensor] = {}
    for x in xs:
        if id(x) not in placed:
            placed[id(x)] = on_device(x, device)
    sources = [placed[id(x)] for x in xs]
    if all(source is sources[0] for source in sources):
        source = sources[0]
        return lambda idx: source[idx.to(source.device)].to(device, non_blocking=True)
    return lambda idx: torch.stack([source[idx[k].to(source.device)].to(device, non_blocking=True)
                                    for k, source in enumerate(sources)])


class StackedPredictor:
    """The K models' logits float32 [K, b, C] on the device for inputs [b, ...], computed by one
    vmapped forward of the stacked models (in eval mode) per batch of `batch_size` rows: the
    labelling counterpart of `fit_many`, which `teach.label_pool_by_teachers` takes in place of K
    one-model functions. The models must share one architecture (`why_not_together`); they are
    copied into the stack, so later changes to them are not seen."""

    def __init__(self, models: list[nn.Module], device: DeviceLike, precision: str = "auto", batch_size: int = 8192):
        self.device = canonical_device(device)
        for model in models:
            place_model(model, self.device)
        with torch.no_grad():
            self.stacked = StackedModels(models)
        self.stacked.base.eval()
        self.dtype = autocast_dtype(self.device, precision, training=False)
        self.batch_size, self.count = batch_size, len(models)

    def __len__(self) -> int:
        return self.count

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = []
        for first in range(0, x.shape[0], self.batch_size):
            xb = torch.as_tensor(x[first:first + self.batch_size]).to(self.device, non_blocking=True)
            with torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
                out.append(self.stacked(xb.expand(self.count, *xb.shape)).float())  # [K, b, C]
        return torch.cat(out, 1)
