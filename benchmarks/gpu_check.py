"""The GPU path proven in one call: throughput, the paper preset end to end, the tests on CUDA.

    bash benchmarks/gpu_check.sh            # one GPU, at most 8 minutes, no network
    bash benchmarks/gpu_check.sh --small    # any machine, toy sizes, well under a minute

Steps, most important first, each in its own process with a time limit taken from what is left
of the budget (a step that would not fit is recorded as skipped, a failed one as failed, and the
others still run):
    fabricate     CIFAR-10 (50,000 train, 10,000 test) and a CIFAR-5m pool of 500,000 in the
                  published formats (pickle batches; part*.npz), images with a class pattern
    train         teacher training throughput: `fit` with the paper's recipe (ResNet-18, batch
                  128, SGD, crop + flip, bf16 autocast), images/s and GPU busy fraction
    label         pool labelling throughput: two teachers on the 500,000-image pool kept on the
                  device and streamed from host memory, against one teacher at a time (before)
    end_to_end    the cifar10-paper preset at reduced scale (2 teachers x 2 epochs, a 100,000 pool),
                  uninterrupted and killed mid-teacher then resumed; with train.deterministic the
                  two must agree exactly
    cuda_tests    tests/test_cuda.py and the CIFAR tests, on CUDA
    side_by_side, compile, reduce_overhead: the launch-bound options, measured as `train`
Writes numbers.json (every step's numbers) and summary.md into --out (default $OUT, else
/tmp/rolemodels-gpu-check/out), logs into its logs/ folder; data and run folders go to --scratch.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 460  # the shell wrapper stops everything at 470 s
FULL = {"n_train_batch": 10_000, "n_test": 10_000, "pool": 500_000, "e2e_pool": 100_000, "width": 64,
        "train_batch": 128, "eval_batches": (1024, 4096), "before_rows": 100_000}
SMALL = {"n_train_batch": 20, "n_test": 50, "pool": 300, "e2e_pool": 300, "width": 2,
         "train_batch": 16, "eval_batches": (128,), "before_rows": 256}


# ---------------------------------------------------------------------------------------------
# Setup


def device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def configured_device():
    """The device, with a run's CUDA settings (train.deterministic off: cudnn.benchmark on)."""
    here = device()
    if here.type == "cuda":
        from rolemodels.config import TrainConfig
        from rolemodels.runtime.session import configure_cuda

        configure_cuda(TrainConfig())
    return here


class BusySampler:
    """The GPU's busy fraction (NVML: the share of time a kernel was running) sampled every 50 ms
    in a thread; `between(a, b)` averages the samples taken in [a, b] (perf_counter seconds)."""

    def __init__(self):
        import torch

        self.samples: list[tuple[float, float]] = []
        self.available = torch.cuda.is_available()
        self._stop = threading.Event()
        if self.available:
            try:
                torch.cuda.utilization()
            except Exception:  # no pynvml: busy fractions are reported as None
                self.available = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import torch

        while self.available and not self._stop.wait(0.05):
            self.samples.append((time.perf_counter(), torch.cuda.utilization() / 100))

    def between(self, start: float, end: float) -> float | None:
        inside = [u for t, u in self.samples if start <= t <= end]
        return round(sum(inside) / len(inside), 3) if inside else None

    def stop(self) -> None:
        self._stop.set()


def environment() -> dict:
    import platform

    import torch

    info = {"torch": torch.__version__, "python": platform.python_version(), "device": str(device()),
            "cpu": next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                         if line.startswith("model name")), platform.processor()), "cpu_count": os.cpu_count()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    multiprocessors=props.multi_processor_count, cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version())
    return info


# ---------------------------------------------------------------------------------------------
# Data: the published formats, at realistic sizes


