"""Ways to turn several teachers into one label: the paper's and the authors' code's.

Paper (defaults): plurality vote of hard labels; a random teacher drawn for each example.
Authors' code (named options): summed logits; one random teacher for each training batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from rolemodels.runtime.device import Resident
from rolemodels.training.train import Targets


def vote_counts(teacher_labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """How many teachers chose each class. teacher_labels: uint8/int [N, K] -> int64 [N, C]."""
    n = teacher_labels.shape[0]
    counts = torch.zeros(n, num_classes, dtype=torch.int64)
    counts.scatter_add_(1, teacher_labels.long(), torch.ones_like(teacher_labels, dtype=torch.int64))
    return counts


def plurality_vote(teacher_labels: torch.Tensor, num_classes: int,
                   prob_sum: torch.Tensor | None = None) -> torch.Tensor:
    """The class most teachers chose. teacher_labels: uint8/int [N, K] -> int64 [N].

    Ties are broken by the summed probabilities prob_sum float [N, C] of the tied classes (each
    teacher's softmax, summed over teachers); without it, by the lowest class index.
    """
    counts = vote_counts(teacher_labels, num_classes).double()
    if prob_sum is not None:
        k = teacher_labels.shape[1]
        # prob_sum / (K + 1) < 1, so it only orders classes with equal counts.
        counts = counts + prob_sum.double().clamp(0, k) / (k + 1)
    return counts.argmax(1)


def vote_shares(teacher_labels: torch.Tensor, num_classes: int, *,
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Fraction of teachers voting for each class: float32 [N, C] (a soft label), or `dtype`.

    The share is the integer count divided by K in `dtype` (float64: exactly numpy's counts / K).
    """
    return vote_counts(teacher_labels, num_classes).to(dtype) / teacher_labels.shape[1]


def mean_probability(logits: torch.Tensor) -> torch.Tensor:
    """Mean of the teachers' softmax. logits: float [K, N, C] -> float32 [N, C]."""
    return F.softmax(logits.float(), dim=-1).mean(0)


def summed_logits_labels(logits: torch.Tensor) -> torch.Tensor:
    """The authors' code's "ensemble": argmax of the logits summed over teachers. [K, N, C] -> int64 [N]."""
    return logits.float().sum(0).argmax(1)


def random_teacher_draws(n: int, num_teachers: int, seed: int | torch.Generator) -> torch.Tensor:
    """For each of n examples, the index of its own uniformly drawn teacher: int64 [n].

    seed: an integer, or a torch.Generator that the draws advance (the theory experiments draw
    everything from one generator). An integer s draws what Generator().manual_seed(s) draws.
    """
    generator = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
    return torch.randint(num_teachers, (n,), generator=generator)


def random_teacher_labels(teacher_labels: torch.Tensor, seed: int | torch.Generator) -> torch.Tensor:
    """The paper's random-teacher distillation: each example labelled by its own random teacher.

    teacher_labels: uint8/int [N, K] -> int64 [N]. Draws are independent across examples;
    seed as in random_teacher_draws.
    """
    n, k = teacher_labels.shape
    draws = random_teacher_draws(n, k, seed)
    return teacher_labels[torch.arange(n), draws].long()


def per_batch_teacher_targets(teacher_labels: torch.Tensor, seed: int) -> Targets:
    """The authors' code: one teacher drawn for each training batch labels the whole batch.

    Returns a `Targets` for `train.fit`; the draw sequence is fixed by `seed`, one per call.
    Under DistributedDataParallel every rank calls it once per global batch (with its slice),
    so all ranks draw the same teacher for a global batch, the one a single process draws.
    """
    generator = torch.Generator().manual_seed(seed)
    k = teacher_labels.shape[1]
    labels = Resident(teacher_labels)

    def targets(idx: torch.Tensor, epoch: int) -> torch.Tensor:
        teacher = int(torch.randint(k, (1,), generator=generator))
        return labels.on(idx.device)[idx, teacher].long()

    return targets


def per_epoch_teacher_targets(teacher_labels: torch.Tensor, seed: int) -> Targets:
    """A fresh random teacher for each example every time it is seen (every epoch)."""
    n, k = teacher_labels.shape
    labels = Resident(teacher_labels)
    drawn: dict[int, torch.Tensor] = {}

    def targets(idx: torch.Tensor, epoch: int) -> torch.Tensor:
        if epoch not in drawn:  # one draw per example per epoch, made once (on the CPU, then moved)
            drawn.clear()
            drawn[epoch] = random_teacher_draws(n, k, seed + 7919 * epoch).to(idx.device)
        return labels.on(idx.device)[idx, drawn[epoch][idx]].long()

    return targets
