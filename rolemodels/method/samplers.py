"""Non-neural samplers: the nearest-neighbour rule and an interpolating kernel machine.

Both fit the noisy training labels exactly, so on a new input they return the label of
a training point close to it: a draw from the label distribution near the input. The
paper calls such a model a conditional sampler. Both share one interface:

    sampler = NearestNeighbors(k=1).fit(x, y, num_classes)   # x: [N, ...], y: int64[N]
    probs = sampler.predict_proba(queries)                   # float32[M, C]
    labels = sampler.predict(queries)                        # int64[M]
    sampler.save("teacher.pt"); same = load_sampler("teacher.pt")

Inputs of any shape are flattened to float32[N, D]. Distances to the training set are
computed for a block of queries at a time, so memory stays bounded by DISTANCE_BUDGET.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

import torch

from rolemodels.errors import UserError
from rolemodels.labels import check_labels
from rolemodels.method.combine import vote_counts, vote_shares

# Entries of one [queries, training points] distance block held in memory at once.
DISTANCE_BUDGET = 2**22
# Up to this many features, distances use the exact difference formula; above it, the
# faster matrix-multiply formula (whose rounding error is about 1e-7 of the squared norm).
EXACT_DISTANCE_MAX_DIM = 32
# The kernel machine solves a dense [N, N] float64 system: 10,000 points need 0.8 GB.
MAX_KERNEL_POINTS = 10_000
# The default bandwidth is the median distance over pairs of at most this many points.
BANDWIDTH_SAMPLE = 2_000


# ----------------------------------------------------------------------------- Inputs

def flatten_inputs(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """Any tensor [N, ...] -> float32[N, D] (D = product of the trailing dims), finite."""
    x = torch.as_tensor(x)
    if x.dim() < 1 or x.shape[0] == 0:
        raise UserError(f"{name}: expected a non-empty tensor [N, ...], got shape {tuple(x.shape)}")
    flat = x.reshape(x.shape[0], -1).to(torch.float32)
    if flat.shape[1] == 0:
        raise UserError(f"{name}: each example has no features (shape {tuple(x.shape)})")
    if not torch.isfinite(flat).all():
        raise UserError(f"{name}: contains NaN or infinite values")
    return flat


def training_labels(y: torch.Tensor, num_examples: int, num_classes: int) -> torch.Tensor:
    """Labels of integer dtype [N] -> int64[N], checked against the examples and classes."""
    return torch.from_numpy(check_labels(y, "y", num_classes, num_examples, floats=False,
                                         length_of="x", unit="examples"))


def query_blocks(num_queries: int, num_train: int, budget: int | None = None) -> Iterator[slice]:
    """Slices over the queries such that each [block, num_train] distance block fits the
    budget (default DISTANCE_BUDGET entries)."""
    size = max(1, (budget or DISTANCE_BUDGET) // max(1, num_train))
    for start in range(0, num_queries, size):
        yield slice(start, min(start + size, num_queries))


def pairwise_distances(queries: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    """Euclidean distances: queries [B, D], train [N, D] (same float dtype) -> [B, N]."""
    exact = queries.shape[1] <= EXACT_DISTANCE_MAX_DIM
    mode = "donot_use_mm_for_euclid_dist" if exact else "use_mm_for_euclid_dist_if_necessary"
    return torch.cdist(queries, train, compute_mode=mode)


# ---------------------------------------------------------------------- Nearest neighbours

def nearest_first_plurality(neighbour_labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Plurality of neighbours' labels; a tie goes to the tied class whose member is nearest.

    neighbour_labels: int64[B, k], column 0 the nearest. Returns int64[B].
    """
    batch, k = neighbour_labels.shape
    counts = vote_counts(neighbour_labels, num_classes)
    # Closeness of each class's nearest member: k - rank, so the nearest scores k; absent 0.
    closeness = torch.zeros(batch, num_classes, dtype=torch.int64)
    ranks = torch.arange(k, dtype=torch.int64).expand(batch, k)
    closeness.scatter_reduce_(1, neighbour_labels, k - ranks, reduce="amax")
    return (counts * (k + 1) + closeness).argmax(dim=1)


