"""`rolemodels theory`: the paper's claims on a distribution whose label noise is known exactly.

Setup. x is uniform on the unit square; its true class is the Voronoi cell of ten fixed
centres; the observed label is drawn per example from the paper's transition matrix
T = 0.8 I + 0.2 P (noise.paper_matrix), where P swaps class c with its partner (c + 5) mod 10.
The Bayes-optimal classifier is therefore the cell itself. Accuracy is always measured
against the clean label (the cell), as in the paper: the Bayes-optimal classifier scores 1.0
there, and 0.8 against noisy labels (both computed exactly, see bayes_accuracy).

Three experiments, each a function below:
1. sampling_vs_learning: the 1-nearest-neighbour rule (a sampler) against the k-NN
   majority rule (a learner, k ~ sqrt(n)) as the training set grows.
2. ensemble_vs_teachers: K 1-NN teachers on disjoint splits vote; the measured accuracy
   against the exact prediction from plurality_probability and each point's sampler
   behaviour (the chance that a 1-NN on m fresh points returns each label there).
3. distillation: a student trained on a pool labelled by the ensemble, or by a random
   teacher per example, as the pool grows.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from rolemodels.method import diagnostics
from rolemodels.method.combine import random_teacher_labels, vote_counts
from rolemodels.method.noise import paper_matrix
from rolemodels.method.samplers import NearestNeighbors, nearest_first_plurality

# ----------------------------------------------------------------------------- Setup

NUM_CLASSES = 10
NOISE_RATE = 0.2
# The ten centres whose Voronoi cells are the classes (fixed: the distribution never changes).
CENTRES = torch.tensor([
    [0.12, 0.15], [0.45, 0.10], [0.82, 0.18], [0.30, 0.42], [0.66, 0.40],
    [0.90, 0.55], [0.10, 0.62], [0.42, 0.75], [0.75, 0.85], [0.18, 0.92],
], dtype=torch.float32)


@dataclass(frozen=True)
class TheoryConfig:
    """Sizes of the three experiments. QUICK is the same run, small enough for tests."""

    # 1. sampling vs learning
    train_sizes: tuple[int, ...] = (100, 200, 500, 1000, 2000, 5000, 10000)
    size_repeats: int = 5          # independent training sets per size
    test_size: int = 10000
    high_noise: float = 0.4        # experiment 1 is repeated at this noise rate
    # 2. independent samplers vote
    split_size: int = 4000         # m, training points per teacher
    max_teachers: int = 25
    ensemble_repeats: int = 100    # independent training sets (of max_teachers * m points)
    ensemble_test_size: int = 2000
    polar_grid: tuple[int, int] = (128, 256)  # radii x angles for each point's 1-NN behaviour
    # 3. distillation
    distill_teachers: int = 15
    pool_sizes: tuple[int, ...] = (20, 50, 100, 200, 500, 1000, 2000, 5000)
    distill_repeats: int = 8


FULL = TheoryConfig()
QUICK = TheoryConfig(train_sizes=(100, 400, 1600), size_repeats=2, test_size=2000,
                     split_size=200, max_teachers=9, ensemble_repeats=24, ensemble_test_size=600,
                     polar_grid=(48, 96),
                     distill_teachers=5, pool_sizes=(50, 200, 800), distill_repeats=6)


def true_class(x: torch.Tensor, centres: torch.Tensor = CENTRES) -> torch.Tensor:
    """float[..., 2] points -> int64[...]: index of the nearest centre (the Voronoi cell).

    Nearest centre = largest 2 x.c - |c|^2, a linear score (the cells are a linear classifier).
    """
    centres = centres.to(x.dtype)
    return (x @ (2 * centres.T) - (centres**2).sum(dim=1)).argmax(dim=-1)


def sample_inputs(n: int, generator: torch.Generator) -> torch.Tensor:
    """float32[n, 2], uniform on the unit square."""
    return torch.rand(n, 2, generator=generator)


def apply_transition(y_true: torch.Tensor, transition: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Noisy labels int64[N]: each drawn independently from T's row of its true class.

    The same noise as noise.apply_noise(mode="sampled"), drawn differently on purpose: that one
    draws from numpy's PCG64 seeded by an integer (a seed gives the same labels on any machine),
    this one from the experiment's torch.Generator, which every draw of an experiment advances
    in turn. Sharing one would change every number in theory.json, and the docs quote a full
    run's. The matrix itself is noise.paper_matrix.
    """
    return torch.multinomial(transition[y_true].float(), 1, generator=generator).squeeze(1)


