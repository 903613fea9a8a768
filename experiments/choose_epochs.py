"""Choosing without clean labels: does RoleModelClassifier(teacher_epochs="auto") pick the teacher
epochs that clean labels would? On compare.py's settings (the same split and noisy labels).

    python experiments/choose_epochs.py                       # digits, every noise, seeds 0-2 (about 5 minutes on 2 cores)
    python experiments/choose_epochs.py --data fashion-small --threads 2

For each setting: the estimator with teacher_epochs="auto" (its choice and the held-out noisy
agreement of each candidate), and the estimator with each candidate fixed (its student's clean test
accuracy). The clean choice is the candidate whose student is most accurate; auto's student is
the fixed run of the epochs it chose (the same seeds). Results: docs/data/choose_epochs.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

import compare  # noqa: E402
from compare_methods import as_numpy_inputs, estimator_calls  # noqa: E402

from rolemodels.practice.estimator import EPOCH_CHOICES, RoleModelClassifier  # noqa: E402
from rolemodels.runtime.files import atomic_write_json  # noqa: E402

RESULTS = ROOT / "docs" / "data" / "choose_epochs.json"


def measure(case) -> dict:
    """One setting: the auto choice, and each candidate's student on the clean test set."""
    x, x_pool, x_test = (as_numpy_inputs(v) for v in (case.data.x_train, case.data.x_pool, case.data.x_test))
    y_test = case.data.y_test.numpy()
    options, _, call = estimator_calls(case)
    fit = lambda epochs: RoleModelClassifier(**options, teacher_epochs=epochs, random_state=case.seed).fit(  # noqa: E731
        x, case.noisy, X_pool=x_pool)
    started = time.perf_counter()
    auto = fit("auto")
    auto_seconds = time.perf_counter() - started
    accuracy = {}
    for epochs in EPOCH_CHOICES:
        accuracy[epochs] = float((fit(epochs).predict(x_test) == y_test).mean())
    chosen, clean_best = auto.diagnostics_["teacher_epochs"], max(accuracy, key=accuracy.get)
    return {"data": case.data_name, "noise": case.noise, "seed": case.seed, "call": call,
            "agreement": {str(e): a for e, a in auto.diagnostics_["teacher_epoch_agreement"].items()},
            "accuracy": {str(e): a for e, a in accuracy.items()}, "auto": chosen, "clean_best": clean_best,
            "auto_accuracy": float((auto.predict(x_test) == y_test).mean()), "auto_seconds": round(auto_seconds, 1)}


def summary(rows: list[dict]) -> dict:
    regret = [r["accuracy"][str(r["clean_best"])] - r["accuracy"][str(r["auto"])] for r in rows]
    default = [r["accuracy"]["30"] for r in rows] if all("30" in r["accuracy"] for r in rows) else None
    return {"settings": len(rows), "matches": sum(r["auto"] == r["clean_best"] for r in rows),
            "mean_regret": float(np.mean(regret)), "max_regret": float(np.max(regret)),
            "mean_auto": float(np.mean([r["accuracy"][str(r["auto"])] for r in rows])),
            "mean_default_30": None if default is None else float(np.mean(default)),
            "mean_clean_best": float(np.mean([r["accuracy"][str(r["clean_best"])] for r in rows]))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", default=["digits"], choices=list(compare.DATA))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(compare.SEEDS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    kept = json.loads(out.read_text())["rows"] if out.exists() else []
    key = lambda r: (r["data"], r["noise"], r["seed"])  # noqa: E731
    rows = {key(r): r for r in kept}
    loaded = {}
    for data in args.data:
        for noise in compare.NOISES:
            for seed in args.seeds:
                if (data, noise, seed) in rows:
                    continue
                case = compare.make_case(data, noise, seed, quick=False, threads=args.threads,
                                         work=compare.WORK, loaded=loaded)
                rows[(data, noise, seed)] = measure(case)
                print(json.dumps(rows[(data, noise, seed)]), flush=True)
                ordered = sorted(rows.values(), key=key)
                atomic_write_json(out, {"command": "python experiments/choose_epochs.py " + " ".join(
                    argv if argv is not None else sys.argv[1:]), "machine": compare.machine(),
                    "epoch_choices": list(EPOCH_CHOICES), "rows": ordered,
                    "summary": {d: summary([r for r in ordered if r["data"] == d])
                                for d in sorted({r["data"] for r in ordered})}})
    print(json.dumps(json.loads(out.read_text())["summary"], indent=1))


if __name__ == "__main__":
    main()
