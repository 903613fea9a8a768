"""Peak memory while labelling and training from a large memory-mapped CIFAR-shaped pool.

    python benchmarks/bench_pool_memory.py [--n 1000000] [--dir /tmp]

Fabricates a CIFAR-5m pool in the per-class layout (class0.npy .. class9.npy, uint8 [n/10, 32, 32, 3]
each), opens it with the project's reader (memory-mapped), labels it with a small network
(teach.label_pool) and trains one student pass on it (train.fit), sampling the process's memory
every 0.1 s. RssAnon is the process's own memory; RssFile is page cache mapped from the pool
files, which the kernel drops under pressure, so the goal (under 2 GB beyond the model) is about
RssAnon.
"""
from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch


class Subset:
    """Examples `chosen` of a pool, indexed like the pool (the pool stays memory-mapped)."""

    def __init__(self, pool, chosen: torch.Tensor):
        self.pool, self.chosen = pool, chosen

    def __len__(self) -> int:
        return len(self.chosen)

    def __getitem__(self, idx):
        return self.pool[self.chosen[idx]]


def memory_mb() -> dict[str, float]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile", "VmRSS"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


class PeakMemory:
    def __init__(self):
        self.peak = {"RssAnon": 0.0, "RssFile": 0.0, "VmRSS": 0.0}
        self.running = True
        self.thread = threading.Thread(target=self.watch, daemon=True)

    def watch(self):
        while self.running:
            for key, value in memory_mb().items():
                self.peak[key] = max(self.peak[key], value)
            time.sleep(0.1)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()


def fabricate(folder: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    for c in range(10):
        images = np.lib.format.open_memmap(folder / f"class{c}.npy", mode="w+", dtype=np.uint8,
                                           shape=(n // 10, 32, 32, 3))
        for first in range(0, n // 10, 50_000):
            part = images[first:first + 50_000]
            part[...] = rng.integers(0, 256, part.shape, dtype=np.uint8)
        images.flush()
        del images


def main() -> None:
    from rolemodels.data.cifar5m import load_cifar5m
    from rolemodels.method.teach import label_pool
    from rolemodels.models import build_model, count_parameters
    from rolemodels.runtime.device import predict_logits
    from rolemodels.training.train import FitSpec, fit, fixed_targets

    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--train", type=int, default=100_000,
                        help="student examples: one pass over this many drawn from the whole pool")
    args = parser.parse_args()
    device = torch.device("cpu")
    with tempfile.TemporaryDirectory(dir=args.dir) as temp:
        folder = Path(temp)
        started = time.perf_counter()
        fabricate(folder, args.n)
        made = time.perf_counter() - started
        before = memory_mb()
        x_pool, _ = load_cifar5m(str(folder))
        torch.manual_seed(0)
        model = build_model("cnn2d", (32, 32, 3), 10, width=4)
        with PeakMemory() as labelling:
            started = time.perf_counter()
            labels, logits = label_pool(lambda xb: predict_logits(model, xb, device, batch_size=4096), x_pool,
                                        chunk=65536)
            label_s = time.perf_counter() - started
        with PeakMemory() as training:
            started = time.perf_counter()
            chosen = torch.randperm(len(x_pool), generator=torch.Generator().manual_seed(0))[:args.train]
            sample = Subset(x_pool, chosen)
            fit(model, sample, fixed_targets(torch.from_numpy(labels).long()[chosen]),
                FitSpec(epochs=1, batch_size=512), seed=0, device=device)
            train_s = time.perf_counter() - started
    size_gb = args.n * 3072 / 2**30
    print(f"pool: {args.n:,} images ({size_gb:.1f} GiB on disk, memory-mapped), fabricated in {made:.0f} s; "
          f"model cnn2d width 4 ({count_parameters(model):,} parameters); "
          f"before: RssAnon {before['RssAnon']:.0f} MB")
    print("| stage | seconds | images/s | peak RssAnon (MB) | peak RssFile (MB) | peak VmRSS (MB) |")
    print("|---|---|---|---|---|---|")
    stages = (("label the whole pool", label_s, args.n, labelling.peak),
              (f"train on {min(args.train, args.n):,} drawn from it", train_s, min(args.train, args.n), training.peak))
    for name, seconds, count, peak in stages:
        print(f"| {name} | {seconds:.1f} | {count / seconds:,.0f} | {peak['RssAnon']:.0f} | "
              f"{peak['RssFile']:.0f} | {peak['VmRSS']:.0f} |")
    print(f"labels kept: uint8 [{args.n:,}] ({args.n / 2**20:.1f} MiB) and float16 logits "
          f"[{args.n:,}, 10] ({args.n * 20 / 2**20:.0f} MiB)")


if __name__ == "__main__":
    main()