def region_masses(centres: torch.Tensor = CENTRES, resolution: int = 1000) -> torch.Tensor:
    """float64[C]: area of each cell, from a resolution x resolution grid of cell midpoints."""
    ticks = (torch.arange(resolution, dtype=torch.float32) + 0.5) / resolution
    grid = torch.stack(torch.meshgrid(ticks, ticks, indexing="ij"), dim=-1)
    counts = torch.bincount(true_class(grid, centres).ravel(), minlength=centres.shape[0])
    return counts.to(torch.float64) / resolution**2


def bayes_accuracy(transition: torch.Tensor, masses: torch.Tensor, against: str = "clean") -> float:
    """Exact accuracy of the Bayes-optimal classifier f*(x) = argmax_c T[cell(x), c].

    against="noisy": E_x max_c T[cell(x), c] = sum_r mass_r max_c T[r, c] (0.8 here).
    against="clean": E_x [f*(x) = cell(x)] = sum_r mass_r [argmax_c T[r, c] = r] (1.0 here).
    For the swap matrix every row has the same maximum on its diagonal, so both values are
    exact whatever the cell areas; masses matter only for a T whose rows differ.
    """
    best = transition.argmax(dim=1)
    if against == "noisy":
        return float((masses * transition.max(dim=1).values).sum())
    return float((masses * (best == torch.arange(len(best))).to(torch.float64)).sum())


