"""Teachers: which examples each one sees, and how a pool gets labelled by all of them."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from rolemodels.errors import UserError
from rolemodels.runtime.device import host_copy, pinned
from rolemodels.training.train import LabelsFromInputs
from rolemodels.training.train_many import StackedPredictor


def teacher_subsets(n: int, num_teachers: int, mode: str, overlap: float, seed: int) -> list[torch.Tensor]:
    """Indices int64 of the training examples each teacher trains on.

    same: every teacher sees all n (the paper); overlap: each an independent random subset of
    round(overlap * n); disjoint: a random split into K nearly equal parts (the theory's
    independent samplers); bootstrap: n draws with replacement.
    """
    generator = torch.Generator().manual_seed(seed)
    if mode == "same":
        return [torch.arange(n) for _ in range(num_teachers)]
    if mode == "overlap":
        size = max(1, round(overlap * n))
        return [torch.randperm(n, generator=generator)[:size].sort().values for _ in range(num_teachers)]
    if mode == "disjoint":
        if num_teachers > n:
            raise UserError(f"teachers.data=disjoint: {num_teachers} teachers cannot split {n} examples")
        return [part.sort().values for part in torch.randperm(n, generator=generator).tensor_split(num_teachers)]
    if mode == "bootstrap":
        return [torch.randint(n, (n,), generator=generator).sort().values for _ in range(num_teachers)]
    raise UserError(f"config key teachers.data: {mode!r} is not one of same, overlap, disjoint, bootstrap")


def label_pool(predict: Callable[[torch.Tensor], torch.Tensor], x_pool, chunk: int = 65536,
               labels_out: np.ndarray | None = None, logits_out: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """One teacher's labels and logits for the whole pool, chunk by chunk (`label_pool_by_teachers`
    with one teacher). Returns uint8 [N] labels and float16 [N, C] logits (written into the given
    arrays, e.g. memory maps, when passed)."""
    return label_pool_by_teachers([predict], x_pool, chunk=chunk, outputs=[(labels_out, logits_out)])[0]


def label_pool_by_teachers(predicts: list[Callable[[torch.Tensor], torch.Tensor]] | StackedPredictor, x_pool,
                           rows: slice | None = None, *, chunk: int = 65536, device: torch.device | None = None,
                           outputs: list[tuple[np.ndarray | None, np.ndarray | None]] | None = None
                           ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every teacher's labels and logits for the pool's `rows` (default all), reading each chunk once.

    predicts: K functions, inputs [B, ...] -> logits float32 [B, C] (on any device), or one
    StackedPredictor of K teachers (inputs [B, ...] -> logits [K, B, C] in one vmapped forward,
    equal to the K functions' within rounding; train_many.py). x_pool: the
    pool [N, ...] as a tensor (on any device), array, memory map or ConcatPool. Each chunk of
    `chunk` rows is read once (the next one read ahead while this one is labelled, for a pool
    in host memory), copied to `device` once when given, and labelled there by every teacher;
    labels (argmax) and float16 logits are made there and copied back without blocking while
    the next chunk is labelled. A row is labelled in the chunk it has in K calls of one
    teacher each, so the results are theirs. Returns K pairs (uint8 [n] labels, float16 [n, C]
    logits), n = the number of rows, written into `outputs` (K pairs of arrays or None) when given.
    """
    first, last, _ = (rows or slice(None)).indices(x_pool.shape[0])
    if last <= first:
        raise UserError("the pool is empty: distillation needs unlabelled examples")
    outputs = [list(pair) for pair in (outputs or [(None, None)] * len(predicts))]
    if isinstance(predicts, StackedPredictor):
        every_teacher = predicts
    else:  # [K, b, C]: one teacher after another
        every_teacher = lambda inputs: torch.stack([predict(inputs).float() for predict in predicts])
    starts = range(first, last, chunk)

    def read(start: int) -> torch.Tensor:
        part = torch.as_tensor(x_pool[start:min(start + chunk, last)])
        return part if device is None else pinned(part, device)

    def keep(start: int, labels: torch.Tensor, logits: torch.Tensor, copied) -> None:
        if copied is not None:
            copied.synchronize()  # the copies back to host memory are done
        for k, pair in enumerate(outputs):
            if pair[0] is None:
                pair[0] = np.empty(last - first, dtype=np.uint8)
            if pair[1] is None:
                pair[1] = np.empty((last - first, logits.shape[2]), dtype=np.float16)
            pair[0][start - first:start - first + labels.shape[1]] = labels[k].numpy()
            pair[1][start - first:start - first + labels.shape[1]] = logits[k].numpy()

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as reader:
        ahead = reader.submit(read, starts[0])
        pending = None
        for i, start in enumerate(starts):
            inputs = ahead.result()
            if i + 1 < len(starts):
                ahead = reader.submit(read, starts[i + 1])
            if device is not None:
                inputs = inputs.to(device, non_blocking=True)
            logits = every_teacher(inputs)  # [K, b, C]
            labels, logits = host_copy(logits.argmax(2).to(torch.uint8)), host_copy(logits.half())
            copied = torch.cuda.Event() if labels.is_pinned() else None
            if copied is not None:
                copied.record()
            if pending is not None:
                keep(*pending)
            pending = (start, labels, logits, copied)
        keep(*pending)
    return [(pair[0], pair[1]) for pair in outputs]


