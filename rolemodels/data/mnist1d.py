"""MNIST-1D, generated locally (never downloaded), cached under a key of what made it.

Train, test and pool come from one generator run and so from one distribution. The pool can be
any size: it stands in for CIFAR-5m. `generator="package"` calls the mnist1d package's own
`make_dataset` (one Python call per sample, about 4,000 samples/s per core, spread over the
cores in chunks); `generator="fast"` is our vectorised reimplementation of the same process.
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from rolemodels.data import Dataset
from rolemodels.errors import RunError, UserError
from rolemodels.runtime.files import atomic_write

CHUNK = 20000  # samples per make_dataset call; a multiple of 10 keeps every chunk class-balanced
LENGTH = 40


def cache_root(cache_dir: str = "") -> Path:
    return Path(cache_dir or os.environ.get("ROLEMODELS_CACHE") or Path.home() / ".cache" / "rolemodels")


def _package_chunk(args: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    n, seed = args
    from mnist1d.data import get_dataset_args, make_dataset

    state = np.random.get_state()  # make_dataset seeds numpy's global generator; leave it as it was
    try:
        spec = get_dataset_args()
        spec.num_samples, spec.train_split, spec.seed = n, 1.0, seed
        made = make_dataset(spec)
    finally:
        np.random.set_state(state)
    return made["x"].astype(np.float32), made["y"].astype(np.int64)


def generate_package(n: int, seed: int, workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """n samples float32 [n, 40], int64 [n] from mnist1d.make_dataset, in chunks over processes.

    make_dataset standardises each call with that call's own mean and std; chunks of 20,000
    samples have the same statistics to about 0.1%, and the model standardises again with the
    training set's statistics.
    """
    sizes = [min(CHUNK, n - first) for first in range(0, n, CHUNK)]
    jobs = [(size, seed * 1_000_003 + i) for i, size in enumerate(sizes)]
    workers = workers or min(len(jobs), os.cpu_count() or 1)
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(_package_chunk, jobs))
    else:
        parts = [_package_chunk(job) for job in jobs]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def generate(n: int, seed: int, generator: str) -> tuple[np.ndarray, np.ndarray]:
    if generator == "fast":
        from rolemodels.data.mnist1d_fast import generate_fast

        return generate_fast(n, seed)
    return generate_package(n, seed)


def load_mnist1d(n_train: int, n_test: int, n_pool: int, seed: int = 0, generator: str = "package",
                 cache_dir: str = "", progress=None) -> Dataset:
    """MNIST-1D split into a labelled training set, a clean test set and a pool, cached on disk."""
    key = {"dataset": "mnist1d", "n_train": n_train, "n_test": n_test, "n_pool": n_pool, "seed": seed,
           "generator": generator, "version": 1}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_root(cache_dir) / f"mnist1d-{digest}.npz"
    if path.exists():
        try:
            with np.load(path) as stored:
                arrays = {name: stored[name] for name in stored.files}
        except (OSError, ValueError, EOFError):
            arrays = None  # a damaged cache file is made again
    else:
        arrays = None
    if arrays is None:
        if progress:
            progress(f"generating MNIST-1D ({n_train + n_test + n_pool:,} samples, {generator} generator); "
                     f"cached in {path}")
        x, y = generate(n_train + n_test + n_pool, seed, generator)
        cut1, cut2 = n_train, n_train + n_test
        arrays = {"x_train": x[:cut1], "y_train": y[:cut1], "x_test": x[cut1:cut2], "y_test": y[cut1:cut2],
                  "x_pool": x[cut2:], "y_pool": y[cut2:]}
        try:
            atomic_write(path, lambda handle: np.savez(handle, **arrays))
        except RunError as err:  # the cache folder is the user's choice (data.cache_dir or $ROLEMODELS_CACHE)
            raise UserError(f"config key data.cache_dir: {err}; set data.cache_dir (or $ROLEMODELS_CACHE) to a "
                            f"writable folder") from None
    tensors = {name: torch.from_numpy(value) for name, value in arrays.items()}
    return Dataset(name="mnist1d", num_classes=10, class_names=[str(c) for c in range(10)], **tensors)