def vote_random_ties(teacher_labels: torch.Tensor, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """Ensemble label int64[N] from teacher_labels int64[N, K]: the most voted class, a tie
    broken uniformly at random among the tied classes (the rule plurality_probability assumes).
    """
    counts = vote_counts(teacher_labels, num_classes).double()
    # Counts are integers, so a uniform [0, 1) jitter only reorders tied classes, uniformly.
    jitter = torch.rand(counts.shape, generator=generator, dtype=torch.float64)
    return (counts + jitter).argmax(dim=1)


def odd_sqrt(n: int) -> int:
    """The odd integer nearest sqrt(n): the learner's k."""
    return max(1, 2 * round((math.sqrt(n) - 1) / 2) + 1)


# ------------------------------------------------------ Sampler behaviour of a 1-NN rule

def distance_to_cell_boundary(x: torch.Tensor, centres: torch.Tensor = CENTRES) -> torch.Tensor:
    """float32[N, 2] -> float64[N]: distance from each point to the edge of its own cell.

    A Voronoi cell is convex, so this is the distance to the nearest bisector
    (|x - c_j|^2 - |x - c_i|^2) / (2 |c_j - c_i|) over the other centres j.
    """
    xd, cd = x.to(torch.float64), centres.to(torch.float64)
    squared = torch.cdist(xd, cd, compute_mode="donot_use_mm_for_euclid_dist") ** 2
    own = squared.argmin(dim=1)
    gaps = torch.cdist(cd, cd, compute_mode="donot_use_mm_for_euclid_dist")[own]
    to_bisector = (squared - squared.gather(1, own[:, None])) / (2 * gaps.clamp(min=1e-12))
    return to_bisector.scatter(1, own[:, None], math.inf).min(dim=1).values


def nearest_neighbour_cell_probabilities(x: torch.Tensor, num_train: int, radii: int = 128,
                                         angles: int = 256, centres: torch.Tensor = CENTRES) -> torch.Tensor:
    """Chance that the nearest of num_train uniform training points lies in each cell.

    x: float32[N, 2] -> float64[N, C]. The nearest neighbour lies in the annulus
    [r0, r1] around x with probability (1 - A(r0))^m - (1 - A(r1))^m, A(r) the area of the
    disc of radius r inside the square, and is then uniform on that annulus, so its cell
    follows the annulus's cell fractions. Both are computed on a polar grid out to the
    radius beyond which the neighbour lies with probability < 1e-9; a point farther than
    that from its cell's edge gets its own cell with probability 1.
    """
    m = int(num_train)
    # (1 - pi r^2 / 4)^m <= 1e-9; pi r^2 / 4 bounds A(r) from below even at a corner.
    reach = min(math.sqrt(2.0), math.sqrt(4 * (1 - 1e-9 ** (1 / m)) / math.pi))
    out = torch.nn.functional.one_hot(true_class(x, centres), centres.shape[0]).to(torch.float64)
    near = torch.nonzero(distance_to_cell_boundary(x, centres) < reach).squeeze(1)
    step = reach / radii
    inner = torch.arange(radii, dtype=torch.float64) * step
    rho = inner + step / 2
    theta = (torch.arange(angles, dtype=torch.float64) + 0.5) * (2 * math.pi / angles)
    offsets = rho[:, None, None] * torch.stack([theta.cos(), theta.sin()], dim=-1)  # [R, A, 2]
    for block in torch.split(near, 32):
        points = x[block].to(torch.float64)[:, None, None, :] + offsets  # [B, R, A, 2]
        inside = ((points >= 0) & (points <= 1)).all(dim=-1)
        cells = true_class(points, centres)
        # Cell fractions of each annulus (by angle) and the annulus areas inside the square.
        counts = torch.zeros(len(block), radii, centres.shape[0], dtype=torch.float64)
        counts.scatter_add_(2, cells, inside.to(torch.float64))
        in_square = counts.sum(dim=2)
        fractions = counts / in_square.clamp(min=1)[..., None]
        annulus_area = math.pi * ((inner + step) ** 2 - inner**2) * in_square / angles
        outer_area = annulus_area.cumsum(dim=1).clamp(max=1.0)
        survive = (1 - outer_area) ** m
        first = torch.cat([torch.ones(len(block), 1, dtype=torch.float64), survive[:, :-1]], dim=1)
        cell_probs = ((first - survive)[..., None] * fractions).sum(dim=1)
        out[block] = cell_probs / cell_probs.sum(dim=1, keepdim=True)
    return out


def predicted_ensemble_accuracy(sampler_behaviour: torch.Tensor, y_true: torch.Tensor, max_teachers: int) -> np.ndarray:
    """Expected accuracy of the plurality of K independent samplers, K = 1..max_teachers.

    sampler_behaviour: float64[N, C], the label distribution of one teacher at each test
    point; y_true: int64[N]. Returns float64[max_teachers], the mean over points of the
    chance that the true class wins the vote (plurality_probability, random tie-break).
    """
    rows, inverse = np.unique(sampler_behaviour.numpy(), axis=0, return_inverse=True)
    wins = diagnostics.plurality_probability_all_k(rows, max_teachers)  # [K, U, C]
    return wins[:, inverse.ravel(), y_true.numpy()].mean(axis=1)


# --------------------------------------------------------------------------- Experiments

def sampling_vs_learning(config: TheoryConfig, transition: torch.Tensor, generator: torch.Generator) -> dict:
    """Experiment 1: sampler distance of 1-NN vs excess error of k-NN (k ~ sqrt(n)) as n grows.

    Both rules come from the same neighbour search on each of size_repeats training sets.
    The floor is the sampler distance an exact sampler scores on this finite test set.
    """
    x_test = sample_inputs(config.test_size, generator)
    y_test = true_class(x_test)
    floor = diagnostics.sampler_distance(y_test, apply_transition(y_test, transition, generator),
                                         transition, NUM_CLASSES)
    rows = {"sampler_distance": [], "learner_excess_error": [], "sampler_excess_error": []}
    ks = [odd_sqrt(n) for n in config.train_sizes]
    for n, k in zip(config.train_sizes, ks):
        per_repeat = {key: [] for key in rows}
        for _ in range(config.size_repeats):
            x = sample_inputs(n, generator)
            y = apply_transition(true_class(x), transition, generator)
            neighbours = NearestNeighbors(k).fit(x, y, NUM_CLASSES).neighbour_labels(x_test)
            nearest, learned = neighbours[:, 0], nearest_first_plurality(neighbours, NUM_CLASSES)
            per_repeat["sampler_distance"].append(diagnostics.sampler_distance(y_test, nearest, transition, NUM_CLASSES))
            per_repeat["learner_excess_error"].append(float((learned != y_test).double().mean()))
            per_repeat["sampler_excess_error"].append(float((nearest != y_test).double().mean()))
        for key, values in per_repeat.items():
            rows[key].append(values)
    result = {"n": list(config.train_sizes), "learner_k": ks, "sampler_distance_floor": floor}
    for key, values in rows.items():
        result[key] = np.mean(values, axis=1).tolist()
        result[key + "_std"] = np.std(values, axis=1, ddof=1).tolist()
    return result


def first_size_below(sizes: list[int], values: list[float], threshold: float) -> int | None:
    """The smallest n whose value is <= threshold, or None if none is."""
    return next((n for n, v in zip(sizes, values) if v <= threshold), None)


def teacher_votes(x_train: torch.Tensor, y_train: torch.Tensor, num_teachers: int,
                  queries: torch.Tensor) -> torch.Tensor:
    """1-NN teachers on num_teachers disjoint equal splits; their labels on queries, int64[M, K]."""
    splits = zip(torch.chunk(x_train, num_teachers), torch.chunk(y_train, num_teachers))
    return torch.stack([NearestNeighbors(1).fit(x, y, NUM_CLASSES).predict(queries) for x, y in splits], dim=1)


def ensemble_vs_teachers(config: TheoryConfig, transition: torch.Tensor, generator: torch.Generator) -> dict:
    """Experiment 2: accuracy of the plurality of K independent 1-NN samplers, K = 1..max.

    measured: mean over ensemble_repeats noisy training sets on one fixed test set, with its
    standard error; predicted: predicted_ensemble_accuracy with each test point's exact
    1-NN behaviour nearest_neighbour_cell_probabilities(m) @ T.
    """
    x_test = sample_inputs(config.ensemble_test_size, generator)
    y_test = true_class(x_test)
    m, max_k = config.split_size, config.max_teachers
    radii, angles = config.polar_grid
    behaviour = nearest_neighbour_cell_probabilities(x_test, m, radii, angles) @ transition  # [N, C]
    predicted = predicted_ensemble_accuracy(behaviour, y_test, max_k)
    measured, agreement, pointwise = [], [], []
    for _ in range(config.ensemble_repeats):
        x = sample_inputs(m * max_k, generator)
        votes = teacher_votes(x, apply_transition(true_class(x), transition, generator), max_k, x_test)
        measured.append([float((vote_random_ties(votes[:, :k], NUM_CLASSES, generator) == y_test).double().mean())
                         for k in range(1, max_k + 1)])
        agreement.append(diagnostics.teacher_agreement(votes))
        pointwise.append(diagnostics.pointwise_sampler_distance(y_test, votes, transition))
    measured = np.array(measured)
    return {
        "k": list(range(1, max_k + 1)), "split_size": m,
        "measured": measured.mean(axis=0).tolist(), "measured_std": measured.std(axis=0, ddof=1).tolist(),
        "measured_se": (measured.std(axis=0, ddof=1) / math.sqrt(len(measured))).tolist(),
        "predicted": predicted.tolist(),
        "teacher_agreement": float(np.mean(agreement)),
        "predicted_teacher_agreement": float((behaviour**2).sum(dim=1).mean()),
        "pointwise_sampler_distance": float(np.mean(pointwise)),
    }


def knn_student_accuracy(pool: torch.Tensor, pool_labels: torch.Tensor, k: int,
                         x_test: torch.Tensor, y_test: torch.Tensor) -> float:
    """Clean test accuracy of the k-NN rule trained on a labelled pool (the student)."""
    student = NearestNeighbors(min(k, len(pool))).fit(pool, pool_labels, NUM_CLASSES)
    return float((student.predict(x_test) == y_test).double().mean())


def distillation(config: TheoryConfig, transition: torch.Tensor, generator: torch.Generator) -> dict:
    """Experiment 3: a student on a pool labelled by the ensemble vs a random teacher per example.

    Each repeat draws distill_teachers 1-NN teachers (split_size points each) and one pool
    of the largest size; smaller pools are its prefixes. Two students per labelling: the
    learner (k-NN, k ~ sqrt(pool): the main result) and a sampler (1-NN). The teachers'
    own test accuracy (one teacher, and their plurality) is recorded for reference.
    """
    x_test = sample_inputs(config.ensemble_test_size, generator)
    y_test = true_class(x_test)
    m, teachers = config.split_size, config.distill_teachers
    keys = ["ensemble_distill", "random_distill", "sampler_student_ensemble", "sampler_student_random"]
    scores = {key: [] for key in keys}
    teacher_accuracy, ensemble_accuracy = [], []  # the teachers themselves, for reference
    for _ in range(config.distill_repeats):
        x = sample_inputs(m * teachers, generator)
        y = apply_transition(true_class(x), transition, generator)
        pool = sample_inputs(max(config.pool_sizes), generator)
        votes = teacher_votes(x, y, teachers, torch.cat([pool, x_test]))
        votes, test_votes = votes[:len(pool)], votes[len(pool):]
        ensemble, random = vote_random_ties(votes, NUM_CLASSES, generator), random_teacher_labels(votes, generator)
        teacher_accuracy.append(float((test_votes == y_test[:, None]).double().mean()))
        ensemble_accuracy.append(float((vote_random_ties(test_votes, NUM_CLASSES, generator) == y_test).double().mean()))
        per_pool = {key: [] for key in keys}
        for size in config.pool_sizes:
            for key, labels, k in [("ensemble_distill", ensemble, odd_sqrt(size)),
                                   ("random_distill", random, odd_sqrt(size)),
                                   ("sampler_student_ensemble", ensemble, 1),
                                   ("sampler_student_random", random, 1)]:
                per_pool[key].append(knn_student_accuracy(pool[:size], labels[:size], k, x_test, y_test))
        for key, values in per_pool.items():
            scores[key].append(values)
    result = {"pool": list(config.pool_sizes), "teachers": teachers, "split_size": m,
              "student": "k-NN with k ~ sqrt(pool); sampler_student_*: 1-NN",
              "teacher_accuracy": float(np.mean(teacher_accuracy)),
              "teacher_ensemble_accuracy": float(np.mean(ensemble_accuracy))}
    for key, values in scores.items():
        result[key] = np.mean(values, axis=0).tolist()
        result[key + "_std"] = np.std(values, axis=0, ddof=1).tolist()
    return result


def run_theory(config: TheoryConfig, seed: int = 0) -> dict:
    """All three experiments; returns the results dict that theory.json holds."""
    start = time.perf_counter()
    transition = torch.from_numpy(paper_matrix(NUM_CLASSES, NOISE_RATE))
    masses = region_masses()
    steps = [("sampling_vs_learning", sampling_vs_learning, transition),
             ("sampling_vs_learning_high_noise", sampling_vs_learning,
              torch.from_numpy(paper_matrix(NUM_CLASSES, config.high_noise))),
             ("ensemble", ensemble_vs_teachers, transition),
             ("distillation", distillation, transition)]
    experiments = {}
    for offset, (name, experiment, matrix) in enumerate(steps):
        began = time.perf_counter()
        experiments[name] = experiment(config, matrix, torch.Generator().manual_seed(seed * 1000 + offset))
        experiments[name]["seconds"] = round(time.perf_counter() - began, 2)
    experiments["sampling_vs_learning_high_noise"]["noise_rate"] = config.high_noise
    summary = {}
    for name in ("sampling_vs_learning", "sampling_vs_learning_high_noise"):
        curve = experiments[name]
        for threshold in (0.1, 0.05):
            summary[f"{name}: smallest n with sampler distance <= {threshold}"] = first_size_below(
                curve["n"], curve["sampler_distance"], threshold)
            summary[f"{name}: smallest n with learner excess error <= {threshold}"] = first_size_below(
                curve["n"], curve["learner_excess_error"], threshold)
    ensemble = experiments["ensemble"]
    gap = np.abs(np.array(ensemble["measured"]) - np.array(ensemble["predicted"]))
    summary["ensemble: max |measured - predicted| / standard error"] = float(
        (gap / np.maximum(ensemble["measured_se"], 1e-12)).max())
    summary["ensemble: measured accuracy at the largest K"] = ensemble["measured"][-1]
    return {
        "test_labels": "clean",
        "bayes_accuracy": bayes_accuracy(transition, masses, "clean"),
        "bayes_accuracy_noisy_labels": bayes_accuracy(transition, masses, "noisy"),
        "noise_rate": NOISE_RATE, "num_classes": NUM_CLASSES,
        "centres": CENTRES.tolist(), "region_masses": masses.tolist(),
        **experiments, "summary": summary,
        "config": asdict(config), "seed": seed, "torch": torch.__version__,
        "seconds": round(time.perf_counter() - start, 2),
    }
