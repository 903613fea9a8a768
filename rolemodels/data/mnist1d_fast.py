"""MNIST-1D, generated fast: the `mnist1d` package's distribution, vectorised over samples.

The package (`mnist1d.data.make_dataset`) builds one sample at a time in Python by calling
`mnist1d.transform.transform` on one of ten 12-point templates:

  1. add eps = 1e-8 (so the template is never exactly zero) and pad with p zeros,
     p = low + int(u * (high - low + 1)), u ~ U[0, 1)  -> p uniform on [36, 60];
  2. interpolate linearly to template_len + padding[-1] = 72 points;
  3. scale by 1 + scale_coeff * (u - 0.5);
  4. translate circularly by k = choice(max_translation), k in [0, 48): for k = 0,
     np.concatenate([x[-0:], x[:-0]]) is x followed by nothing, so it is the identity,
     and in every case the result is np.roll(x, k) with length 72;
  5. where the signal is exactly zero (only the padding is), put correlated noise
     gaussian_filter(corr_noise_scale * randn(72), sigma=2) (mode 'reflect', truncate 4);
  6. add iid noise iid_noise_scale * randn(72) everywhere;
  7. shear: subtract shear_scale * (u - 0.5) * linspace(-0.5, 0.5, 72);
  8. interpolate linearly down to final_seq_length = 40 points.

Classes are balanced (num_samples // 10 each, in class order) and then shuffled with one
permutation; make_dataset finally z-scores the whole set with its own scalar mean and std.
The functions here return the RAW signals (before that z-scoring); `standardize` does it.

Here each step runs on a chunk of samples at once. Steps 1-2 depend only on (class, p), so
the 10 x 25 dilated templates are computed once with np.interp, exactly as the package does;
the arithmetic of every later step is the package's, so `transform_batch` fed the package's
own random numbers reproduces its samples to rounding (see tests/test_mnist1d_fast.py).
`generate_fast` draws its random numbers from numpy.random.Generator(PCG64(seed)), so its
samples follow the same distribution but are not the package's samples.

`generate_package` runs the package's own per-sample code, as the reference for tests.
"""
from __future__ import annotations

import functools
import random
from dataclasses import asdict, dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

from rolemodels.errors import UserError

NUM_CLASSES = 10
EPS = 1e-8  # transform()'s eps: added to the template before padding
CHUNK = 4_096  # samples per vectorised chunk; fixed, because the output depends on it

# The ten digit templates of mnist1d.data.get_templates() (Greydanus, 2020), before whitening.
_RAW_TEMPLATES = np.asarray([
    [5, 6, 6.5, 6.75, 7, 7, 7, 7, 6.75, 6.5, 6, 5],
    [5, 3, 3, 3.4, 3.8, 4.2, 4.6, 5, 5.4, 5.8, 5, 5],
    [5, 6, 6.5, 6.5, 6, 5.25, 4.75, 4, 3.5, 3.5, 4, 5],
    [5, 6, 6.5, 6.5, 6, 5, 5, 6, 6.5, 6.5, 6, 5],
    [5, 4.4, 3.8, 3.2, 2.6, 2.6, 5, 5, 5, 5, 5, 5],
    [5, 3, 3, 3, 3, 5, 6, 6.5, 6.5, 6, 4.5, 5],
    [5, 4, 3.5, 3.25, 3, 3, 3, 3, 3.25, 3.5, 4, 5],
    [5, 7, 7, 6.6, 6.2, 5.8, 5.4, 5, 4.6, 4.2, 5, 5],
    [5, 4, 3.5, 3.5, 4, 5, 5, 4, 3.5, 3.5, 4, 5],
    [5, 4, 3.5, 3.5, 4, 5, 5, 5, 5, 4.7, 4.3, 5],
])


def templates() -> np.ndarray:
    """The ten templates exactly as mnist1d.data.get_templates()['x']: float64 [10, 12].

    Each row is whitened, shifted to start (and end) at 0, and divided by 6.
    """
    x = _RAW_TEMPLATES.copy()
    x -= x.mean(1, keepdims=True)
    x /= x.std(1, keepdims=True)
    x -= x[:, :1]
    return x / 6.0


