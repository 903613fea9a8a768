"""Study: the paper's recipe trains with augmentation; do MNIST-1D teachers still interpolate, and
what does it do to the students? (docs/findings.md, "Teachers trained with augmentation")

    python experiments/study_augmentation.py [--seeds 2] [--only NAME ...] [--out runs/augmentation]
    python experiments/study_augmentation.py --table-only     # the table from finished runs

Each recipe is the default MNIST-1D run with a few keys overridden (`sweep.students=false`: Table
1's students only). The clean-label reference `clean_train` is trained with the teachers' recipe,
augmentation included, so the gap is measured against the same recipe. Resumable: a finished
recipe is read back from its folder. Prints one Markdown table (mean over seeds).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rolemodels.config import load_config  # noqa: E402
from rolemodels.experiment import run_experiment  # noqa: E402

COMMON = ["sweep.students=false"]

# name -> overrides of the default run
RECIPES: dict[str, list[str]] = {
    "none-30": [],
    "shift1-60": ["teachers.augment=shift", "teachers.augment_size=1", "teachers.epochs=60"],
    "shift2-60": ["teachers.augment=shift", "teachers.augment_size=2", "teachers.epochs=60"],
    "shift2-100": ["teachers.augment=shift", "teachers.augment_size=2", "teachers.epochs=100"],
}


def row(name: str, results: dict) -> str:
    t, rep = results["table"], results["sampler"]["noise_replication"]
    pct = lambda key: f"{100 * t[key]['mean']:.1f} ± {100 * t[key]['std']:.1f}"
    r = lambda key: f"{100 * rep[key]['mean']:.1f}"
    return (f"| {name} | {100 * t['teacher_train_fit']['mean']:.1f} | {pct('teacher')} | {r('teacher')} | "
            f"{pct('ensemble')} | {r('ensemble')} | {pct('ensemble_distill')} | {r('ensemble_distill')} | "
            f"{pct('random_distill')} | {r('random_distill')} | {pct('clean_train')} |")


HEADER = ("| recipe | fit on noisy labels | teacher | repl. | ensemble | repl. | ens. distill | repl. | "
          "random distill | repl. | clean_train (same recipe) |\n|---|---|---|---|---|---|---|---|---|---|---|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--only", nargs="*", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--out", default="runs/augmentation")
    parser.add_argument("--table-only", action="store_true", help="print the table from finished runs")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="for every recipe")
    args = parser.parse_args()
    rows = []
    for name in args.only:
        folder = Path(args.out) / name
        if not args.table_only:
            cfg = load_config(None, [*COMMON, f"seeds={args.seeds}", f"name=augmentation-{name}", *RECIPES[name],
                                     *args.overrides])
            run_experiment(cfg, folder, quiet=True)
        if (folder / "results.json").exists():
            rows.append(row(name, json.loads((folder / "results.json").read_text())))
    print(HEADER)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