def check_queries(x: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    """Queries flattened to float32 [M, D], refused unless D matches the training inputs [N, D]."""
    queries = flatten_inputs(x, "queries")
    if queries.shape[1] != train.shape[1]:
        raise UserError(f"queries: {queries.shape[1]} features each, but the training set has {train.shape[1]}")
    return queries


class NearestNeighbors:
    """k-nearest-neighbour rule. k=1 is a sampler: it copies the nearest training label.

    predict_proba gives the neighbours' vote shares (a one-hot for k=1); predict takes the
    plurality, breaking a tie in favour of the class whose member is nearest.
    """

    def __init__(self, k: int = 1) -> None:
        if int(k) != k or k < 1:
            raise UserError(f"k: expected a positive integer, got {k}")
        self.k = int(k)
        self.x: torch.Tensor | None = None  # float32[N, D]
        self.y: torch.Tensor | None = None  # int64[N]
        self.num_classes = 0

    def fit(self, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> "NearestNeighbors":
        """Store the training set: x [N, ...], y int64[N] in [0, num_classes)."""
        flat = flatten_inputs(x, "x")
        labels = training_labels(y, flat.shape[0], num_classes)
        if self.k > flat.shape[0]:
            raise UserError(f"k={self.k} neighbours, but only {flat.shape[0]:,} training examples")
        self.x, self.y, self.num_classes = flat, labels, int(num_classes)
        return self

    def neighbour_labels(self, x: torch.Tensor) -> torch.Tensor:
        """x [M, ...] -> int64[M, k] labels of the k nearest training points, nearest first."""
        queries = self._check_queries(x)
        out = torch.empty(queries.shape[0], self.k, dtype=torch.int64)
        for block in query_blocks(queries.shape[0], self.x.shape[0]):
            distances = pairwise_distances(queries[block], self.x)
            if self.k == 1:  # argmin is several times faster than topk
                nearest = distances.argmin(dim=1, keepdim=True)
            else:
                nearest = distances.topk(self.k, dim=1, largest=False, sorted=True).indices
            out[block] = self.y[nearest]
        return out

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """x [M, ...] -> float32[M, C]: share of the k nearest neighbours voting each class."""
        return vote_shares(self.neighbour_labels(x), self.num_classes)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """x [M, ...] -> int64[M]: plurality of the k neighbours, ties to the nearest."""
        return nearest_first_plurality(self.neighbour_labels(x), self.num_classes)

    def save(self, path: str | Path) -> None:
        """Write the training set and k with torch.save (tensors and numbers only)."""
        self._check_fitted()
        state = {"sampler": "NearestNeighbors", "k": self.k, "num_classes": self.num_classes,
                 "x": self.x, "y": self.y}
        torch.save(state, Path(path))

    @classmethod
    def load(cls, path: str | Path) -> "NearestNeighbors":
        """Read a file written by save."""
        state = read_state(path, "NearestNeighbors")
        model = cls(k=int(state["k"]))
        return model.fit(state["x"], state["y"], int(state["num_classes"]))

    def _check_fitted(self) -> None:
        if self.x is None:
            raise UserError("NearestNeighbors: call fit before predicting or saving")

    def _check_queries(self, x: torch.Tensor) -> torch.Tensor:
        self._check_fitted()
        return check_queries(x, self.x)


# ------------------------------------------------------------------- Kernel interpolation

def laplace_kernel(a: torch.Tensor, b: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """exp(-||a_i - b_j|| / bandwidth): a float64[B, D], b float64[N, D] -> float64[B, N]."""
    return pairwise_distances(a, b).div_(-bandwidth).exp_()


def median_pairwise_distance(x: torch.Tensor, max_points: int = BANDWIDTH_SAMPLE) -> float:
    """Median distance over pairs i < j of x float32[N, D] (N >= 2).

    Above max_points, the pairs of a fixed random subset (seed 0) of max_points points.
    """
    if x.shape[0] > max_points:
        subset = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))[:max_points]
        x = x[subset]
    x = x.to(torch.float64)
    rows, cols = torch.triu_indices(x.shape[0], x.shape[0], offset=1)
    return float(torch.quantile(pairwise_distances(x, x)[rows, cols], 0.5))  # mean of the middle two


def solve_interpolation(gram: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Coefficients alpha with gram @ alpha = targets: gram float64[N, N] (symmetric), targets
    float64[N, C] -> float64[N, C].

    The Laplace kernel matrix of distinct points is positive definite, so a Cholesky solve
    gives the exact (and minimum-norm) interpolant. Only if the factorisation fails (repeated
    points) is a ridge added, starting at 1e-12 and growing until it succeeds.
    """
    ridge = 0.0
    eye = torch.eye(gram.shape[0], dtype=gram.dtype)
    for _ in range(10):
        factor, info = torch.linalg.cholesky_ex(gram + ridge * eye if ridge else gram)
        if int(info) == 0:
            return torch.cholesky_solve(targets, factor)
        ridge = 1e-12 if ridge == 0.0 else ridge * 100
    return torch.linalg.lstsq(gram, targets).solution


def clip_and_normalise(scores: torch.Tensor) -> torch.Tensor:
    """Interpolant values float64[M, C] -> float32[M, C]: clipped at 0, rows summing to 1.

    A row with no positive value becomes a one-hot of its largest value, so the argmax of
    the result is always the argmax of the scores.
    """
    clipped = scores.clamp(min=0.0)
    total = clipped.sum(dim=1, keepdim=True)
    one_hot = torch.nn.functional.one_hot(scores.argmax(dim=1), scores.shape[1]).to(scores.dtype)
    probs = torch.where(total > 0, clipped / total.clamp(min=1e-300), one_hot)
    return probs.to(torch.float32)


class KernelInterpolator:
    """Minimum-norm interpolation of one-hot labels with the Laplace kernel.

    f(x) = sum_i alpha_i exp(-||x - x_i|| / bandwidth) with f(x_i) = onehot(y_i) exactly, so
    its argmax reproduces every training label. bandwidth=None uses the median pairwise
    distance of the training inputs.
    """

    def __init__(self, bandwidth: float | None = None) -> None:
        if bandwidth is not None and not (math.isfinite(bandwidth) and bandwidth > 0):
            raise UserError(f"bandwidth: expected a positive number or None, got {bandwidth}")
        self.bandwidth = bandwidth
        self.x: torch.Tensor | None = None  # float32[N, D]
        self.alpha: torch.Tensor | None = None  # float64[N, C]
        self.num_classes = 0
        self.fitted_bandwidth = 0.0
        self._train64: torch.Tensor | None = None  # float64 copy of x, made on first prediction

    def fit(self, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> "KernelInterpolator":
        """Solve for the interpolating coefficients: x [N, ...], y int64[N]."""
        flat = flatten_inputs(x, "x")
        labels = training_labels(y, flat.shape[0], num_classes)
        if flat.shape[0] > MAX_KERNEL_POINTS:
            raise UserError(f"x: {flat.shape[0]:,} training points, but the kernel machine "
                            f"solves a dense system and takes at most {MAX_KERNEL_POINTS:,}")
        bandwidth = self.bandwidth
        if bandwidth is None:
            bandwidth = median_pairwise_distance(flat) if flat.shape[0] > 1 else 1.0
            bandwidth = bandwidth if bandwidth > 0 else 1.0  # all points identical
        train = flat.to(torch.float64)
        targets = torch.nn.functional.one_hot(labels, int(num_classes)).to(torch.float64)
        gram = laplace_kernel(train, train, bandwidth)
        self.alpha = solve_interpolation(gram, targets)
        self.x, self.num_classes, self.fitted_bandwidth = flat, int(num_classes), float(bandwidth)
        self._train64 = train
        return self

    def decision_function(self, x: torch.Tensor) -> torch.Tensor:
        """x [M, ...] -> float64[M, C]: the interpolant's raw values."""
        queries = self._check_queries(x).to(torch.float64)
        if self._train64 is None:  # converted once, then reused by every call
            self._train64 = self.x.to(torch.float64)
        train = self._train64
        out = torch.empty(queries.shape[0], self.num_classes, dtype=torch.float64)
        for block in query_blocks(queries.shape[0], train.shape[0]):
            out[block] = laplace_kernel(queries[block], train, self.fitted_bandwidth) @ self.alpha
        return out

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """x [M, ...] -> float32[M, C]: the interpolant clipped at 0 and renormalised."""
        return clip_and_normalise(self.decision_function(x))

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """x [M, ...] -> int64[M]: argmax of the interpolant."""
        return self.decision_function(x).argmax(dim=1)

    def save(self, path: str | Path) -> None:
        """Write inputs, coefficients and bandwidth with torch.save."""
        self._check_fitted()
        state = {"sampler": "KernelInterpolator", "bandwidth": self.fitted_bandwidth,
                 "num_classes": self.num_classes, "x": self.x, "alpha": self.alpha}
        torch.save(state, Path(path))

    @classmethod
    def load(cls, path: str | Path) -> "KernelInterpolator":
        """Read a file written by save (no refit: the coefficients are stored)."""
        state = read_state(path, "KernelInterpolator")
        model = cls(bandwidth=float(state["bandwidth"]))
        model.x = flatten_inputs(state["x"], f"{path}: x")
        model.alpha = torch.as_tensor(state["alpha"], dtype=torch.float64)
        model.num_classes = int(state["num_classes"])
        model.fitted_bandwidth = float(state["bandwidth"])
        if model.alpha.shape != (model.x.shape[0], model.num_classes):
            raise UserError(f"{path}: coefficients of shape {tuple(model.alpha.shape)} do not "
                            f"match {model.x.shape[0]} points and {model.num_classes} classes")
        return model

    def _check_fitted(self) -> None:
        if self.x is None:
            raise UserError("KernelInterpolator: call fit before predicting or saving")

    def _check_queries(self, x: torch.Tensor) -> torch.Tensor:
        self._check_fitted()
        return check_queries(x, self.x)


# ---------------------------------------------------------------------------- Files

SAMPLERS = {"NearestNeighbors": NearestNeighbors, "KernelInterpolator": KernelInterpolator}


def read_state(path: str | Path, expected: str | None = None) -> dict:
    """Load a saved sampler's dict (weights_only), checking which sampler wrote it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"sampler file {path}: not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt file or not a torch file
        from rolemodels.runtime.files import reason

        raise UserError(f"sampler file {path}: cannot be read as a saved sampler ({reason(err)})") from err
    kind = state.get("sampler") if isinstance(state, dict) else None
    if kind not in SAMPLERS:
        raise UserError(f"sampler file {path}: not written by a rolemodels sampler")
    if expected is not None and kind != expected:
        raise UserError(f"sampler file {path}: holds a {kind}, expected a {expected}")
    return state


def load_sampler(path: str | Path) -> NearestNeighbors | KernelInterpolator:
    """Load whichever sampler a file holds."""
    return SAMPLERS[read_state(path)["sampler"]].load(path)