@dataclass(frozen=True)
class Mnist1dArgs:
    """The transform settings of mnist1d.data.get_dataset_args(), with the same defaults."""

    template_len: int = 12
    padding: tuple[int, int] = (36, 60)
    scale_coeff: float = 0.4
    max_translation: int = 48
    corr_noise_scale: float = 0.25
    iid_noise_scale: float = 2e-2
    shear_scale: float = 0.75
    final_seq_length: int = 40

    def __post_init__(self) -> None:
        object.__setattr__(self, "padding", tuple(int(v) for v in self.padding))  # hashable
        low, high = self.padding
        if not 0 <= low <= high:
            raise UserError(f"Mnist1dArgs.padding: got {self.padding}, expected 0 <= low <= high")
        if not 1 <= self.max_translation <= self.dilated_len:
            raise UserError(f"Mnist1dArgs.max_translation: got {self.max_translation}, "
                            f"expected 1..{self.dilated_len} (template_len + padding[1])")
        if self.final_seq_length < 2:
            raise UserError(f"Mnist1dArgs.final_seq_length: got {self.final_seq_length}, "
                            "expected at least 2")

    @property
    def dilated_len(self) -> int:
        """Length after padding and dilation: template_len + padding[1] (72 by default)."""
        return self.template_len + self.padding[1]


@dataclass
class Draws:
    """The random numbers that `transform_batch` consumes for n samples.

    pad_u, scale_u, shear_u: float64 [n], uniform on [0, 1);
    shift: int64 [n], uniform on [0, max_translation);
    corr_z, iid_z: float [n, dilated_len], standard normal.
    """

    pad_u: np.ndarray
    scale_u: np.ndarray
    shift: np.ndarray
    corr_z: np.ndarray
    iid_z: np.ndarray
    shear_u: np.ndarray


def draw(rng: np.random.Generator, n: int, args: Mnist1dArgs) -> Draws:
    """Draw the random numbers for n samples from `rng` (in a fixed order)."""
    length = args.dilated_len
    return Draws(
        pad_u=rng.random(n),
        scale_u=rng.random(n),
        shift=rng.integers(0, args.max_translation, size=n),
        # float32 normals are drawn faster and are far finer than the noise scales need
        corr_z=rng.standard_normal((n, length), dtype=np.float32),
        iid_z=rng.standard_normal((n, length), dtype=np.float32),
        shear_u=rng.random(n),
    )


# ---------------------------------------------------------------- the transform, batched

def _interp_rows(x: np.ndarray, n_out: int) -> np.ndarray:
    """np.interp(linspace(0, 1, n_out), linspace(0, 1, L), row) for every row of x [n, L].

    Uses np.interp's own arithmetic: fp[j] where the new point hits a knot (and at the right
    end), slope * (t - xp[j]) + fp[j] elsewhere, slope = (fp[j+1] - fp[j]) / (xp[j+1] - xp[j]).
    """
    length = x.shape[1]
    xp = np.linspace(0, 1, length)
    t = np.linspace(0, 1, n_out)
    j = np.clip(np.searchsorted(xp, t, side="right") - 1, 0, length - 2)
    slope = (x[:, j + 1] - x[:, j]) / (xp[j + 1] - xp[j])
    out = slope * (t - xp[j]) + x[:, j]
    on_knot = t == xp[j]
    out[:, on_knot] = x[:, j[on_knot]]
    at_end = t >= xp[-1]
    out[:, at_end] = x[:, -1:]
    return out


@functools.lru_cache(maxsize=8)
def dilated_templates(args: Mnist1dArgs) -> np.ndarray:
    """Steps 1-2 for every padding p and class: float64 [n_paddings, 10, dilated_len].

    Entry [p - low, c] is the package's interpolate(pad(template[c] + eps, p), dilated_len).
    """
    low, high = args.padding
    length = args.dilated_len
    table = np.empty((high - low + 1, NUM_CLASSES, length))
    t = np.linspace(0, 1, length)
    for i, p in enumerate(range(low, high + 1)):
        for c, template in enumerate(templates()):
            padded = np.concatenate([template + EPS, np.zeros(p)])
            table[i, c] = np.interp(t, np.linspace(0, 1, len(padded)), padded)
    table.flags.writeable = False
    return table


@functools.lru_cache(maxsize=8)
def _roll_sources(length: int) -> np.ndarray:
    """Row k holds the source index of each position after np.roll(x, k): int64 [L, L]."""
    return (np.arange(length)[None, :] - np.arange(length)[:, None]) % length


