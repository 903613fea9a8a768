"""Label noise: transition matrices, applying them to labels, and measuring the result.

A transition matrix T is float64 [C, C] with rows = true class and columns = given label:
T[c, j] is the probability that an image of class c carries label j. The paper's CIFAR-10
noise ("20%-fixed, non-uniform") is `transition_matrix("paper", 10)`: 0.8 on the diagonal
and 0.2 on the pair c -> (c + 5) mod 10, applied as an exact count per class (`mode="exact"`):
exactly 1,000 of the 5,000 images of every class are flipped, chosen once per seed.

Everything here is a small function over arrays; randomness comes only from
`numpy.random.Generator(PCG64(seed))`, so the same seed gives the same labels on any machine.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from rolemodels.errors import UserError
from rolemodels.labels import check_labels, check_num_classes
from rolemodels.method.metrics import confusion

PRESETS = ("paper", "symmetric", "pairflip", "matrix", "random")
MODES = ("exact", "sampled")
ROW_SUM_TOLERANCE = 1e-6


class NoiseWarning(UserWarning):
    """A transition matrix that is valid but probably not what was meant (no diagonal dominance)."""


# ----------------------------------------------------------------------------- matrices


def check_rate(rate: float) -> float:
    """Return `rate` as a float after checking 0 <= rate < 1; UserError otherwise."""
    try:
        value = float(rate)
    except (TypeError, ValueError):
        raise UserError(f"noise rate {rate!r} is not a number; expected a value in [0, 1)") from None
    if not (0.0 <= value < 1.0):  # also rejects NaN
        raise UserError(f"noise rate {rate!r} is outside [0, 1); expected e.g. 0.2")
    return value


def paper_matrix(num_classes: int, rate: float = 0.2, shift: int | None = None) -> np.ndarray:
    """The paper's pair noise: class c keeps its label with 1 - rate, else gets (c + shift) mod C.

    shift defaults to C // 2 (5 for CIFAR-10: plane<->dog, car<->frog, bird<->horse, cat<->ship,
    deer<->truck). Returns float64 [C, C].
    """
    num_classes = check_num_classes(num_classes, 2)
    rate = check_rate(rate)
    shift = num_classes // 2 if shift is None else shift
    if isinstance(shift, (bool, np.bool_)) or not isinstance(shift, (int, np.integer)):
        raise UserError(f"shift {shift!r} is not an integer")
    if shift % num_classes == 0:
        raise UserError(
            f"shift {shift} maps every class onto itself with {num_classes} classes; "
            f"expected a shift that is not a multiple of {num_classes} (default {num_classes // 2})"
        )
    classes = np.arange(num_classes)
    T = np.zeros((num_classes, num_classes))
    T[classes, classes] = 1.0 - rate
    T[classes, (classes + shift) % num_classes] += rate
    return T


def symmetric_matrix(num_classes: int, rate: float = 0.2) -> np.ndarray:
    """Symmetric noise: keep the label with 1 - rate, else any other class with rate / (C - 1).

    Returns float64 [C, C].
    """
    num_classes = check_num_classes(num_classes, 2)
    rate = check_rate(rate)
    T = np.full((num_classes, num_classes), rate / (num_classes - 1))
    np.fill_diagonal(T, 1.0 - rate)
    return T


def pairflip_matrix(num_classes: int, rate: float = 0.2) -> np.ndarray:
    """Pair-flip noise: class c keeps its label with 1 - rate, else gets (c + 1) mod C. float64 [C, C]."""
    return paper_matrix(num_classes, rate, shift=1)


def random_transition_matrix(num_classes: int, rate: float, seed: int, *, max_partners: int = 3,
                             max_ratio: float = 0.9, max_class_rate: float | None = None) -> np.ndarray:
    """A random non-uniform transition matrix with mean off-diagonal row mass `rate`: float64 [C, C].

    In the spirit of cleanlab's benchmark generator (`generate_noise_matrix_from_trace` with trace
    C * (1 - rate)), written afresh, with rows = true class:
    1. each class c gets an off-diagonal mass r_c = C * rate * Dirichlet(1, ..., 1)_c, so some classes
       are nearly clean and others flip often; a class over `max_class_rate` (default: halfway from
       `rate` to 1, at most r_max below) hands its excess to the others in proportion to their draws;
    2. row c spreads r_c over k other classes chosen at random, k uniform in 1..max_partners (more when
       r_c needs them), with Dirichlet(1, ..., 1) shares capped as in the guarantee.
    Guarantee: rows sum to 1; mean(diag T) = 1 - rate (to float rounding, ~1e-15); for every c and
    j != c, T[c, j] <= max_ratio * T[c, c] (so the true class stays the most likely label of its row).
    That needs r_c <= r_max = m / (1 + m), m = max_ratio * (C - 1); a larger `rate` is refused.
    Randomness: Generator(PCG64(seed)), used in this order: step 1, then rows 0, 1, ... of step 2.
    """
    num_classes = check_num_classes(num_classes, 2)
    rate = check_rate(rate)
    rng = seeded_generator(seed)
    if isinstance(max_partners, (bool, np.bool_)) or not isinstance(max_partners, (int, np.integer)) \
            or max_partners < 1:
        raise UserError(f"max_partners {max_partners!r} is not an integer >= 1")
    if not 0.0 < float(max_ratio) < 1.0:
        raise UserError(f"max_ratio {max_ratio!r} is outside (0, 1); expected e.g. 0.9")
    m = max_ratio * (num_classes - 1)
    r_max = m / (1.0 + m)
    if rate > r_max:
        raise UserError(f"noise rate {rate:g} is too high for a random matrix with {num_classes} classes; "
                        f"expected at most {r_max:.4g} (each true class must stay its row's most likely label)")
    class_cap = min(r_max, (1.0 + rate) / 2) if max_class_rate is None else float(max_class_rate)
    if not rate <= class_cap <= r_max:
        raise UserError(f"max_class_rate {max_class_rate!r} is outside [rate, {r_max:.4g}] = [{rate:g}, {r_max:.4g}]")
    off = _capped_shares(rng.dirichlet(np.ones(num_classes)), num_classes * rate, class_cap)
    T = np.zeros((num_classes, num_classes))
    for c in range(num_classes):
        entry_cap = max_ratio * (1.0 - off[c])  # the guarantee, for this row
        needed = min(num_classes - 1, max(1, int(np.ceil(off[c] / entry_cap - 1e-12))))
        k = max(needed, int(rng.integers(1, min(max_partners, num_classes - 1) + 1)))
        partners = rng.choice(np.delete(np.arange(num_classes), c), size=k, replace=False)
        T[c, partners] = _capped_shares(rng.dirichlet(np.ones(k)), off[c], entry_cap)
        T[c, c] = 1.0 - T[c, partners].sum()
    return T


def _capped_shares(weights: np.ndarray, total: float, cap: float) -> np.ndarray:
    """Split `total` in proportion to `weights` [K] (> 0), no share above `cap` (K * cap >= total).

    A share over the cap is cut to it and the excess goes to the uncapped shares, in proportion to
    their weights, until none is over: float64 [K] summing to `total`.
    """
    shares = weights / weights.sum() * total
    for _ in range(shares.size):
        over = shares > cap
        if not over.any():
            break
        excess = float((shares[over] - cap).sum())
        shares[over] = cap
        free = shares < cap
        if not free.any():
            break
        shares[free] += excess * weights[free] / weights[free].sum()
    return np.minimum(shares, cap)


def read_matrix(path: str | Path) -> np.ndarray:
    """Read a transition matrix from .npy, or from .csv/.txt (comma- or space-separated rows).

    Returns float64 [R, K] as stored (not yet validated; see `validate_transition_matrix`).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"matrix file {path}: no such file")
    try:
        if path.read_bytes()[:6] == b"\x93NUMPY":
            matrix = np.load(path, allow_pickle=False)
        elif path.suffix.lower() == ".npy":
            raise UserError(f"matrix file {path}: not a .npy file (no \\x93NUMPY header)")
        elif path.suffix.lower() in (".csv", ".txt", ".tsv", ""):
            text = path.read_text().replace(",", " ")
            rows = [line.split() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
            if len({len(row) for row in rows}) > 1:
                raise UserError(f"matrix file {path}: rows have different lengths {sorted({len(r) for r in rows})}")
            matrix = np.array(rows, dtype=np.float64)
        else:
            raise UserError(f"matrix file {path}: unknown format {path.suffix!r}; expected .npy, .csv or .txt")
    except UserError:
        raise
    except (ValueError, OSError, UnicodeDecodeError) as err:
        raise UserError(f"matrix file {path}: cannot read a matrix of numbers ({err})") from None
    if not np.issubdtype(np.asarray(matrix).dtype, np.number):
        raise UserError(f"matrix file {path}: holds {np.asarray(matrix).dtype} values; expected numbers")
    return np.asarray(matrix, dtype=np.float64)


def check_probability_rows(rows: np.ndarray, name: str, tolerance: float) -> None:
    """Refuse a float [N, C] array unless every entry is finite and >= 0 and every row sums to 1
    (within `tolerance`); the UserError names `name`, the first bad entry or row, and what was expected."""
    if not np.all(np.isfinite(rows)):
        row, col = np.argwhere(~np.isfinite(rows))[0]
        raise UserError(f"{name}: entry [{row}, {col}] is {rows[row, col]}; expected finite probabilities")
    if np.any(rows < 0):
        row, col = np.argwhere(rows < 0)[0]
        raise UserError(f"{name}: entry [{row}, {col}] is negative ({rows[row, col]:g}); expected probabilities >= 0")
    sums = rows.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > tolerance)
    if bad.size:
        raise UserError(f"{name}: row {bad[0]} sums to {sums[bad[0]]:.8g}; expected every row to sum to 1")


