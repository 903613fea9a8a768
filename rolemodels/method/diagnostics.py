"""Sampler measurements from the paper, as pure functions: arrays in, numbers or arrays out.

A model trained to zero error on labels drawn from a transition matrix T (row = true class,
column = observed label) is a conditional sampler when, on new inputs of true class c, its
predictions are distributed like T's row c. These functions measure how close a model or a
set of teachers comes to that, and what a plurality vote of such samplers achieves.

Labels may be numpy arrays or torch tensors; results are numpy arrays or Python floats.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from rolemodels.errors import UserError
from rolemodels.labels import as_numpy, check_labels, check_range, label_values
from rolemodels.method.combine import vote_shares
from rolemodels.method.metrics import confusion

# plurality_probability works with factorials up to this many votes (float64 stays exact
# enough; 100! is about 1e158).
MAX_VOTES = 100
# Entries of the [rows, C, K, nodes, K + 1] series array that plurality_probability holds
# at once (about 32 MB of float64; the prefix products take C times that).
PLURALITY_BUDGET = 2**22


# ----------------------------------------------------------------------------- Inputs

def as_teacher_labels(values: Any, num_examples: int | None = None,
                      num_classes: int | None = None) -> np.ndarray:
    """Teacher predictions uint8/int [N, K] (one column per teacher) -> int64[N, K]."""
    labels = label_values(values, "teacher_labels", floats=False)
    if labels.ndim != 2 or labels.shape[1] == 0:
        raise UserError(f"teacher_labels: shape {labels.shape}; expected [N, K] with K >= 1 teachers")
    if num_examples is not None and labels.shape[0] != num_examples:
        raise UserError(f"teacher_labels: {labels.shape[0]:,} rows, but y_true has {num_examples:,} labels")
    return check_range(labels, "teacher_labels", num_classes)


def check_transition_matrix(transition: Any, num_classes: int | None = None) -> np.ndarray:
    """T [C, C], rows = true class, nonnegative rows summing to 1 -> float64[C, C]."""
    matrix = as_numpy(transition).astype(np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise UserError(f"transition matrix: expected a square [C, C] matrix, got shape {matrix.shape}")
    if num_classes is not None and matrix.shape[0] != num_classes:
        raise UserError(f"transition matrix: {matrix.shape[0]} classes, expected {num_classes}")
    if (matrix < 0).any() or not np.allclose(matrix.sum(axis=1), 1.0, atol=1e-6):
        raise UserError("transition matrix: rows must be nonnegative and sum to 1")
    return matrix


# ------------------------------------------------------------------ Sampler distance

def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int) -> np.ndarray:
    """Counts of (true, predicted) pairs: y_true, y_pred int[N] -> int64[C, C], rows = true."""
    truth = check_labels(y_true, "y_true", num_classes, floats=False)
    pred = check_labels(y_pred, "y_pred", num_classes, truth.size, floats=False, length_of="y_true", unit="labels")
    return confusion(torch.from_numpy(pred), torch.from_numpy(truth), num_classes).numpy()


def total_variation(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """0.5 * sum |p - q| over the last axis: float[..., C] twice -> float64[...]."""
    return 0.5 * np.abs(np.asarray(p, np.float64) - np.asarray(q, np.float64)).sum(axis=-1)


def sampler_distance(y_true: Any, y_pred: Any, transition: Any, num_classes: int) -> float:
    """How far a model's test confusion is from T: 0 for a perfect sampler.

    Mean, over the true classes present in y_true, of the total variation between the
    row-normalised confusion row (the model's predictions on that class) and T's row.
    A perfect classifier scores the noise rate 1 - T[c, c] averaged over classes.
    y_true, y_pred: int[N]; transition: float[C, C].
    """
    matrix = check_transition_matrix(transition, num_classes)
    counts = confusion_matrix(y_true, y_pred, num_classes)
    present = counts.sum(axis=1) > 0
    if not present.any():
        raise UserError("y_true: no test labels to measure the sampler distance on")
    rows = counts[present] / counts[present].sum(axis=1, keepdims=True)
    return float(total_variation(rows, matrix[present]).mean())


def pointwise_sampler_distance(y_true: Any, teacher_labels: Any, transition: Any) -> float:
    """Mean over test points of TV(teachers' vote shares at the point, T's row of its class).

    y_true: int[N]; teacher_labels: uint8/int[N, K]; transition: float[C, C]. With K
    independent exact samplers this tends to 0 as K grows (about sqrt(C / K) for small K).
    """
    matrix = check_transition_matrix(transition)
    num_classes = matrix.shape[0]
    truth = check_labels(y_true, "y_true", num_classes, floats=False)
    labels = as_teacher_labels(teacher_labels, truth.size, num_classes)
    shares = vote_shares(torch.from_numpy(labels), num_classes, dtype=torch.float64).numpy()
    if truth.size == 0:
        raise UserError("y_true: no test points")
    return float(total_variation(shares, matrix[truth]).mean())


def teacher_agreement(teacher_labels: Any) -> float:
    """Mean over teacher pairs (a < b) and points of [teacher a agrees with teacher b].

    teacher_labels: int[N, K], K >= 2. Counted per point as sum_c n_c (n_c - 1) / (K (K - 1)).
    """
    labels = as_teacher_labels(teacher_labels)
    n, k = labels.shape
    if k < 2 or n == 0:
        raise UserError(f"teacher_labels: agreement needs at least 2 teachers and 1 point, "
                        f"got shape {labels.shape}")
    # shares * K, not the integer counts: from K = 22 some differ in the last bit, and the
    # recorded numbers (theory.json, results.json) were computed this way.
    counts = vote_shares(torch.from_numpy(labels), int(labels.max()) + 1, dtype=torch.float64).numpy() * k
    return float((counts * (counts - 1)).sum() / (n * k * (k - 1)))


def vote_share_histogram(y_true: Any, teacher_labels: Any, partner: Any) -> np.ndarray:
    """How many points have 0, 1, ..., K teachers voting for the noisy partner of their class.

    y_true: int[N]; teacher_labels: int[N, K]; partner: int64[C], partner[c] the class that
    c's labels are flipped to. Returns int64[K + 1], summing to N.
    """
    partners = check_labels(partner, "partner", floats=False)
    num_classes = partners.size
    truth = check_labels(y_true, "y_true", num_classes, floats=False)
    labels = as_teacher_labels(teacher_labels, truth.size)
    votes = (labels == partners[truth][:, None]).sum(axis=1)
    return np.bincount(votes, minlength=labels.shape[1] + 1).astype(np.int64)


# ------------------------------------------------------------------ Plurality vote

def gauss_legendre_unit(num_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights integrating polynomials of degree < 2 * num_nodes exactly on [0, 1]."""
    nodes, weights = np.polynomial.legendre.leggauss(num_nodes)
    return (nodes + 1) / 2, weights / 2


def truncated_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Product of power series truncated to their length: float64[..., L] twice -> [..., L]."""
    length = a.shape[-1]
    out = np.zeros(np.broadcast_shapes(a.shape, b.shape))
    for m in range(length):
        out[..., m:] += a[..., m:m + 1] * b[..., :length - m]
    return out


def plurality_probability_all_k(p: Any, k_max: int) -> np.ndarray:
    """Chance that each class wins a plurality vote of K independent draws from p, K = 1..k_max.

    p: float[..., C], each row a distribution over classes. Returns float64[k_max, ..., C];
    entry [K - 1, ..., c] is the probability that class c wins among K draws, where a tie
    between the classes with the most votes is broken uniformly at random (each tied class
    wins with probability 1 / number tied). Each row of the result sums to 1.

    Method (no enumeration): class c wins with j votes when every other class i has fewer
    than j votes, or exactly j (a tie). With exponential generating functions
        g_i(z, u) = sum_{n < j} (p_i z)^n / n!  +  u (p_i z)^j / j!,
    P(c wins with j votes) = K! p_c^j / j! * integral_0^1 [z^(K-j)] prod_{i != c} g_i(z, u) du,
    since a tie with t other classes carries u^t and integral u^t du = 1 / (t + 1). The
    integrand has degree C - 1 in u, so Gauss-Legendre with C // 2 + 1 nodes is exact; the
    products over i != c come from prefix and suffix products. Cost ~ C * k_max^3 per row.
    """
    probs = as_numpy(p).astype(np.float64)
    if probs.ndim < 1 or probs.shape[-1] == 0:
        raise UserError(f"p: expected distributions [..., C], got shape {probs.shape}")
    if int(k_max) != k_max or not 1 <= k_max <= MAX_VOTES:
        raise UserError(f"K: expected an integer number of votes in [1, {MAX_VOTES}], got {k_max}")
    if not np.isfinite(probs).all() or (probs < 0).any() or not np.allclose(probs.sum(-1), 1, atol=1e-6):
        raise UserError("p: each row must be nonnegative and sum to 1")
    lead, num_classes = probs.shape[:-1], probs.shape[-1]
    rows = (probs / probs.sum(-1, keepdims=True)).reshape(-1, num_classes)
    # A class with p = 0 never wins and leaves the others' chances alone, so each block of
    # rows is solved over only its largest support (rows sorted by support size).
    support = (rows > 0).sum(axis=1)
    order = np.argsort(support, kind="stable")
    out = np.zeros((int(k_max), rows.shape[0], num_classes))
    block_rows = max(1, PLURALITY_BUDGET // (num_classes * (num_classes // 2 + 1) * int(k_max) * (int(k_max) + 1)))
    for start in range(0, rows.shape[0], block_rows):
        block = order[start:start + block_rows]
        columns = np.argsort(-rows[block], axis=1, kind="stable")[:, :support[block].max()]
        wins = plurality_block(np.take_along_axis(rows[block], columns, axis=1), int(k_max))
        out[:, block[:, None], columns] = wins
    return out.reshape(int(k_max), *lead, num_classes)


def plurality_block(p: np.ndarray, k_max: int) -> np.ndarray:
    """plurality_probability_all_k for p float64[B, C] -> float64[k_max, B, C]."""
    batch, num_classes = p.shape
    degrees = np.arange(k_max + 1)
    log_fact = np.array([math.lgamma(n + 1) for n in range(k_max + 1)])
    with np.errstate(divide="ignore", invalid="ignore"):
        log_p = np.log(p)  # -inf where p = 0
        # series[b, i, n] = p_i^n / n! (with 0^0 = 1)
        series = np.exp(np.where(degrees == 0, 0.0, degrees * log_p[..., None]) - log_fact)
    nodes, weights = gauss_legendre_unit(num_classes // 2 + 1)
    thresholds = np.arange(1, k_max + 1)  # j, the winner's vote count
    # mask[j, u, n] = 1 for n < j, u for n == j, 0 above: g_i for every j and node at once
    below = (degrees[None, :] < thresholds[:, None]).astype(np.float64)
    at = (degrees[None, :] == thresholds[:, None]).astype(np.float64)
    mask = below[:, None, :] + nodes[None, :, None] * at[:, None, :]
    factors = series[:, :, None, None, :] * mask  # [B, C, J, U, L]
    prefix = [np.zeros_like(factors[:, 0])]
    prefix[0][..., 0] = 1.0
    for i in range(num_classes - 1):
        prefix.append(truncated_product(prefix[-1], factors[:, i]))
    suffix = np.zeros_like(factors[:, 0])
    suffix[..., 0] = 1.0
    wins = np.zeros((k_max, batch, num_classes))
    for c in range(num_classes - 1, -1, -1):
        others = np.einsum("bjul,u->bjl", truncated_product(prefix[c], suffix), weights)
        # others: [B, J, L] after integrating u; coefficient K - j gives the other classes.
        for k in range(1, k_max + 1):
            j = thresholds[:k]
            log_scale = log_fact[k] - log_fact[j] + j * log_p[:, c:c + 1]
            wins[k - 1, :, c] = (np.exp(log_scale) * others[:, j - 1, k - j]).sum(axis=1)
        suffix = truncated_product(suffix, factors[:, c])
    return wins


def plurality_probability(p: Any, k: int) -> np.ndarray:
    """Chance that each class wins a plurality vote of k independent draws from p.

    p: float[..., C] -> float64[..., C]. Ties are broken uniformly at random among the tied
    classes, as in theory.plurality_vote. See plurality_probability_all_k for the method.
    """
    return plurality_probability_all_k(p, k)[int(k) - 1]