def transform_batch(labels: np.ndarray, draws: Draws, args: Mnist1dArgs) -> np.ndarray:
    """The package's transform() for n samples at once.

    labels: int [n] in 0..9; draws: the random numbers (see `Draws`).
    Returns float64 [n, final_seq_length], RAW (not z-scored).
    """
    low, high = args.padding
    length = args.dilated_len

    pad = low + (draws.pad_u * (high - low + 1)).astype(np.int64)  # int() truncates
    x = dilated_templates(args)[pad - low, labels]  # [n, L], a copy

    x *= (1 + args.scale_coeff * (draws.scale_u - 0.5))[:, None]

    x = np.take_along_axis(x, _roll_sources(length)[draws.shift], axis=1)  # np.roll by k

    corr = np.multiply(draws.corr_z, args.corr_noise_scale, dtype=np.float64)
    corr = gaussian_filter1d(corr, 2, axis=1, mode="reflect", truncate=4.0)
    x = np.where(x != 0, x, corr)
    x += np.multiply(draws.iid_z, args.iid_noise_scale, dtype=np.float64)

    coeff = args.shear_scale * (draws.shear_u - 0.5)
    x -= np.multiply.outer(coeff, np.linspace(-0.5, 0.5, length))
    return _interp_rows(x, args.final_seq_length)


# ---------------------------------------------------------------- datasets

def class_counts(n: int) -> np.ndarray:
    """Samples per class: n // 10 each, the remainder spread over the first classes. int64 [10]."""
    counts = np.full(NUM_CLASSES, n // NUM_CLASSES, dtype=np.int64)
    counts[: n % NUM_CLASSES] += 1
    return counts


def _check_n(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise UserError(f"MNIST-1D sample count: got {n!r}, expected an integer >= 0")


def generate_fast(n: int, seed: int, args: Mnist1dArgs | None = None) -> tuple[np.ndarray, np.ndarray]:
    """n MNIST-1D samples from the package's distribution, vectorised.

    Returns x: float32 [n, 40] RAW (before any dataset-wide z-scoring) and y: int64 [n],
    class-balanced (`class_counts`) and shuffled. Deterministic given seed: all randomness
    comes from numpy.random.Generator(PCG64(seed)); the global RNG is not touched.
    Memory beyond the output stays bounded: samples are made CHUNK at a time.
    """
    _check_n(n)
    args = Mnist1dArgs() if args is None else args
    rng = np.random.Generator(np.random.PCG64(seed))
    y = np.repeat(np.arange(NUM_CLASSES, dtype=np.int64), class_counts(n))
    y = y[rng.permutation(n)]
    x = np.empty((n, args.final_seq_length), dtype=np.float32)
    for start in range(0, n, CHUNK):
        labels = y[start:start + CHUNK]
        x[start:start + CHUNK] = transform_batch(labels, draw(rng, len(labels), args), args)
    return x, y


def generate_package(n: int, seed: int, args: Mnist1dArgs | None = None) -> tuple[np.ndarray, np.ndarray]:
    """n samples made by the package's own per-sample transform(), as a reference.

    Same layout as `generate_fast`: x float32 [n, 40] RAW, y int64 [n]. Follows
    make_dataset: set_seed(seed), classes in order (`class_counts`), one
    np.random.permutation; so for n a multiple of 10, standardize(x) equals make_dataset's
    x and x_test concatenated. The global `random` and np.random states are restored after.
    """
    _check_n(n)
    from mnist1d.data import get_dataset_args, get_templates
    from mnist1d.transform import transform
    from mnist1d.utils import set_seed

    args = Mnist1dArgs() if args is None else args
    package_args = get_dataset_args()
    for key, value in asdict(args).items():
        setattr(package_args, key, list(value) if key == "padding" else value)
    package_templates = get_templates()

    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        set_seed(seed)
        xs, ys = [], []
        for label, count in enumerate(class_counts(n)):
            for _ in range(count):
                x, _t = transform(package_templates["x"][label], package_templates["t"], package_args)
                xs.append(x)
                ys.append(label)
        order = np.random.permutation(n)
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    x = np.stack(xs).reshape(n, args.final_seq_length) if n else np.empty((0, args.final_seq_length))
    return x[order].astype(np.float32), np.asarray(ys, dtype=np.int64)[order]


def standardize(x: np.ndarray) -> np.ndarray:
    """make_dataset's normalisation: (x - x.mean()) / x.std() over the whole array, in float64."""
    x = np.asarray(x, dtype=np.float64)
    return (x - x.mean()) / x.std()