def validate_transition_matrix(
    T: np.ndarray, num_classes: int, name: str = "transition matrix", warn: bool = True
) -> np.ndarray:
    """Check that T is a row-stochastic float [C, C] matrix for `num_classes` classes.

    Rejects (UserError): not 2-D or not square, C != num_classes, NaN/inf, negative entries,
    rows not summing to 1 within 1e-6. Warns (NoiseWarning, if `warn`) when a row is not diagonally
    dominant (T[c, c] <= max_{j != c} T[c, j]): the noisy labels then favour a wrong class.
    Returns a float64 [C, C] copy with rows renormalised to sum to exactly 1.
    """
    num_classes = check_num_classes(num_classes)
    try:
        T = np.array(T, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"{name}: cannot be read as an array of numbers") from None
    if T.ndim != 2 or T.shape[0] != T.shape[1]:
        raise UserError(f"{name}: shape {tuple(T.shape)} is not square; expected [{num_classes}, {num_classes}]")
    if T.shape[0] != num_classes:
        raise UserError(
            f"{name}: {T.shape[0]}x{T.shape[1]}, but the dataset has {num_classes} classes; "
            f"expected {num_classes}x{num_classes}"
        )
    check_probability_rows(T, name, ROW_SUM_TOLERANCE)
    T = T / T.sum(axis=1)[:, None]
    if warn and num_classes > 1:
        off = T.copy()
        np.fill_diagonal(off, -np.inf)
        weak = np.flatnonzero(np.diag(T) <= off.max(axis=1))
        if weak.size:
            c = int(weak[0])
            warnings.warn(
                f"{name}: not diagonally dominant in {weak.size} row(s), e.g. class {c} keeps its label "
                f"with {T[c, c]:.3g} but goes to class {int(np.argmax(off[c]))} with {off[c].max():.3g}",
                NoiseWarning,
                stacklevel=2,
            )
    return T


