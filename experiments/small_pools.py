"""Students on a user's small arrays: 700 labelled rows and a 700-row pool, where a pool is too small
for the student's usual budget (rolemodels.recipe.is_small_pool). Do the students beat one teacher?

    python experiments/small_pools.py [--seeds 0 1 2] [--threads 1]
    python experiments/small_pools.py --markdown            # the table, from docs/data/small_pools.json

Data for seed s: MNIST-1D drawn by the package's generator with seed s (5,400 signals of 40
samples): 700 labelled rows, 4,000 test rows, a 700-row pool, in one arrays .npz.

Rows, each with and without the small-pool rule:
- `rolemodels run data.name=arrays` (the paper's pipeline: its noise, paper 20%, on the clean
  labels; 10 cnn1d teachers; students for K = 10 only): students.small_pool=teacher_recipe (the
  default: the students train as a teacher does, on the pool and the training inputs, all
  labelled by the teachers) against students.small_pool=pool (the pool alone, 64 passes of it);
- `RoleModelClassifier(teacher="cnn1d")` on the same noisy labels: the training inputs join the
  small pool (the default) against the pool alone (the rule patched off, as before it existed).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rolemodels import RoleModelClassifier  # noqa: E402
from rolemodels.config import load_config  # noqa: E402
from rolemodels.data.mnist1d import generate  # noqa: E402
from rolemodels.method.noise import apply_noise, transition_matrix  # noqa: E402
from rolemodels.paper.experiment import run_experiment  # noqa: E402
from rolemodels.paper.report import processor_name  # noqa: E402
from rolemodels.runtime.files import atomic_write_json  # noqa: E402

RESULTS = ROOT / "docs" / "data" / "small_pools.json"
N_TRAIN, N_TEST, N_POOL = 700, 4000, 700


def arrays_file(folder: Path, seed: int) -> Path:
    x, y = generate(N_TRAIN + N_TEST + N_POOL, seed, "package")
    cut1, cut2 = N_TRAIN, N_TRAIN + N_TEST
    path = folder / f"mnist1d-{seed}.npz"
    np.savez(path, x_train=x[:cut1], y_train=y[:cut1], x_test=x[cut1:cut2], y_test=y[cut1:cut2], x_pool=x[cut2:],
             y_pool=y[cut2:])
    return path


def run_rows(path: Path, seed: int, small_pool: str, threads: int, folder: Path) -> dict:
    cfg = load_config(None, ["data.name=arrays", f"data.path={path}", f"seed={seed}", "sweep.students=false",
                             f"students.small_pool={small_pool}", f"train.threads={threads}"])
    started = time.perf_counter()
    table = run_experiment(cfg, folder / f"run-{seed}-{small_pool}", quiet=True)["table"]
    return {"teacher": table["teacher"]["mean"], "vote": table["ensemble"]["mean"],
            "ensemble_student": table["ensemble_distill"]["mean"], "random_student": table["random_distill"]["mean"],
            "seconds": round(time.perf_counter() - started, 1)}


def estimator_rows(path: Path, seed: int, with_training_inputs: bool) -> dict:
    d = np.load(path)
    noisy = apply_noise(d["y_train"], transition_matrix("paper", 10, 0.2), seed)
    started = time.perf_counter()
    with mock.patch("rolemodels.practice.estimator.is_small_pool", lambda n: with_training_inputs):
        clf = RoleModelClassifier("cnn1d", random_state=seed).fit(d["x_train"], noisy, X_pool=d["x_pool"])
    teachers = [float(np.mean(t.predict(d["x_test"]) == d["y_test"])) for t in clf.teachers_]
    return {"teacher": float(np.mean(teachers)), "vote": float(np.mean(clf.ensemble_predict(d["x_test"]) == d["y_test"])),
            "student": float(np.mean(clf.predict(d["x_test"]) == d["y_test"])),
            "seconds": round(time.perf_counter() - started, 1)}


def markdown(results: dict) -> str:
    rows = results["rows"]
    cell = lambda v: f"{100 * np.mean(v):.1f} ± {100 * np.std(v, ddof=1):.1f}" if len(v) > 1 else f"{100 * v[0]:.1f}"
    lines = ["| path | small-pool rule | one teacher | vote | student(s) | seconds |", "|---|---|---|---|---|---|"]
    for path, rule, label in (("run", "teacher_recipe", "on (default)"), ("run", "pool", "off: the pool alone"),
                              ("estimator", True, "on (default)"), ("estimator", False, "off: the pool alone")):
        got = [r for r in rows if r["path"] == path and r["rule"] == rule]
        if not got:
            continue
        column = {key: [r[key] for r in got] for key in got[0]}
        students = (f"ensemble {cell(column['ensemble_student'])}, random {cell(column['random_student'])}"
                    if path == "run" else cell(column["student"]))
        name = "`rolemodels run`" if path == "run" else "`RoleModelClassifier('cnn1d')`"
        lines.append(f"| {name} | {label} | {cell(column['teacher'])} | {cell(column['vote'])} | {students} | "
                     f"{np.mean(column['seconds']):.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--markdown", action="store_true", help="print the table from --out, and exit")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.markdown:
        print(markdown(json.loads(out.read_text())))
        return
    torch.set_num_threads(args.threads)
    results = json.loads(out.read_text()) if out.exists() else {"rows": []}
    done = {(r["path"], r["rule"], r["seed"]) for r in results["rows"]}
    results.update(processor=processor_name() or "unknown processor", threads=args.threads, torch=torch.__version__,
                   command="python experiments/small_pools.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            path = arrays_file(Path(tmp), seed)
            for name, rule in (("run", "teacher_recipe"), ("run", "pool"), ("estimator", True), ("estimator", False)):
                if (name, rule, seed) in done:
                    continue
                numbers = (run_rows(path, seed, rule, args.threads, Path(tmp)) if name == "run"
                           else estimator_rows(path, seed, rule))
                row = {"path": name, "rule": rule, "seed": seed, **numbers}
                print(row, flush=True)
                results["rows"].append(row)
                atomic_write_json(out, results)
    print(markdown(results))


if __name__ == "__main__":
    main()
