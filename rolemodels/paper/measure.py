"""The numbers of one experiment seed: Table 1, Figure 2 and the sampler diagnostics, from predictions."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rolemodels.method.combine import mean_probability, plurality_vote, summed_logits_labels
from rolemodels.method.diagnostics import (
    pointwise_sampler_distance,
    sampler_distance,
    teacher_agreement,
    vote_share_histogram,
)
from rolemodels.method.metrics import accuracy, confusion, noise_replication
from rolemodels.method.noise import realized_matrix


@dataclass
class SeedOutcome:
    """What one experiment seed produced, on the clean test set unless named otherwise."""

    seed: int
    y_train: np.ndarray  # int64 [n]: the clean training labels
    noisy: np.ndarray  # int64 [n]: the teachers' labels
    transition: np.ndarray  # float64 [C, C]: the noise they were drawn with
    partner: torch.Tensor  # int64 [C]: the class each class's labels are flipped to
    y_test: torch.Tensor  # int64 [N_test]
    test_logits: torch.Tensor  # float32 [K, N_test, C]: every teacher's
    train_fit: list[float]  # each teacher's accuracy on the noisy labels it was trained on
    sweep: list[int]  # Figure 2's teacher counts
    students: dict[str, torch.Tensor]  # name -> int64 [N_test] predictions
    seconds: dict[str, float]


def measure_seed(o: SeedOutcome) -> dict:
    """Every number of one seed, in the per-seed layout that report.summarize_run aggregates."""
    K, C = o.test_logits.shape[0], o.test_logits.shape[2]
    y_test, partner = o.y_test, o.partner
    teacher_pred = o.test_logits.argmax(2).T  # [N_test, K]

    def ensemble_of(k: int) -> torch.Tensor:  # plurality of the first k teachers, ties to summed probabilities
        return plurality_vote(teacher_pred[:, :k], C, torch.softmax(o.test_logits[:k], 2).sum(0))

    predictions = {"ensemble": ensemble_of(K), "ensemble_mean_prob": mean_probability(o.test_logits).argmax(1),
                   "ensemble_sum_logits": summed_logits_labels(o.test_logits),
                   "ensemble_distill": o.students[f"ensemble_distill_k{K}"],
                   "random_distill": o.students[f"random_distill_k{K}"], "clean_train": o.students["clean_train"]}
    if "clean_pool" in o.students:
        predictions["clean_pool"] = o.students["clean_pool"]
    T = o.transition

    def swept(name: str) -> list[float | None]:  # None where no student was trained for that K
        return [accuracy(o.students[f"{name}_k{k}"], y_test) if f"{name}_k{k}" in o.students else None
                for k in o.sweep]

    counts, rates = realized_matrix(o.y_train, o.noisy, C)
    return {
        "seed": o.seed,
        "teacher": [accuracy(teacher_pred[:, k], y_test) for k in range(K)],
        "teacher_train_fit": o.train_fit,
        "accuracy": {name: accuracy(pred, y_test) for name, pred in predictions.items()},
        "noise_replication": {"teacher": [noise_replication(teacher_pred[:, k], y_test, partner) for k in range(K)],
                              **{name: noise_replication(pred, y_test, partner) for name, pred in predictions.items()}},
        "sweep": {"teachers": o.sweep, "ensemble": [accuracy(ensemble_of(k), y_test) for k in o.sweep],
                  "ensemble_distill": swept("ensemble_distill"), "random_distill": swept("random_distill")},
        "noise": {"matrix": T.tolist(), "realized_counts": counts.tolist(), "realized_matrix": rates.tolist(),
                  "rate": float((o.noisy != o.y_train).mean()), "partner": partner.tolist()},
        "sampler": {
            "sampler_distance": {"teacher": [sampler_distance(y_test, teacher_pred[:, k], T, C) for k in range(K)],
                                 **{name: sampler_distance(y_test, pred, T, C) for name, pred in predictions.items()}},
            "pointwise_sampler_distance": pointwise_sampler_distance(y_test, teacher_pred, T),
            "teacher_agreement": teacher_agreement(teacher_pred) if K > 1 else 1.0,
            "vote_share_histogram": vote_share_histogram(y_test, teacher_pred, partner).tolist(),
        },
        "confusion": {name: confusion(pred, y_test, C).tolist()
                      for name, pred in [("teacher", teacher_pred[:, 0]), *predictions.items()]},
        "seconds": o.seconds,
    }
