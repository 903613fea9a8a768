"""ResNet-18 throughput on random CIFAR-shaped data: training and pool labelling, per precision.

    python benchmarks/bench_gpu.py            # on a GPU: the numbers for docs/benchmarks.md
    python benchmarks/bench_gpu.py --small    # any machine: small sizes, checks the script runs

Training uses the pipeline's own pieces (models.build_model, augment.random_crop_flip, the
same optimizer step as train.fit) on uint8 images kept on the device.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from rolemodels.models import build_model
from rolemodels.training.augment import random_crop_flip


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_throughput(device, batch, dtype, channels_last, compile_model, steps, width):
    torch.manual_seed(0)
    model = build_model("resnet18", (32, 32, 3), 10, width).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile_model:
        model = torch.compile(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)
    x = torch.randint(0, 256, (batch * 4, 32, 32, 3), dtype=torch.uint8, device=device)
    y = torch.randint(0, 10, (batch * 4,), device=device)
    gen = torch.Generator(device=device).manual_seed(0)

    def step(i):
        idx = slice((i % 4) * batch, (i % 4 + 1) * batch)
        xb = random_crop_flip(x[idx], gen)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = F.cross_entropy(model(xb).float(), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for i in range(3 if not compile_model else 10):  # warm-up (and compilation)
        step(i)
    sync(device)
    started = time.perf_counter()
    for i in range(steps):
        step(i)
    sync(device)
    return steps * batch / (time.perf_counter() - started)


@torch.inference_mode()
def label_throughput(device, batch, dtype, n, width):
    model = build_model("resnet18", (32, 32, 3), 10, width).to(device).eval()
    pool = torch.randint(0, 256, (n, 32, 32, 3), dtype=torch.uint8)
    if device.type == "cuda":
        pool = pool.pin_memory()
    out = torch.empty(n, dtype=torch.uint8)
    for _ in range(2):  # the first pass warms up
        sync(device)
        started = time.perf_counter()
        for first in range(0, n, batch):
            xb = pool[first:first + batch].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                out[first:first + batch] = model(xb).argmax(1).to(torch.uint8).cpu()
        sync(device)
    return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", action="store_true", help="tiny sizes: check the script on a CPU")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    small = args.small or device.type == "cpu"
    width, steps, n_label = (8, 2, 512) if small else (64, 50, 200_000)
    print(f"device {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, torch {torch.__version__}, "
          f"ResNet-18 width {width}{' (small check)' if small else ''}")
    print("| stage | batch | precision | compile | images/s |\n|---|---|---|---|---|")
    for batch in ((16,) if small else (128, 512)):
        for dtype, cl, name in ((None, False, "fp32"), (torch.bfloat16, True, "bf16 + channels_last")):
            for compile_model in ((False,) if small else (False, True)):
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                rate = train_throughput(device, batch, dtype, cl, compile_model, steps, width)
                print(f"| train | {batch} | {name} | {compile_model} | {rate:,.0f} |", flush=True)
    for dtype, name in ((None, "fp32"), (torch.bfloat16, "bf16")):
        rate = label_throughput(device, 64 if small else 2048, dtype, n_label, width)
        print(f"| label pool | {64 if small else 2048} | {name} | False | {rate:,.0f} |", flush=True)
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
