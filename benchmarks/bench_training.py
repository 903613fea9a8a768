"""Teacher training throughput on the default MNIST-1D setting, against the machine's matmul peak.

    python benchmarks/bench_training.py [--epochs 5] [--threads 2] [--pool 200000]

In one process: the best fp32 and bf16 `torch.mm` rate of this machine; the default teacher
(cnn1d, width 32, 4,000 MNIST-1D examples, batch 128, AdamW + OneCycle) trained by
`rolemodels.training.train.fit` (precision auto, and fp32; batch 128 and 512), by a plain fp32
DataLoader loop and by PyTorch Lightning's Trainer (when it is installed); and pool labelling
with `predict_logits`. Each training run does one warm-up epoch, then --epochs timed epochs
(the sum of the per-epoch wall times; set-up outside the epochs is not counted).
The FLOPs of one training step (forward + backward of one batch, optimizer not counted) come
from torch.utils.flop_counter.FlopCounterMode; achieved FLOP/s = FLOPs per example x examples/s.
"""
from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable without installing
from rolemodels.data.mnist1d_fast import generate_fast
from rolemodels.models import build_model, count_parameters, input_stats
from rolemodels.recipe import FitSpec
from rolemodels.runtime.device import autocast_dtype, cpu_bf16_support, predict_logits
from rolemodels.training.train import fit, fixed_targets