def transition_matrix(
    preset: str,
    num_classes: int,
    rate: float = 0.2,
    shift: int | None = None,
    matrix_file: str | None = None,
    seed: int | None = None,
) -> np.ndarray:
    """Build and validate a transition matrix, float64 [C, C] (rows = true class, columns = label).

    preset: "paper" (c -> (c + shift) mod C at `rate`, shift defaults to C // 2),
    "symmetric" (rate spread evenly over the other classes), "pairflip" (c -> (c + 1) mod C),
    "matrix" (read from `matrix_file`: .npy, .csv or .txt; `rate` and `shift` are ignored),
    "random" (`random_transition_matrix(num_classes, rate, seed)`: needs `seed`).
    """
    if preset == "paper":
        T = paper_matrix(num_classes, rate, shift)
    elif preset == "symmetric":
        T = symmetric_matrix(num_classes, rate)
    elif preset == "pairflip":
        T = pairflip_matrix(num_classes, rate)
    elif preset == "matrix":
        if matrix_file is None:
            raise UserError("preset 'matrix' needs a matrix file (.npy, .csv or .txt)")
        return validate_transition_matrix(read_matrix(matrix_file), num_classes, name=f"matrix file {matrix_file}")
    elif preset == "random":
        if seed is None:
            raise UserError("preset 'random' needs a seed (the same seed gives the same matrix)")
        T = random_transition_matrix(num_classes, rate, seed)
    else:
        raise UserError(f"unknown noise preset {preset!r}; expected one of {', '.join(PRESETS)}")
    return validate_transition_matrix(T, num_classes, name=f"{preset} noise")


