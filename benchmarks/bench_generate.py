"""Samples per second of MNIST-1D generation: the mnist1d package against generate_fast.

    python benchmarks/bench_generate.py [--package-n 4000] [--fast-n 20000 200000] [--repeats 3]

Each row is the best of --repeats runs (one thread of numpy/scipy work; no BLAS is used).
The speed-up is relative to the package's make_dataset.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable without installing
from rolemodels.data.mnist1d_fast import generate_fast, generate_package


def samples_per_second(make, n: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        make(n)
        best = min(best, time.perf_counter() - start)
    return n / best


def package_make_dataset(n: int) -> None:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed = n, 0
    state = np.random.get_state()
    make_dataset(args)
    np.random.set_state(state)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package-n", type=int, default=4000, help="samples for the package's generators")
    parser.add_argument("--fast-n", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--repeats", type=int, default=3)
    opts = parser.parse_args()

    import mnist1d.data  # noqa: F401  (imports matplotlib and requests: keep that out of the timing)

    generate_fast(100, seed=0)  # warm-up: builds the cached dilated templates
    rows = [
        ("mnist1d make_dataset", opts.package_n,
         samples_per_second(package_make_dataset, opts.package_n, 1)),
        ("generate_package", opts.package_n,
         samples_per_second(lambda n: generate_package(n, seed=0), opts.package_n, 1)),
    ]
    for n in opts.fast_n:
        rows.append(("generate_fast", n, samples_per_second(lambda n: generate_fast(n, seed=0), n, opts.repeats)))

    reference = rows[0][2]
    print(f"MNIST-1D generation, numpy {np.__version__}, python {platform.python_version()}")
    print(f"{'generator':<22}{'n':>10}{'samples/s':>14}{'speed-up':>10}")
    for name, n, rate in rows:
        print(f"{name:<22}{n:>10,}{rate:>14,.0f}{rate / reference:>9.1f}x")


if __name__ == "__main__":
    main()
