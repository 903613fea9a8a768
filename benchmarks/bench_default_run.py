"""Time the default run (`rolemodels run`, MNIST-1D preset) per stage, with its peak memory.

    python benchmarks/bench_default_run.py [--cold] [--config FILE] [key=value ...]

--cold uses an empty data cache, so MNIST-1D generation is timed too. Prints a short table and
the Table 1 the run produced; copy both into docs/benchmarks.md with the machine and date.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rolemodels.paper.report import processor_name  # noqa: E402  (lscpu's model name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cold", action="store_true", help="generate the data again (empty cache)")
    parser.add_argument("--config", default=None)
    parser.add_argument("--keep", help="run in this folder and keep it (report, figures), instead of a temporary one")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        out = Path(args.keep) if args.keep else Path(temp) / "run"
        command = [sys.executable, "-m", "rolemodels", "run", "--out", str(out), "--quiet", *args.overrides]
        if args.keep:
            command.append("--force")  # measure a whole run, not a resumed one
        if args.config:
            command[4:4] = ["--config", args.config]
        env = dict(os.environ)
        if args.cold:
            env["ROLEMODELS_CACHE"] = str(Path(temp) / "cache")
        started = time.perf_counter()
        subprocess.run(command, check=True, cwd=ROOT, env=env)
        wall = time.perf_counter() - started
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        results = json.loads((out / "results.json").read_text())
    seconds = results["seconds"]
    other = seconds["total"] - seconds["teachers"] - seconds["labelling"] - seconds["students"]
    print(f"# default run, {datetime.date.today()}, {processor_name() or platform.machine()}, "
          f"{os.cpu_count()} cores, torch {results['environment']['torch']}")
    print(f"command: {' '.join(command[1:])}")
    print("| stage | seconds |\n|---|---|")
    for stage in ("teachers", "labelling", "students"):
        print(f"| {stage} | {seconds[stage]:.1f} |")
    print(f"| data, evaluation, report | {other:.1f} |")
    print(f"| **whole command (incl. start-up{', data generation' if args.cold else ''})** | {wall:.1f} |")
    print(f"peak resident memory: {peak_mb:.0f} MB")
    table = results["table"]
    sampler = results["sampler"]
    print("| row | accuracy | noise replication |\n|---|---|---|")
    for row in ("teacher", "teacher_train_fit", "ensemble", "ensemble_mean_prob", "ensemble_distill",
                "random_distill", "clean_train", "clean_pool"):
        rep = sampler.get(f"{row}_noise_replication")
        rep_text = f"{100 * rep:.1f}%" if rep is not None else ""
        print(f"| {row} | {100 * table[row]['mean']:.1f}% | {rep_text} |")
    print("sweep:", json.dumps({k: v for k, v in results["sweep"].items() if k != "std"}))


if __name__ == "__main__":
    main()
