"""Accuracy, noise replication and summaries over seeds."""
from __future__ import annotations

import math

import torch


def accuracy(pred: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of pred int[N] equal to labels int[N]."""
    if len(labels) == 0:
        return float("nan")
    return (pred.long() == labels.long()).double().mean().item()


def noise_replication(pred: torch.Tensor, labels: torch.Tensor, partner: torch.Tensor) -> float:
    """How often a model predicts the noise partner of the true class, averaged over classes.

    pred, labels: int [N] (labels are the clean test labels); partner: int64 [C], the label that
    the noise sends each class to (for the paper's noise, (c + 5) mod 10). A perfect sampler of
    the paper's 20% noise scores about 0.2, the clean classifier about 0. Classes whose partner is
    themselves (no noise) and classes absent from `labels` are left out of the average.
    """
    pred, labels, partner = pred.long(), labels.long(), torch.as_tensor(partner).long()
    rates = []
    for c in range(len(partner)):
        mask = labels == c
        if partner[c] == c or not mask.any():
            continue
        rates.append((pred[mask] == partner[c]).double().mean().item())
    return sum(rates) / len(rates) if rates else float("nan")


def confusion(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts int64 [C, C]: row = true class, column = prediction."""
    index = labels.long() * num_classes + pred.long()
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def summarize(values: list[float]) -> dict:
    """{"mean", "std", "values"} with the sample standard deviation (0 for a single value)."""
    values = [float(v) for v in values]
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return {"mean": float("nan"), "std": float("nan"), "values": values}
    mean = sum(finite) / len(finite)
    std = math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1)) if len(finite) > 1 else 0.0
    return {"mean": mean, "std": std, "values": values}