LR = 3e-3  # the teachers' defaults (config.TeacherConfig): AdamW, no weight decay, OneCycle
PCT_START = 0.15


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def matmul_flops(dtype: torch.dtype, size: int, repeats: int) -> float:
    """Best FLOP/s of a size x size torch.mm over `repeats` timed calls (after two warm-ups)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen).to(dtype)
    b = torch.randn(size, size, generator=gen).to(dtype)
    out = torch.empty(size, size, dtype=dtype)
    for _ in range(2):
        torch.mm(a, b, out=out)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


class Data:
    def __init__(self, n: int):
        x, y = generate_fast(n, 0)
        self.x = torch.from_numpy(x)
        self.y = torch.from_numpy(y)
        self.mean, self.std = input_stats(self.x)

    def model(self) -> torch.nn.Module:
        torch.manual_seed(0)
        return build_model("cnn1d", tuple(self.x.shape[1:]), 10, width=32, mean=self.mean, std=self.std)


def step_flops(data: Data, batch_size: int) -> int:
    """FLOPs of forward + backward of one batch (matmuls and convolutions, as FlopCounterMode counts)."""
    model = data.model().train()
    counter = FlopCounterMode(display=False)
    with counter:
        loss = F.cross_entropy(model(data.x[:batch_size]), data.y[:batch_size])
        loss.backward()
    return counter.get_total_flops()


def forward_flops(data: Data, batch_size: int) -> int:
    """FLOPs of the forward pass of one batch (what labelling a pool does per batch)."""
    model = data.model().eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(data.x[:batch_size])
    return counter.get_total_flops()


def timed_examples_per_second(epoch_seconds: list[float], n: int) -> float:
    """Examples/s over the epochs after the first (the warm-up)."""
    timed = epoch_seconds[1:]
    return n * len(timed) / sum(timed)


def run_ours(data: Data, epochs: int, batch_size: int, precision: str) -> tuple[float, torch.nn.Module]:
    model = data.model()
    seconds: list[float] = []
    spec = FitSpec(epochs=epochs + 1, batch_size=batch_size, optimizer="adamw", lr=LR, weight_decay=0.0,
                   schedule="onecycle")
    fit(model, data.x, fixed_targets(data.y), spec, seed=0, device=torch.device("cpu"),
        precision=precision, log=lambda record: seconds.append(record["seconds"]))
    return timed_examples_per_second(seconds, len(data.x)), model


def run_plain(data: Data, epochs: int, batch_size: int) -> float:
    """What a new user writes: a shuffled DataLoader over a TensorDataset, fp32, same optimizer."""
    model = data.model().train()
    loader = DataLoader(TensorDataset(data.x, data.y), batch_size=batch_size, shuffle=True)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, LR, total_steps=(epochs + 1) * len(loader),
                                                pct_start=PCT_START)
    seconds = []
    for _ in range(epochs + 1):
        start = time.perf_counter()
        for xb, yb in loader:
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        seconds.append(time.perf_counter() - start)
    return timed_examples_per_second(seconds, len(data.x))


def run_lightning(data: Data, epochs: int, batch_size: int) -> float | None:
    """The same model and recipe under lightning.Trainer (fp32), or None when it is not installed."""
    try:
        import lightning as L
    except ImportError:
        return None
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    loader = DataLoader(TensorDataset(data.x, data.y), batch_size=batch_size, shuffle=True)
    total_steps = (epochs + 1) * len(loader)

    class Module(L.LightningModule):
        def __init__(self, net: torch.nn.Module):
            super().__init__()
            self.net = net

        def training_step(self, batch, batch_idx):
            xb, yb = batch
            return F.cross_entropy(self.net(xb), yb)

        def configure_optimizers(self):
            opt = torch.optim.AdamW(self.parameters(), lr=LR, weight_decay=0.0)
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, LR, total_steps=total_steps, pct_start=PCT_START)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    class EpochTimer(L.Callback):
        def __init__(self):
            self.seconds: list[float] = []
            self.start = 0.0

        def on_train_epoch_start(self, trainer, module):
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer, module):
            self.seconds.append(time.perf_counter() - self.start)

    timer = EpochTimer()
    trainer = L.Trainer(max_epochs=epochs + 1, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[timer])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(Module(data.model()), loader)
    return timed_examples_per_second(timer.seconds, len(data.x))


def whole_fits_examples_per_second(data: Data, epochs: int, fits: int, at_once: int, threads: int) -> float:
    """Examples/s over the wall time of `fits` whole teacher trainings, `at_once` at a time.

    With at_once > 1 each fit runs in its own Python thread and every operation on one intra-op
    thread (torch's kernels release the GIL), so independent trainings fill the cores instead of
    splitting each small operation across them.
    """
    from concurrent.futures import ThreadPoolExecutor

    spec = FitSpec(epochs=epochs + 1, batch_size=128, optimizer="adamw", lr=LR, weight_decay=0.0,
                   schedule="onecycle")
    models = [data.model() for _ in range(fits)]
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    def train(k: int) -> None:
        fit(models[k], data.x, fixed_targets(data.y), spec, seed=k, device=torch.device("cpu"),
            precision="fp32")

    start = time.perf_counter()
    if at_once == 1:  # in the main thread, as the pipeline runs a single training
        for k in range(fits):
            train(k)
    else:
        with ThreadPoolExecutor(max_workers=at_once) as pool:
            list(pool.map(train, range(fits)))
    seconds = time.perf_counter() - start
    torch.set_num_threads(previous)
    return fits * (epochs + 1) * len(data.x) / seconds


def labelling_examples_per_second(model: torch.nn.Module, pool: torch.Tensor, precision: str,
                                  repeats: int) -> float:
    predict_logits(model, pool[:8192], torch.device("cpu"), precision)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        predict_logits(model, pool, torch.device("cpu"), precision)
        best = min(best, time.perf_counter() - start)
    return len(pool) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs (after one warm-up epoch)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n", type=int, default=4000, help="training examples (the default teacher's 4,000)")
    parser.add_argument("--pool", type=int, default=200_000, help="examples labelled by predict_logits")
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--matmul-repeats", type=int, default=10)
    opts = parser.parse_args()

    began = time.perf_counter()
    torch.set_num_threads(opts.threads)
    cpu = torch.device("cpu")
    has_bf16 = bool(cpu_bf16_support())
    auto_dtype = autocast_dtype(cpu, "auto")

    peak_fp32 = matmul_flops(torch.float32, opts.matmul_size, opts.matmul_repeats)
    peak_bf16 = matmul_flops(torch.bfloat16, opts.matmul_size, opts.matmul_repeats)
    peak = max(peak_fp32, peak_bf16) if has_bf16 else peak_fp32
    peak_name = "bf16" if has_bf16 and peak_bf16 >= peak_fp32 else "fp32"

    data = Data(opts.n)
    flops_per_example = step_flops(data, 128) / 128
    flops_per_example_512 = step_flops(data, 512) / 512
    forward_per_example = forward_flops(data, 128) / 128

    ours, trained = run_ours(data, opts.epochs, 128, "auto")
    ours_fp32, _ = run_ours(data, opts.epochs, 128, "fp32")
    ours_512, _ = run_ours(data, opts.epochs, 512, "auto")
    plain = run_plain(data, opts.epochs, 128)
    lightning = run_lightning(data, opts.epochs, 128)

    one_at_a_time = whole_fits_examples_per_second(data, opts.epochs, 2, 1, opts.threads)
    two_at_once = whole_fits_examples_per_second(data, opts.epochs, 2, 2, 1)

    pool = torch.from_numpy(generate_fast(opts.pool, 1)[0])
    label_auto = labelling_examples_per_second(trained, pool, "auto", 2)
    label_fp32 = labelling_examples_per_second(trained, pool, "fp32", 2)
    total = time.perf_counter() - began

    def g(flops: float) -> str:
        return f"{flops / 1e9:,.1f} GFLOP/s"

    def achieved(rate: float, per_example: float) -> str:
        return f"{g(rate * per_example)} ({100 * rate * per_example / peak:.1f}% of {peak_name} peak)"

    auto_name = "bf16" if auto_dtype is torch.bfloat16 else "fp32"
    infer_name = "bf16" if autocast_dtype(cpu, "auto", training=False) is torch.bfloat16 else "fp32"
    model = data.model()
    print(f"Teacher training throughput, {datetime.date.today().isoformat()}: {cpu_name()}, "
          f"{os.cpu_count()} cores, torch {torch.__version__} ({opts.threads} threads), "
          f"Python {platform.python_version()}, native bf16: {'yes' if has_bf16 else 'no'}")
    print(f"cnn1d width 32 ({count_parameters(model):,} parameters), {opts.n:,} MNIST-1D examples, "
          f"1 warm-up + {opts.epochs} timed epochs; forward + backward = "
          f"{flops_per_example / 1e6:.2f} MFLOP per example, forward alone {forward_per_example / 1e6:.2f} "
          "(FlopCounterMode)")
    print()
    print("| measurement | examples/s | achieved FLOP/s | ratio |")
    print("|---|---|---|---|")
    print(f"| `torch.mm` {opts.matmul_size}² fp32, best of {opts.matmul_repeats} | | {g(peak_fp32)} | |")
    print(f"| `torch.mm` {opts.matmul_size}² bf16, best of {opts.matmul_repeats} | | {g(peak_bf16)} | |")
    print(f"| `train.fit`, precision auto ({auto_name}), batch 128 | {ours:,.0f} | "
          f"{achieved(ours, flops_per_example)} | 1.00× |")
    print(f"| plain fp32 `DataLoader` loop, batch 128 | {plain:,.0f} | {achieved(plain, flops_per_example)} | "
          f"ours / plain = {ours / plain:.2f}× |")
    if lightning is None:
        print("| Lightning `Trainer` (fp32), batch 128 | not installed | | |")
    else:
        print(f"| Lightning `Trainer` (fp32), batch 128 | {lightning:,.0f} | "
              f"{achieved(lightning, flops_per_example)} | ours / Lightning = {ours / lightning:.2f}× |")
    print(f"| `train.fit`, precision fp32, batch 128 | {ours_fp32:,.0f} | {achieved(ours_fp32, flops_per_example)} | "
          f"auto / fp32 = {ours / ours_fp32:.2f}× |")
    print(f"| `train.fit`, precision auto ({auto_name}), batch 512 | {ours_512:,.0f} | "
          f"{achieved(ours_512, flops_per_example_512)} | 512 / 128 = {ours_512 / ours:.2f}× |")
    print(f"| 2 whole fits (fp32) one after another, {opts.threads} threads | {one_at_a_time:,.0f} | "
          f"{achieved(one_at_a_time, flops_per_example)} | |")
    print(f"| 2 whole fits (fp32) at once, 1 thread each | {two_at_once:,.0f} | "
          f"{achieved(two_at_once, flops_per_example)} | at once / one by one = {two_at_once / one_at_a_time:.2f}× |")
    print(f"| `predict_logits` {opts.pool:,} examples, auto ({infer_name}) | {label_auto:,.0f} | "
          f"{achieved(label_auto, forward_per_example)} | |")
    print(f"| `predict_logits` {opts.pool:,} examples, fp32 | {label_fp32:,.0f} | "
          f"{achieved(label_fp32, forward_per_example)} | auto / fp32 = {label_auto / label_fp32:.2f}× |")
    print()
    print(f"Benchmark wall time: {total:.1f} s")


if __name__ == "__main__":
    main()