def noise_partner(T: np.ndarray) -> np.ndarray:
    """For each class, the most likely wrong label: argmax of the off-diagonal row of T [C, C].

    A class whose row has no off-diagonal mass is its own partner. Ties go to the lowest index.
    Returns int64 [C].
    """
    T = np.asarray(T, dtype=np.float64)
    if T.ndim != 2 or T.shape[0] != T.shape[1]:
        raise UserError(f"transition matrix: shape {tuple(T.shape)} is not square")
    off = T.copy()
    np.fill_diagonal(off, -np.inf)
    classes = np.arange(T.shape[0])
    if T.shape[0] == 1:
        return classes.astype(np.int64)
    partner = np.argmax(off, axis=1)
    return np.where(off.max(axis=1) > 0, partner, classes).astype(np.int64)


# ----------------------------------------------------------------------------- applying


def seeded_generator(seed: int) -> np.random.Generator:
    """numpy's Generator(PCG64(seed)), the only source of randomness here; UserError unless seed >= 0."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"seed {seed!r} is not a non-negative integer")
    return np.random.Generator(np.random.PCG64(int(seed)))


def exact_counts(class_counts: np.ndarray, T: np.ndarray) -> np.ndarray:
    """How many images of each class get each label under exact noise: int64 [C, C].

    Row c holds round(T[c, j] * n_c) with largest-remainder rounding, so each row sums to n_c.
    Equal remainders go first to the true class (keep the clean label), then to lower indices.
    class_counts: int [C] (n_c); T: float [C, C] row-stochastic.
    """
    n = np.asarray(class_counts, dtype=np.int64)
    T = np.asarray(T, dtype=np.float64)
    target = T * n[:, None]
    counts = np.floor(target).astype(np.int64)
    remainder = target - counts
    missing = n - counts.sum(axis=1)
    num_classes = T.shape[0]
    for c in range(num_classes):
        if missing[c] <= 0:
            continue
        not_self = np.arange(num_classes) != c
        # lexsort sorts by the last key first: biggest remainder, then the true class, then index.
        order = np.lexsort((np.arange(num_classes), not_self, -remainder[c]))
        counts[c, order[: missing[c]]] += 1
    return counts


def apply_noise(labels: np.ndarray, T: np.ndarray, seed: int, mode: str = "exact") -> np.ndarray:
    """Give each image a noisy label drawn from the row of T for its true class.

    labels: int [N] clean labels in [0, C); T: float [C, C] row-stochastic (validated here);
    seed: int >= 0, the only source of randomness (PCG64).
    mode "exact": for every class c exactly `exact_counts(n, T)[c, j]` images get label j,
    chosen uniformly at random (for c = 0, 1, ... in turn, the members of class c are permuted
    by one Generator(PCG64(seed)) and the permuted run is cut into counts[c, 0] images
    labelled 0, counts[c, 1] labelled 1, and so on).
    mode "sampled": every label is an independent draw from T[c].
    Returns int64 [N].
    """
    T = np.asarray(T, dtype=np.float64)
    if T.ndim != 2 or T.shape[0] == 0:
        raise UserError(f"transition matrix: shape {tuple(T.shape)}; expected [C, C] with C >= 1")
    T = validate_transition_matrix(T, T.shape[0], warn=False)
    labels = check_labels(labels, "clean labels", num_classes=T.shape[0])
    rng = seeded_generator(seed)
    if mode == "exact":
        return _apply_exact(labels, T, rng)
    if mode == "sampled":
        return _apply_sampled(labels, T, rng)
    raise UserError(f"unknown noise mode {mode!r}; expected one of {', '.join(MODES)}")


def _apply_exact(labels: np.ndarray, T: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    num_classes = T.shape[0]
    counts = exact_counts(np.bincount(labels, minlength=num_classes), T)
    noisy = labels.copy()
    for c in range(num_classes):
        members = rng.permutation(np.flatnonzero(labels == c))
        # Split the shuffled members into consecutive runs of counts[c, 0], counts[c, 1], ...
        noisy[members] = np.repeat(np.arange(num_classes, dtype=np.int64), counts[c])
    return noisy


def _apply_sampled(labels: np.ndarray, T: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    num_classes = T.shape[0]
    cumulative = np.cumsum(T, axis=1)
    for c in range(num_classes):
        # From the last column with mass on, no draw may land past it (guards float round-off).
        last = np.flatnonzero(T[c] > 0)[-1]
        cumulative[c, last:] = np.inf
    u = rng.random(labels.shape[0])
    noisy = np.empty_like(labels)
    for c in range(num_classes):
        members = labels == c
        noisy[members] = np.searchsorted(cumulative[c], u[members], side="right")
    return noisy


# ----------------------------------------------------------------------------- measuring


def realized_matrix(clean: np.ndarray, noisy: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The transition matrix that two label arrays actually show.

    clean, noisy: int [N] in [0, C). Returns (counts int64 [C, C], rates float64 [C, C]) where
    counts[c, j] = #images of class c labelled j and rates = counts / row sums; the rows of
    classes absent from `clean` are zero.
    """
    num_classes = check_num_classes(num_classes)
    clean = check_labels(clean, "clean labels", num_classes=num_classes)
    noisy = check_labels(noisy, "noisy labels", num_classes=num_classes, expected_length=clean.shape[0])
    counts = confusion(torch.from_numpy(noisy), torch.from_numpy(clean), num_classes).numpy()  # rows = clean
    totals = counts.sum(axis=1, keepdims=True)
    rates = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    return counts, rates


def noise_rate(clean: np.ndarray, noisy: np.ndarray) -> float:
    """Fraction of images whose noisy label differs from the clean one (0.0 for no images)."""
    clean = np.asarray(clean)
    noisy = np.asarray(noisy)
    if clean.shape != noisy.shape:
        raise UserError(f"noisy labels: shape {noisy.shape}, but the clean labels have shape {clean.shape}")
    return float(np.mean(clean != noisy)) if clean.size else 0.0