def softmax_sum(logits: list[np.ndarray], chunk: int = 262144) -> torch.Tensor:
    """Sum over teachers of softmax(logits): list of K float [N, C] -> float32 [N, C]."""
    n = logits[0].shape[0]
    total = torch.zeros(n, logits[0].shape[1])
    for first in range(0, n, chunk):
        for teacher in logits:
            part = torch.from_numpy(np.asarray(teacher[first:first + chunk], dtype=np.float32))
            total[first:first + chunk] += torch.softmax(part, dim=1)
    return total


class SamplerTeacher(nn.Module):
    """A non-neural sampler (k-NN, kernel interpolation) behind the module interface of a network.

    forward returns log-probabilities, so argmax, softmax and summed logits mean what they mean
    for a network's logits.
    """

    def __init__(self, sampler):
        super().__init__()
        self.sampler = sampler

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):  # distances in float32, not bf16
            probs = self.sampler.predict_proba(x.float().cpu())
        return probs.clamp_min(1e-6).log().to(x.device)


def fit_sampler(name: str, x: torch.Tensor, y: torch.Tensor, num_classes: int, neighbors: int = 1,
                bandwidth: float = 0.0) -> SamplerTeacher:
    """Fit a `knn` or `kernel` teacher on inputs x [n, ...] and labels int64 [n]."""
    from rolemodels.method.samplers import KernelInterpolator, NearestNeighbors

    if name == "knn":
        sampler = NearestNeighbors(k=neighbors)
    elif name == "kernel":
        sampler = KernelInterpolator(bandwidth=bandwidth or None)
    else:
        raise UserError(f"unknown sampler {name!r}: choose knn or kernel")
    return SamplerTeacher(sampler.fit(torch.as_tensor(x).float(), y, num_classes))


class OnlineTeacherLabels(LabelsFromInputs):
    """The authors' code's labels: the teachers label each (augmented) batch as the student sees it.

    mode: "vote" (plurality, ties to summed probabilities), "sum_logits" (argmax of the summed
    logits), "batch" (one random teacher for the whole batch) or "example" (a random teacher per
    example). Called by `train.fit` with the batch's inputs after augmentation, once per global
    batch on every rank under DistributedDataParallel, with part=(offset, total): this rank's
    slice of a global batch of `total`. Draws are made for the global batch (one teacher per
    batch, or `total` per-example draws of which the slice takes its own), so every rank draws
    what one process would.
    """

    def __init__(self, teachers: list[nn.Module], mode: str, seed: int, num_classes: int):
        self.teachers, self.mode, self.num_classes = teachers, mode, num_classes
        self.generator = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def __call__(self, idx: torch.Tensor, epoch: int, inputs: torch.Tensor,
                 part: tuple[int, int] | None = None) -> torch.Tensor:
        from rolemodels.method.combine import plurality_vote

        if self.mode == "batch":
            teacher = self.teachers[int(torch.randint(len(self.teachers), (1,), generator=self.generator))]
            return teacher.eval()(inputs).argmax(1)
        logits = torch.stack([t.eval()(inputs).float() for t in self.teachers])  # [K, B, C]
        if self.mode == "sum_logits":
            return logits.sum(0).argmax(1)
        labels = logits.argmax(2).T  # [B, K]
        if self.mode == "example":
            offset, total = part or (0, len(idx))
            draws = torch.randint(len(self.teachers), (total,), generator=self.generator)[offset:offset + len(idx)]
            draws = draws.to(labels.device)
            return labels[torch.arange(len(idx), device=labels.device), draws]
        return plurality_vote(labels.cpu(), self.num_classes, torch.softmax(logits, 2).sum(0).cpu()).to(labels.device)
