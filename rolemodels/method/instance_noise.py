"""Instance-dependent label noise: flips that depend on the example, not only on its class.

Each generator takes clean labels int64 [N] and returns noisy labels int64 [N]; randomness comes
only from `numpy.random.Generator(PCG64(seed))`. Both first build one transition row per example,
float64 [N, C] (row i: the probability that example i gets each label), then draw from the rows
with two uniform numbers per example: u_flip (flip when u_flip < the row's off-diagonal mass) and
u_to (which wrong class, in proportion to the row's wrong-class entries). Who flips thus depends
only on the flip probabilities and the seed; where a flip goes, on the row's shape.

- `annotator_noise`: an annotator model's posterior (e.g. out-of-fold probabilities) decides both:
  ambiguous examples flip more often, and flips go to the classes the annotator confuses them with.
- `part_dependent_noise`: Xia et al. 2020, "Part-dependent label noise: towards instance-dependent
  label noise" (NeurIPS), their instance-dependent generator: a random projection of the features.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from rolemodels.errors import UserError
from rolemodels.labels import as_numpy, check_labels, check_num_classes
from rolemodels.method.noise import check_probability_rows, check_rate, seeded_generator

PROBS_ROW_SUM_TOLERANCE = 1e-4  # classifier outputs in float32 sum to 1 only to ~1e-6 per class
PART_SPREAD = 0.1  # Xia et al.'s std of the per-example flip rate (norm_std)
CHUNK_ROWS = 4096  # features are read and projected this many rows at a time


# ----------------------------------------------------------------------------- annotator noise


def check_probs(probs: Any, num_examples: int, source: str = "annotator probabilities") -> np.ndarray:
    """Check an annotator's posterior: float [N, C], C >= 2, finite, >= 0, rows summing to 1 (1e-4).

    Returns a float64 [N, C] copy with rows renormalised to sum to 1; UserError naming `source` otherwise.
    """
    try:
        arr = as_numpy(probs)
    except (TypeError, ValueError):
        raise UserError(f"{source}: cannot be read as an array of probabilities") from None
    if arr.dtype.kind not in "fiu":
        raise UserError(f"{source}: holds {arr.dtype} values; expected probabilities (floats)")
    if arr.ndim != 2:
        raise UserError(f"{source}: shape {tuple(arr.shape)}; expected [N, C] = [{num_examples}, number of classes]")
    if arr.shape[0] != num_examples:
        raise UserError(f"{source}: {arr.shape[0]:,} rows, but there are {num_examples:,} labels; "
                        f"expected one row per label")
    if arr.shape[1] < 2:
        raise UserError(f"{source}: {arr.shape[1]} column(s); expected one column per class (at least 2)")
    arr = np.array(arr, dtype=np.float64)
    check_probability_rows(arr, source, PROBS_ROW_SUM_TOLERANCE)
    return arr / arr.sum(axis=1)[:, None]


def annotator_transitions(labels: Any, probs: Any, rate: float) -> np.ndarray:
    """Per-example transition rows of annotator noise, float64 [N, C] (deterministic, no seed).

    labels: int [N] clean labels in [0, C); probs: float [N, C], the annotator's posterior.
    Ambiguity a_i = 1 - probs[i, labels[i]] (its mass on the wrong classes). The flip probability
    is f_i = min(1, s * a_i), with the one s >= 0 that makes mean(f) = rate exactly (to rounding);
    row i holds 1 - f_i on the true class and f_i * probs[i, j] / a_i on each wrong class j.
    Refused: a rate above the fraction of examples with a_i > 0 (those the annotator is sure of never flip).
    """
    rate = check_rate(rate)
    labels = check_labels(labels, "clean labels")
    probs = check_probs(probs, labels.shape[0])
    check_labels(labels, "clean labels", num_classes=probs.shape[1])
    rows = probs.copy()
    rows[np.arange(labels.size), labels] = 0.0
    ambiguity = rows.sum(axis=1)
    flip = _flip_probabilities(ambiguity, rate)
    np.divide(rows * flip[:, None], ambiguity[:, None], out=rows, where=ambiguity[:, None] > 0)
    rows[np.arange(labels.size), labels] = 1.0 - flip
    return rows


def annotator_noise(labels: Any, probs: Any, rate: float, seed: int) -> np.ndarray:
    """Noisy labels from an annotator model: int64 [N].

    labels: int [N] clean labels in [0, C); probs: float [N, C] rows summing to 1 (e.g. out-of-fold
    probabilities of a classifier); rate in [0, 1): the expected fraction of flipped labels; seed >= 0.
    Example i flips with probability f_i proportional to 1 - probs[i, labels[i]] (clipped to 1,
    scaled so that mean(f) = rate: `annotator_transitions`), drawn per example; a flipped example
    takes wrong class j with probability proportional to probs[i, j]. The realised rate is a sum
    of independent draws: mean `rate`, std at most sqrt(rate * (1 - rate) / N).
    """
    rows = annotator_transitions(labels, probs, rate)
    rng = seeded_generator(seed)
    return draw_from_rows(check_labels(labels, "clean labels"), rows, rng)


def _flip_probabilities(ambiguity: np.ndarray, rate: float) -> np.ndarray:
    """f = min(1, s * ambiguity) with mean(f) = rate: float64 [N], ambiguity float [N] in [0, 1]."""
    n = ambiguity.size
    positive = int(np.count_nonzero(ambiguity > 0))
    if rate == 0.0 or n == 0:
        return np.zeros(n)
    target = rate * n  # the number of flips expected
    if target > positive * (1 + 1e-12):
        raise UserError(f"annotator probabilities: only {positive:,} of {n:,} examples have any probability on "
                        f"a wrong class, so a noise rate of at most {positive / n:.4g} can be reached; got {rate:g}")
    if target >= positive:
        return (ambiguity > 0).astype(np.float64)
    # With the k most ambiguous examples capped at 1, s_k = (target - k) / (sum of the other ambiguities).
    # The smallest k whose next example stays <= 1 (s_k * a_(k+1) <= 1) is the solution: for it the
    # capped ones have s_k * a >= 1 (s_k grows while k is too small), so sum(min(1, s_k a)) = target.
    order = np.sort(ambiguity)[::-1][:positive]
    tails = np.cumsum(order[::-1])[::-1]  # tails[k] = order[k:].sum()
    ks = np.arange(positive)
    scale = (target - ks) / tails
    k = int(np.argmax(scale * order <= 1.0))
    return np.minimum(1.0, scale[k] * ambiguity)


# ----------------------------------------------------------------------------- part-dependent noise


def part_dependent_transitions(labels: Any, features: Any, rate: float, seed: int, *,
                               num_classes: int | None = None, spread: float = PART_SPREAD,
                               normalize: bool = True) -> np.ndarray:
    """Per-example transition rows of part-dependent noise, float64 [N, C]: the rows that
    `part_dependent_noise` draws from with the same arguments.

    Xia et al. 2020's generator (their Algorithm for instance-dependent noise, as in their code's
    `get_instance_noisy_label`), for examples x_i (features flattened to [D]) with true class y_i:
    1. a flip rate q_i per example from N(rate, spread^2) truncated to [0, 1] (here by redrawing
       the values outside [0, 1]);
    2. a projection W[c] float [D, C] per class, entries from the standard normal;
    3. p = x_i @ W[y_i], p[y_i] = -inf, row_i = q_i * softmax(p), row_i[y_i] = 1 - q_i.
    So q_i (the chance to flip) is random per example but does not depend on the features; which
    wrong class a flip goes to does, through the projection.
    What we adapted: (a) with `normalize` (default) all values are centred and scaled by one mean
    and one std (over all N * D values), an affine map like the per-channel normalisation that
    later papers' code applies before this step; the paper's own code projects raw pixel floats.
    So uint8 pixels and the same pixels as floats in [0, 1] give the same labels, and the
    features' geometry is kept (no per-feature scaling, which would blow up pixels that are
    nearly always 0). For image-sized D the logits have std ~ sqrt(D) and the softmax is nearly
    one-hot: each example's flips go to one wrong class, as in their code. (b) rate 0 gives no
    flips (the truncated normal around 0 would still flip ~8%). (c) numpy only: the truncated
    normal by redrawing, W drawn class by class (the same stream as one [C, D, C] draw), the
    projection done a chunk of rows at a time. The expected realised rate is the truncated
    normal's mean, `part_dependent_expected_rate(rate, spread)` (0.2 -> 0.2055, 0.4 -> 0.4000).
    features: numbers [N, ...]; labels: int [N] in [0, C), C = num_classes or max(labels) + 1.
    """
    labels, x, num_classes, rate, spread = _check_part_inputs(labels, features, rate, num_classes, spread)
    return _part_rows(labels, x, rate, spread, num_classes, normalize, seeded_generator(seed))


def part_dependent_noise(labels: Any, features: Any, rate: float, seed: int, *,
                         num_classes: int | None = None, spread: float = PART_SPREAD,
                         normalize: bool = True) -> np.ndarray:
    """Noisy labels from Xia et al. 2020's part-dependent (instance-dependent) generator: int64 [N].

    labels: int [N] clean labels; features: numbers [N, ...] (images or vectors, flattened per
    example); rate in [0, 1): the centre of the per-example flip rates; seed >= 0. The rows come
    from `part_dependent_transitions` (see there for the algorithm and what we adapted); each
    example's label is then drawn from its row. Randomness: one Generator(PCG64(seed)), in order
    the flip rates, W[0], ..., W[C-1], then u_flip [N] and u_to [N]. The projection is a float64
    matrix product, so a draw within ~1e-12 of a boundary could differ between BLAS libraries.
    """
    labels, x, num_classes, rate, spread = _check_part_inputs(labels, features, rate, num_classes, spread)
    rng = seeded_generator(seed)
    rows = _part_rows(labels, x, rate, spread, num_classes, normalize, rng)
    return draw_from_rows(labels, rows, rng)


def part_dependent_expected_rate(rate: float, spread: float = PART_SPREAD) -> float:
    """The mean of N(rate, spread^2) truncated to [0, 1]: the expected realised rate of part-dependent noise."""
    rate = check_rate(rate)
    if rate == 0.0 or spread == 0.0:
        return rate
    a, b = (0.0 - rate) / spread, (1.0 - rate) / spread
    density = math.exp(-a * a / 2) - math.exp(-b * b / 2)  # times 1 / sqrt(2 pi), which cancels below
    mass = (math.erf(b / math.sqrt(2)) - math.erf(a / math.sqrt(2))) / 2
    return rate + spread * density / math.sqrt(2 * math.pi) / mass


def _check_part_inputs(labels: Any, features: Any, rate: float, num_classes: int | None,
                       spread: float) -> tuple[np.ndarray, np.ndarray, int, float, float]:
    rate = check_rate(rate)
    labels = check_labels(labels, "clean labels", num_classes=num_classes)
    if num_classes is None:
        num_classes = max(2, int(labels.max()) + 1 if labels.size else 2)
    num_classes = check_num_classes(num_classes, 2)
    try:
        x = as_numpy(features)
    except (TypeError, ValueError):
        raise UserError("features: cannot be read as an array of numbers") from None
    if x.dtype.kind not in "biuf":
        raise UserError(f"features: hold {x.dtype} values; expected numbers [N, ...]")
    if x.ndim == 0 or x.shape[0] != labels.shape[0]:
        raise UserError(f"features: shape {tuple(x.shape)}, but there are {labels.shape[0]:,} labels; "
                        f"expected [{labels.shape[0]:,}, ...] (one example per label)")
    x = x.reshape(x.shape[0], math.prod(x.shape[1:]))
    if x.shape[1] == 0:
        raise UserError(f"features: shape {tuple(np.shape(features))} has no values per example; expected [N, D], D >= 1")
    if not (isinstance(spread, (int, float, np.floating)) and 0.0 <= float(spread) < math.inf):
        raise UserError(f"spread {spread!r} is not a number >= 0; expected e.g. {PART_SPREAD}")
    return labels, x, num_classes, rate, float(spread)


def _part_rows(labels: np.ndarray, x: np.ndarray, rate: float, spread: float, num_classes: int,
               normalize: bool, rng: np.random.Generator) -> np.ndarray:
    n, dim = x.shape
    mean, scale = _feature_scaling(x, normalize)
    flip = _truncated_normal(rate, spread, n, rng) if rate > 0 else np.zeros(n)
    rows = np.empty((n, num_classes))
    for c in range(num_classes):
        weights = rng.standard_normal((dim, num_classes))  # W[c], drawn even for an absent class
        members = np.flatnonzero(labels == c)
        for start in range(0, members.size, CHUNK_ROWS):
            idx = members[start:start + CHUNK_ROWS]
            logits = ((np.asarray(x[idx], dtype=np.float64) - mean) * scale) @ weights
            logits[:, c] = -np.inf
            logits -= logits.max(axis=1, keepdims=True)
            soft = np.exp(logits)
            soft /= soft.sum(axis=1, keepdims=True)
            rows[idx] = flip[idx, None] * soft
            rows[idx, c] = 1.0 - flip[idx]
    return rows


def _feature_scaling(x: np.ndarray, normalize: bool) -> tuple[float, float]:
    """The mean of all values of x [N, D] and 1 / their std (0 if all are equal), in two passes over
    chunks of rows; (0, 1) without `normalize`. Refuses NaN and inf."""
    n, dim = x.shape
    total = 0.0
    for start in range(0, n, CHUNK_ROWS):
        chunk = np.asarray(x[start:start + CHUNK_ROWS], dtype=np.float64)
        if not np.all(np.isfinite(chunk)):
            row = start + int(np.argwhere(~np.isfinite(chunk))[0, 0])
            raise UserError(f"features: example {row:,} holds NaN or inf; expected finite numbers")
        total += float(chunk.sum())
    if not normalize or n == 0:
        return 0.0, 1.0
    mean = total / (n * dim)
    squares = 0.0
    for start in range(0, n, CHUNK_ROWS):
        squares += float(((np.asarray(x[start:start + CHUNK_ROWS], dtype=np.float64) - mean) ** 2).sum())
    std = math.sqrt(squares / (n * dim))
    return mean, (1.0 / std if std > 1e-12 * max(1.0, abs(mean)) else 0.0)


def _truncated_normal(mean: float, std: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """n draws from N(mean, std^2) truncated to [0, 1], by redrawing those outside: float64 [n]."""
    if std == 0.0:
        return np.full(n, mean)
    out = np.empty(n)
    filled = 0
    while filled < n:  # each round keeps at least ~half the draws (mean in [0, 1))
        draw = rng.normal(mean, std, size=n - filled)
        keep = draw[(draw >= 0.0) & (draw <= 1.0)]
        out[filled:filled + keep.size] = keep
        filled += keep.size
    return out


# ----------------------------------------------------------------------------- drawing


def draw_from_rows(labels: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw one noisy label per example from its transition row: int64 [N].

    labels: int64 [N] in [0, C); rows: float [N, C], row i a distribution over labels for example i.
    Draws u_flip [N] then u_to [N] from `rng`: example i flips when u_flip[i] < its off-diagonal mass,
    and then goes to the wrong class j found by inverse CDF of u_to[i] over its wrong-class entries.
    """
    n = labels.shape[0]
    u_flip = rng.random(n)
    u_to = rng.random(n)
    wrong = np.array(rows, dtype=np.float64)
    wrong[np.arange(n), labels] = 0.0
    flips = u_flip < wrong.sum(axis=1)
    cumulative = np.cumsum(wrong[flips], axis=1)
    target = u_to[flips] * cumulative[:, -1]
    noisy = labels.copy()
    # The first class whose cumulative mass passes the target (a class with no mass never does).
    noisy[flips] = np.argmax(cumulative > target[:, None], axis=1)
    return noisy