def fabricate(scratch: Path, sizes: dict) -> dict:
    """CIFAR-10's five training batches and test batch (Python-2 pickles) and CIFAR-5m parts
    (X uint8 [n, 32, 32, 3], Y uint8 [n], np.savez); a class's images share a pattern, so
    teachers learn something."""
    import numpy as np

    sys.path.insert(0, str(ROOT / "tests"))
    from fabricate import CIFAR_NAMES, cifar_batch, py2_pickle

    rng = np.random.default_rng(0)
    patterns = rng.integers(0, 128, (10, 32, 32, 3), dtype=np.uint8)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 10, n).astype(np.uint8)
        return patterns[y] + rng.integers(0, 128, (n, 32, 32, 3), dtype=np.uint8), y

    started = time.perf_counter()
    folder = scratch / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, 6):
        x, y = draw(sizes["n_train_batch"])
        (folder / f"data_batch_{i}").write_bytes(py2_pickle(cifar_batch(x, y, f"training batch {i} of 5".encode())))
    x, y = draw(sizes["n_test"])
    (folder / "test_batch").write_bytes(py2_pickle(cifar_batch(x, y, b"testing batch 1 of 1")))
    (folder / "batches.meta").write_bytes(py2_pickle({b"label_names": [n.encode() for n in CIFAR_NAMES]}))
    pool = scratch / "cifar5m"
    pool.mkdir(parents=True, exist_ok=True)
    per_part = -(-sizes["pool"] // 6)
    for i in range(6):  # part0.npz .. part5.npz, as published (about 1M images each there)
        x, y = draw(min(per_part, sizes["pool"] - i * per_part))
        np.savez(pool / f"part{i}.npz", X=x, Y=y)
    return {"seconds": round(time.perf_counter() - started, 1), "train": 5 * sizes["n_train_batch"],
            "test": sizes["n_test"], "pool": sizes["pool"], "pool_gb": round(sizes["pool"] * 3072 / 1e9, 2)}


# ---------------------------------------------------------------------------------------------
# Training throughput


def teacher_recipe(epochs: int, batch: int):
    from rolemodels.config import load_config
    from rolemodels.recipe import FitSpec

    spec = FitSpec.from_config(load_config(ROOT / "configs" / "cifar10-paper.toml").teachers)
    spec.epochs, spec.batch_size = epochs, batch
    return spec


def train_rate(scratch: Path, sizes: dict, trainings: int = 1, compile_mode: str | None = None) -> dict:
    """images/s of `trainings` teachers at once (threads and CUDA streams, as teachers.per_device),
    from the second of two epochs (the first pays for cudnn.benchmark and compilation)."""
    import torch

    from rolemodels.data.cifar10 import load_cifar10
    from rolemodels.models import build_model, input_stats
    from rolemodels.runtime.threads import side_by_side
    from rolemodels.training.train import fit, fixed_targets

    here = configured_device()
    x, y, _, _, _ = load_cifar10(scratch / "cifar10")
    stats = input_stats(x)
    spec = teacher_recipe(2, sizes["train_batch"])
    sampler = BusySampler()
    ends: list[list[float]] = [[] for _ in range(trainings)]
    seconds: list[list[float]] = [[] for _ in range(trainings)]

    def job(k: int):
        torch.manual_seed(k)
        model = build_model("resnet18", (32, 32, 3), 10, sizes["width"], *stats)

        def log(record):
            ends[k].append(time.perf_counter())
            seconds[k].append(record["seconds"])

        return lambda: fit(model, x, fixed_targets(y), spec, seed=k, device=here, log=log,
                           compile_model=compile_mode is not None, compile_mode=compile_mode or "default")

    if here.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    side_by_side([job(k) for k in range(trainings)], here)
    sampler.stop()
    window = (min(e[0] for e in ends), max(e[1] for e in ends))
    rate = sum(len(x) / s[1] for s in seconds)
    return {"trainings": trainings, "compile": compile_mode or "off", "batch": spec.batch_size,
            "images_per_s": round(rate), "first_epoch_s": round(max(s[0] for s in seconds), 1),
            "busy": sampler.between(*window), "peak_gib": peak_gib()}


def peak_gib() -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None


# ---------------------------------------------------------------------------------------------
# Labelling throughput


def label_rates(scratch: Path, sizes: dict) -> dict:
    import torch

    from rolemodels.data.cifar5m import load_cifar5m
    from rolemodels.method.teach import label_pool, label_pool_by_teachers
    from rolemodels.models import build_model
    from rolemodels.runtime.device import on_device, predict_logits

    here = configured_device()
    pool, _ = load_cifar5m(scratch / "cifar5m")
    teachers = []
    for k in range(2):
        torch.manual_seed(k)
        teachers.append(build_model("resnet18", (32, 32, 3), 10, sizes["width"]).eval())
    sampler = BusySampler()
    results = {"pool": len(pool), "teachers": 2}

    warm = slice(0, min(len(pool), 2 * 65536))  # two chunks: cudnn.benchmark and allocations, before timing

    def measure(name: str, run, rows: slice) -> None:
        run(warm)
        sync()
        started = time.perf_counter()
        run(rows)
        sync()
        ended = time.perf_counter()
        images = 2 * len(range(*rows.indices(len(pool))))
        results[name] = {"images_per_s": round(images / (ended - started)), "busy": sampler.between(started, ended)}

    def sync():
        if here.type == "cuda":
            torch.cuda.synchronize()

    started = time.perf_counter()
    resident = on_device(pool, here, limit=None if here.type == "cuda" else 1 << 40)
    sync()
    seconds = time.perf_counter() - started
    results["copy_to_device"] = {"seconds": round(seconds, 2), "gb_per_s": round(len(pool) * 3072 / 1e9 / seconds, 2),
                                 "resident": isinstance(resident, torch.Tensor) and resident.device == here}
    for batch in sizes["eval_batches"]:
        predicts = [lambda xb, t=t, b=batch: predict_logits(t, xb, here, "auto", b, keep_on_device=True)
                    for t in teachers]
        measure(f"resident_batch{batch}", lambda rows, predicts=predicts: label_pool_by_teachers(predicts, resident, rows,
                                                                                             device=here),
                slice(None))
    batch = sizes["eval_batches"][-1]
    predicts = [lambda xb, t=t: predict_logits(t, xb, here, "auto", batch, keep_on_device=True) for t in teachers]
    measure(f"streamed_batch{batch}", lambda rows: label_pool_by_teachers(predicts, pool, rows, device=here),
            slice(None))

    def before(rows: slice):  # one teacher at a time, the pool gathered on the host for each, every batch copied back
        for t in teachers:
            label_pool(lambda xb, t=t: predict_logits(t, xb, here, "auto", sizes["eval_batches"][0]), pool[rows])

    measure(f"before_batch{sizes['eval_batches'][0]}", before, slice(0, min(sizes["before_rows"], len(pool))))
    sampler.stop()
    results["peak_gib"] = peak_gib()
    return results


# ---------------------------------------------------------------------------------------------
# The paper preset end to end, with a kill and a resume


def run_command(scratch: Path, out: Path, sizes: dict, small: bool) -> list[str]:
    overrides = [f"data.root={scratch / 'cifar10'}", f"data.pool_root={scratch / 'cifar5m'}", "teachers.count=2",
                 "teachers.epochs=2", f"data.n_pool={sizes['e2e_pool']}", "sweep.teachers=[1, 2]",
                 "train.checkpoint_every=1", "train.deterministic=true", f"data.cache_dir={scratch / 'cache'}"]
    if small:
        overrides += [f"data.n_train={5 * sizes['n_train_batch']}", f"data.n_test={sizes['n_test']}",
                      f"teachers.width={sizes['width']}", "teachers.batch_size=16", "students.batch_size=16",
                      "train.eval_batch_size=128", "train.threads=1"]
    return [sys.executable, "-m", "rolemodels", "run", "--config", str(ROOT / "configs" / "cifar10-paper.toml"),
            "--out", str(out), "--quiet", *overrides]


def end_to_end(scratch: Path, sizes: dict, small: bool, logs: Path) -> dict:
    import shutil

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    results = {}
    for name in ("reference", "killed"):
        shutil.rmtree(scratch / name, ignore_errors=True)
    with open(logs / "end_to_end.reference.log", "w") as log:
        started = time.perf_counter()
        subprocess.run(run_command(scratch, scratch / "reference", sizes, small), check=True, env=env,
                       stdout=log, stderr=subprocess.STDOUT)
        results["reference_s"] = round(time.perf_counter() - started, 1)
    with open(logs / "end_to_end.killed.log", "w") as log:
        started = time.perf_counter()
        process = subprocess.Popen(run_command(scratch, scratch / "killed", sizes, small), env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
        teachers = scratch / "killed" / "seed0" / "teachers"
        while process.poll() is None and not list(teachers.glob("*.resume.pt")):
            time.sleep(0.02)
        killed = process.poll() is None
        if killed:
            process.send_signal(signal.SIGKILL)
        process.wait()
        results["killed_after_s"] = round(time.perf_counter() - started, 1)
        results["kill_landed_mid_teacher"] = killed
        started = time.perf_counter()
        subprocess.run(run_command(scratch, scratch / "killed", sizes, small), check=True, env=env, stdout=log,
                       stderr=subprocess.STDOUT)
        results["resumed_s"] = round(time.perf_counter() - started, 1)
    reference = json.loads((scratch / "reference" / "results.json").read_text())
    resumed = json.loads((scratch / "killed" / "results.json").read_text())
    results["resumed_equals_uninterrupted"] = (reference["table"] == resumed["table"]
                                               and reference["sweep"] == resumed["sweep"])
    results["table"] = {row: value["mean"] for row, value in reference["table"].items()}
    results["stage_seconds"] = reference.get("seconds")
    if not results["resumed_equals_uninterrupted"]:
        results["resumed_table"] = {row: value["mean"] for row, value in resumed["table"].items()}
    return results


# ---------------------------------------------------------------------------------------------
# The tests, on CUDA


def cuda_tests(logs: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
    files = ["tests/test_cuda.py", "tests/test_device.py", "tests/test_device_path.py", "tests/test_train_many.py",
             "tests/test_cifar_pipeline.py", "tests/test_cifar.py", "tests/test_train.py", "tests/test_teach.py"]
    with open(logs / "cuda_tests.log", "w") as log:
        finished = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *files],
                                  cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    tail = (logs / "cuda_tests.log").read_text().strip().splitlines()
    return {"exit_code": finished.returncode, "summary": tail[-1] if tail else ""}


# ---------------------------------------------------------------------------------------------
# The driver: each step in its own process, within the budget


STEPS = {  # name: (seconds it needs at least, GPU only), in the order they run
    "train": (40, False), "label": (50, False), "cuda_tests": (60, True), "end_to_end": (120, False),
    "side_by_side": (30, True), "compile": (90, True), "reduce_overhead": (100, True), "side_by_side4": (40, True),
}


def run_step(name: str, scratch: Path, sizes: dict, small: bool, logs: Path) -> dict:
    if name == "fabricate":
        return fabricate(scratch, sizes)
    if name == "train":
        return train_rate(scratch, sizes)
    if name == "side_by_side":
        return train_rate(scratch, sizes, trainings=2)
    if name == "side_by_side4":
        return train_rate(scratch, sizes, trainings=4)
    if name == "compile":
        return train_rate(scratch, sizes, compile_mode="default")
    if name == "reduce_overhead":
        return train_rate(scratch, sizes, compile_mode="reduce-overhead")
    if name == "label":
        return label_rates(scratch, sizes)
    if name == "end_to_end":
        return end_to_end(scratch, sizes, small, logs)
    if name == "cuda_tests":
        return cuda_tests(logs)
    raise ValueError(name)


def estimate(numbers: dict) -> dict | None:
    """Minutes of the full cifar10-paper preset from the measured rates: 25M teacher images,
    50M labelling forwards, 15M student images (the two students and clean_pool)."""
    trains = [numbers[s]["images_per_s"] for s in ("train", "side_by_side", "side_by_side4", "compile",
                                                   "reduce_overhead") if "images_per_s" in numbers.get(s, {})]
    labels = [v["images_per_s"] for k, v in numbers.get("label", {}).items()
              if k.startswith(("resident", "streamed")) and isinstance(v, dict)]
    if not trains or not labels:
        return None
    train, label = max(trains), max(labels)
    minutes = {"teachers": 25e6 / train / 60, "labelling": 50e6 / label / 60, "students": 15e6 / train / 60}
    minutes = {k: round(v, 1) for k, v in minutes.items()}
    return {"best_train_images_per_s": train, "best_label_images_per_s": label, "minutes": minutes,
            "total_minutes": round(sum(minutes.values()), 1),
            "targets_met": {"train>=40000": train >= 40_000, "total<20min": sum(minutes.values()) < 20}}


def summary(numbers: dict) -> str:
    lines = ["# GPU check", "", f"environment: {json.dumps(numbers.get('environment'))}", "",
             "| step | status | numbers |", "|---|---|---|"]
    for name, value in numbers.items():
        if name in ("environment", "estimate"):
            continue
        status = value.get("status", "ok") if isinstance(value, dict) else "ok"
        shown = {k: v for k, v in value.items() if k != "status"} if isinstance(value, dict) else value
        lines.append(f"| {name} | {status} | `{json.dumps(shown)}` |")
    lines += ["", f"estimate of the full paper preset: `{json.dumps(numbers.get('estimate'))}`", ""]
    return "\n".join(lines)


def drive(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    small = args.small or device().type != "cuda"
    out, scratch = Path(args.out), Path(args.scratch)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    scratch.mkdir(parents=True, exist_ok=True)
    numbers: dict = {"environment": {**environment(), "small": small}}

    def save() -> None:
        numbers["estimate"] = estimate(numbers) if not small else None
        (out / "numbers.json").write_text(json.dumps(numbers, indent=2) + "\n")
        (out / "summary.md").write_text(summary(numbers))

    failed = False
    for name in ["fabricate", *STEPS]:
        need, gpu_only = STEPS.get(name, (30, False))
        left = args.budget - (time.perf_counter() - started)
        if gpu_only and small:
            numbers[name] = {"status": "skipped (needs a GPU)"}
            continue
        if left < (5 if small else need):
            numbers[name] = {"status": f"skipped ({left:.0f} s left, needs {need})"}
            continue
        command = [sys.executable, str(Path(__file__).resolve()), "--step", name, "--scratch", str(scratch), "--out", str(out)]
        command += ["--small"] if small else []
        step_started = time.perf_counter()
        with open(logs / f"{name}.log", "w") as log:
            # A session of its own, so that a step over its time is stopped with all it started.
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True,
                                       env={**os.environ, "PYTHONPATH": str(ROOT)})
            try:
                stdout, _ = process.communicate(timeout=left)
                lines = stdout.strip().splitlines()
                if process.returncode == 0 and lines:
                    numbers[name] = json.loads(lines[-1])
                else:
                    numbers[name] = {"status": f"failed (exit {process.returncode}; logs/{name}.log)"}
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                numbers[name] = {"status": f"failed (stopped after {left:.0f} s; logs/{name}.log)"}
        if numbers[name].get("status", "").startswith("failed") or numbers[name].get("exit_code", 0) != 0 \
                or numbers[name].get("resumed_equals_uninterrupted") is False:
            failed = True
        numbers[name].setdefault("seconds", round(time.perf_counter() - step_started, 1))
        print(f"{name}: {json.dumps(numbers[name])}", flush=True)
        save()
    save()
    print(summary(numbers))
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="toy sizes: checks the script on any machine")
    parser.add_argument("--out", default=os.environ.get("OUT") or "/tmp/rolemodels-gpu-check/out")
    parser.add_argument("--scratch", default="/tmp/rolemodels-gpu-check/scratch",
                        help="data and run folders (about 2 GB at full size)")
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="seconds for all steps")
    parser.add_argument("--step", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:  # one step, in this process: its numbers as the last line of stdout
        small = args.small or device().type != "cuda"
        if small:  # toy models on a CPU that may be shared: one thread never waits for another
            import torch

            torch.set_num_threads(1)
        result = run_step(args.step, Path(args.scratch), SMALL if small else FULL, small, Path(args.out) / "logs")
        print(json.dumps(result), flush=True)
        return 0
    return drive(args)


if __name__ == "__main__":
    sys.exit(main())
