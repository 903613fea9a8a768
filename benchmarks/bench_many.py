"""Many models at once: K models trained one at a time, side by side in threads (or CUDA streams),
and stacked into one vmapped model (train_many.fit_many); and the pool labelled by K teachers
one at a time and stacked. Prints one JSON line per measurement and a table.

    python benchmarks/bench_many.py                       # the MNIST-1D default's teachers, on the CPU
    python benchmarks/bench_many.py --device cuda         # the same on a GPU
    python benchmarks/bench_many.py --model resnet18 --device cuda --n 10000 --batch 128 --models 4
                                                          # the paper's teachers (fabricated images)

Rates are examples per second summed over the K models, from the last of --epochs epochs (the
first pays for allocations and cudnn's autotuning).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable without installing
from rolemodels.config import load_config  # noqa: E402
from rolemodels.method.teach import label_pool_by_teachers  # noqa: E402
from rolemodels.models import build_model, input_stats  # noqa: E402
from rolemodels.paper.report import processor_name  # noqa: E402
from rolemodels.recipe import FitSpec  # noqa: E402
from rolemodels.runtime.device import canonical_device, predict_logits, resolve_device  # noqa: E402
from rolemodels.runtime.threads import side_by_side  # noqa: E402
from rolemodels.training.train import fit, fixed_targets  # noqa: E402
from rolemodels.training.train_many import FitTask, StackedPredictor, fit_many  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def processor() -> str:
    if torch.cuda.is_available() and os.environ.get("BENCH_DEVICE", "").startswith("cuda"):
        return torch.cuda.get_device_name()
    return processor_name()


def data(model: str, n: int, pool: int):
    if model == "resnet18":
        gen = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (n, 32, 32, 3), dtype=torch.uint8, generator=gen)
        xp = torch.randint(0, 256, (pool, 32, 32, 3), dtype=torch.uint8, generator=gen)
        return x, torch.randint(0, 10, (n,), generator=gen), xp, (32, 32, 3)
    from rolemodels.data.mnist1d_fast import generate_fast

    x, y = generate_fast(n, seed=0)
    xp, _ = generate_fast(pool, seed=1)
    return torch.as_tensor(x).float(), torch.as_tensor(y).long(), torch.as_tensor(xp).float(), (x.shape[1],)


def recipe(model: str, epochs: int, batch: int) -> tuple[FitSpec, int]:
    preset = "cifar10-paper.toml" if model == "resnet18" else "mnist1d.toml"
    teachers = load_config(ROOT / "configs" / preset).teachers
    spec = FitSpec.from_config(teachers).for_model(model)
    spec.epochs, spec.batch_size = epochs, batch or spec.batch_size
    return spec, teachers.width


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="cnn1d", choices=["cnn1d", "resnet18"])
    parser.add_argument("--models", type=int, default=10, help="K")
    parser.add_argument("--n", type=int, default=4000, help="training examples per model")
    parser.add_argument("--pool", type=int, default=50_000, help="pool rows to label")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=0, help="0: the preset's")
    parser.add_argument("--ways", default="one_at_a_time,side_by_side,stacked,label",
                        help="comma-separated: one_at_a_time, side_by_side, side_by_side4, stacked, label")
    parser.add_argument("--eval-batch", type=int, default=8192)
    args = parser.parse_args()
    os.environ["BENCH_DEVICE"] = args.device
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    x, y, x_pool, shape = data(args.model, args.n, args.pool)
    stats = input_stats(x)
    spec, width = recipe(args.model, args.epochs, args.batch)
    K = args.models
    labels = [y[torch.randperm(len(y), generator=torch.Generator().manual_seed(k))] for k in range(K)]

    def new(k: int) -> torch.nn.Module:
        torch.manual_seed(k)
        return build_model(args.model, shape, 10, width, *stats)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    header = {"processor": processor(), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "device": str(canonical_device(device)), "model": args.model, "K": K, "n": args.n,
              "batch": spec.batch_size, "date": time.strftime("%Y-%m-%d")}
    print(json.dumps({"setup": header}), flush=True)
    results = {}

    def train_rate(name: str, run, at_once: int) -> None:
        seconds: dict[int, list[float]] = {k: [] for k in range(K)}
        logs = [lambda r, k=k: seconds[k].append(r["seconds"]) for k in range(K)]
        started = time.perf_counter()
        run(logs)
        sync()
        wall = time.perf_counter() - started
        last = [s[-1] for s in seconds.values()]
        # groups of `at_once` models ran together, one group after another: a group's last epoch
        # lasted as long as its slowest model's
        rate = K * args.n / sum(max(last[first:first + at_once]) for first in range(0, K, at_once))
        results[name] = {"examples_per_s": round(rate), "wall_s": round(wall, 1)}
        print(json.dumps({name: results[name]}), flush=True)

    ways = args.ways.split(",")
    if "one_at_a_time" in ways:
        train_rate("one_at_a_time", lambda logs: [fit(new(k), x, fixed_targets(labels[k]), spec, seed=k, device=device,
                                                      log=logs[k]) for k in range(K)], 1)
    for name, slots in (("side_by_side", 2), ("side_by_side4", 4)):
        if name in ways:
            def run(logs, slots=slots):
                models = [new(k) for k in range(K)]
                for first in range(0, K, slots):
                    side_by_side([lambda k=k: fit(models[k], x, fixed_targets(labels[k]), spec, seed=k, device=device,
                                                  log=logs[k]) for k in range(first, min(K, first + slots))],
                                 device, slots=slots)
            train_rate(name, run, slots)
    if "stacked" in ways:
        train_rate("stacked", lambda logs: fit_many([new(k) for k in range(K)],
                                                    [FitTask(x, args.n, fixed_targets(labels[k]), spec, k)
                                                     for k in range(K)], device=device, logs=logs), K)
    if "label" in ways:
        teachers = [new(k).eval() for k in range(K)]
        predicts = [lambda xb, t=t: predict_logits(t, xb, device, batch_size=args.eval_batch, keep_on_device=True)
                    for t in teachers]
        stacked = StackedPredictor(teachers, device, batch_size=args.eval_batch)
        for name, run in (("label_one_at_a_time", lambda: label_pool_by_teachers(predicts, x_pool, device=device)),
                          ("label_stacked", lambda: label_pool_by_teachers(stacked, x_pool, device=device))):
            run()  # warm
            sync()
            started = time.perf_counter()
            run()
            sync()
            rate = K * len(x_pool) / (time.perf_counter() - started)
            results[name] = {"examples_per_s": round(rate)}
            print(json.dumps({name: results[name]}), flush=True)
    print(f"\n{header}\n\n| way | examples/s (K models together) |\n|---|---|")
    for name, value in results.items():
        print(f"| {name} | {value['examples_per_s']:,} |")


if __name__ == "__main__":
    main()
