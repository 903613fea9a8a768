"""Time a preset with 1 process and with several under torchrun, per stage.

    python benchmarks/bench_distributed.py [--config tiny] [--processes 1 2] [--threads T] [--device cpu] [key=value ...]

Each run starts in a fresh folder (the data cache is filled first, untimed). On a CPU each
process gets train.threads = T, by default the machine's cores split between the processes
(cores // P); on GPUs use --device cuda with at most one process per GPU. Prints a table for
docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def command(processes: int, out: Path, args: argparse.Namespace, threads: int) -> list[str]:
    launcher = [sys.executable, "-m", "rolemodels"]
    if processes > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
                    "--standalone", "-m", "rolemodels"]
    return [*launcher, "run", "--config", args.config, "--out", str(out), "--quiet",
            f"train.device={args.device}", f"train.threads={threads}", *args.overrides]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=0, help="torch threads per process on a CPU (0: cores // P)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (one process per GPU)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rows = []
    with tempfile.TemporaryDirectory() as temp:
        # Fill the data cache once, untimed: only the pipeline is compared.
        warm = ["teachers.count=1", "teachers.epochs=1", "students.epochs=1", "sweep.teachers=[1]"]  # later wins
        subprocess.run(command(1, Path(temp) / "warm", args, cores) + warm, check=True, cwd=ROOT, env=env,
                       capture_output=True)
        for processes in args.processes:
            threads = (args.threads or max(1, cores // processes)) if args.device == "cpu" else 0
            out = Path(temp) / f"p{processes}"
            started = time.perf_counter()
            finished = subprocess.run(command(processes, out, args, threads), cwd=ROOT, env=env,
                                      capture_output=True, text=True)
            wall = time.perf_counter() - started
            if finished.returncode != 0:
                sys.exit(f"{processes} processes failed:\n{finished.stderr[-3000:]}")
            results = json.loads((out / "results.json").read_text())
            rows.append((processes, threads, wall, results))
    print(f"# {args.config} preset, {datetime.date.today()}, {platform.processor() or platform.machine()}, "
          f"{cores} cores, torch {torch.__version__}, device {args.device}")
    print(f"command: {' '.join(command(2, Path('OUT'), args, 0)[1:])}".replace("threads=0", "threads=T"))
    print("| processes | threads each | teachers s | labelling s | students s | whole command s | "
          "ensemble_distill | random_distill |")
    print("|---|---|---|---|---|---|---|---|")
    for processes, threads, wall, results in rows:
        seconds, table = results["seconds"], results["table"]
        print(f"| {processes} | {threads or '-'} | {seconds['teachers']:.1f} | {seconds['labelling']:.1f} | "
              f"{seconds['students']:.1f} | {wall:.1f} | {table['ensemble_distill']['mean']:.4f} | "
              f"{table['random_distill']['mean']:.4f} |")


if __name__ == "__main__":
    main()
