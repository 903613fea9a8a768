"""The two practitioner paths on the same file: `rolemodels distill` and `RoleModelClassifier()`
take their recipe from one place (rolemodels/practice/recipe.py), so their students should agree
within seed noise.

    python experiments/distill_parity.py [--seeds 0 1 2] [--noise paper|symmetric|pairflip] [--threads 1]
    python experiments/distill_parity.py --data fashion-rows      # Fashion-MNIST rows, look-alike noise

Data: scikit-learn's digits split as experiments/compare.py splits it (600 labelled rows, a
797-row pool, 400 test rows), the labelled rows' labels made noisy by rolemodels' noise code with
each seed; or (--data fashion-rows) experiments/compare_practice.py's fashion-rows/lookalike28
setting of each seed (3,000 labelled rows of 784 pixels, a 20,000-row pool, 10,000 test rows).
For every seed both paths fit the same .npz; the table gives each one's test accuracy and seconds.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rolemodels import RoleModelClassifier  # noqa: E402
from rolemodels.method.noise import apply_noise, transition_matrix  # noqa: E402
from rolemodels.paper.report import processor_name  # noqa: E402

RATES = {"paper": 0.2, "symmetric": 0.4, "pairflip": 0.3}  # compare.py's noises


def digits_split() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))  # compare.py's digits_file
    x, y = x[order].astype(np.float32), y[order].astype(np.int64)
    return {"x_test": x[:400], "y_test": y[:400], "x_train": x[400:1000], "y_clean": y[400:1000], "x_pool": x[1000:]}


def digits_file(seed: int, noise: str) -> dict[str, np.ndarray]:
    data = digits_split()
    noisy = apply_noise(data["y_clean"], transition_matrix(noise, 10, RATES[noise]), seed)
    return {"x_train": data["x_train"], "y_train": noisy, "x_pool": data["x_pool"], "x_test": data["x_test"],
            "y_test": data["y_test"]}


def fashion_rows_file(seed: int) -> dict[str, np.ndarray]:
    sys.path.insert(0, str(ROOT / "experiments"))
    from compare_practice import make_setting

    s = make_setting("fashion-rows", "lookalike28", seed, quick=False)
    return {"x_train": s.split.x_train, "y_train": s.noisy, "x_pool": s.split.x_pool, "x_test": s.split.x_test,
            "y_test": s.split.y_test}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--noise", choices=list(RATES), default="paper")
    parser.add_argument("--data", choices=("digits", "fashion-rows"), default="digits")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for seed in args.seeds:
            data = digits_file(seed, args.noise) if args.data == "digits" else fashion_rows_file(seed)
            path = Path(work) / f"{args.data}{seed}.npz"
            np.savez(path, **data)
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "rolemodels", "distill", str(path), "--out", f"{work}/run{seed}",
                            "--quiet", f"seed={seed}", f"train.threads={args.threads}"], check=True, cwd=ROOT)
            distill_seconds = time.perf_counter() - started
            distilled = json.loads((Path(work) / f"run{seed}" / "diagnostics.json").read_text())
            started = time.perf_counter()
            clf = RoleModelClassifier(random_state=seed).fit(data["x_train"], data["y_train"], X_pool=data["x_pool"])
            estimator_seconds = time.perf_counter() - started
            rows.append((seed, distilled["test_accuracy"]["student"], distill_seconds,
                         clf.score(data["x_test"], data["y_test"]), estimator_seconds))
            print(f"seed {seed}: distill {rows[-1][1]:.4f} ({distill_seconds:.0f} s), estimator {rows[-1][3]:.4f} "
                  f"({estimator_seconds:.0f} s)", flush=True)
    d, e = np.array([r[1] for r in rows]), np.array([r[3] for r in rows])
    print(f"\n{processor_name() or 'unknown processor'}, {args.threads} thread(s), torch {torch.__version__}, "
          f"{'digits, ' + args.noise + ' noise' if args.data == 'digits' else 'fashion-rows, lookalike28'}")
    print("| path | test accuracy % (mean ± std) | per seed | seconds |\n|---|---|---|---|")
    print(f"| rolemodels distill | {100 * d.mean():.1f} ± {100 * d.std():.1f} | "
          f"{' / '.join(f'{100 * v:.1f}' for v in d)} | {' / '.join(f'{r[2]:.0f}' for r in rows)} |")
    print(f"| RoleModelClassifier() | {100 * e.mean():.1f} ± {100 * e.std():.1f} | "
          f"{' / '.join(f'{100 * v:.1f}' for v in e)} | {' / '.join(f'{r[4]:.0f}' for r in rows)} |")


if __name__ == "__main__":
    main()
