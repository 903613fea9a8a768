"""Study: the paper's recipe trains with augmentation; do MNIST-1D teachers still interpolate, and
what does it do to the students? (docs/findings.md, "Teachers trained with augmentation")

    python experiments/study_augmentation.py [--seeds 2] [--only NAME ...] [--out runs/augmentation]
    python experiments/study_augmentation.py --table-only     # the table from docs/data/study-augmentation.json

Each recipe is the run of `configs/mnist1d-noaug.toml` (the default before augmentation: teachers
30 epochs at batch 128, nothing augmented) with a few keys overridden, and `sweep.students=false`
(Table 1's students only). The clean-label reference `clean_train` is trained with the teachers'
recipe, augmentation included, so the gap is measured against the same recipe. Recipes that differ
only in their students share the teachers (hard links, as in study_decorrelation.py). Resumable: a
finished recipe is read back from its folder. Each finished recipe's results.json is merged into
docs/data/study-augmentation.json (which keeps recipes measured on other machines: each entry
names its processor); the table is printed from that file (mean over seeds).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from study_decorrelation import share_teachers, teacher_key  # noqa: E402

from rolemodels.config import load_config  # noqa: E402
from rolemodels.paper.experiment import run_experiment  # noqa: E402
from rolemodels.runtime.files import atomic_write_json  # noqa: E402

RESULTS = ROOT / "docs" / "data" / "study-augmentation.json"
BASE = ROOT / "configs" / "mnist1d-noaug.toml"
COMMON = ["sweep.students=false"]
SHIFT2 = ["teachers.augment=shift", "teachers.augment_size=2"]
FAST = ["teachers.batch_size=256", "teachers.lr=0.006"]  # twice the batch, twice the rate
STUDENTS = ["students.augment=shift", "students.augment_size=2"]

# name -> overrides of the run without augmentation
RECIPES: dict[str, list[str]] = {
    "none-30": [],
    "shift1-60": ["teachers.augment=shift", "teachers.augment_size=1", "teachers.epochs=60"],
    "shift2-60": [*SHIFT2, "teachers.epochs=60"],
    "shift2-100": [*SHIFT2, "teachers.epochs=100"],
    # Batch 256 at twice the rate: interpolating in fewer steps (the default's candidate).
    "shift2-80-b256": [*SHIFT2, "teachers.epochs=80", *FAST],
    # ... and the students shifted too: the paper trains every network with augmentation.
    "shift2-80-b256+students": [*SHIFT2, "teachers.epochs=80", *FAST, *STUDENTS],
    "none-30+students": STUDENTS,
    # Teachers stopped long before interpolating (learners, not samplers): for mnist1d-best.
    "shift2-30+students": [*SHIFT2, *STUDENTS],
}


def row(name: str, results: dict) -> str:
    t, rep = results["table"], results["sampler"]["noise_replication"]
    pct = lambda key: f"{100 * t[key]['mean']:.1f} ± {100 * t[key]['std']:.1f}"  # noqa: E731
    r = lambda key: f"{100 * rep[key]['mean']:.1f}"  # noqa: E731
    fit = t["teacher_train_fit"]
    return (f"| {name} | {100 * fit['mean']:.1f} (min {100 * min(fit['values']):.1f}) | {pct('teacher')} | "
            f"{r('teacher')} | {pct('ensemble')} | {r('ensemble')} | {pct('ensemble_distill')} | "
            f"{r('ensemble_distill')} | {pct('random_distill')} | {r('random_distill')} | {pct('clean_train')} | "
            f"{results['environment'].get('processor', 'Intel(R) Xeon(R) Processor (AMX)')} |")


HEADER = ("| recipe | fit on noisy labels | teacher | repl. | ensemble | repl. | ens. distill | repl. | "
          "random distill | repl. | clean_train (same recipe) | processor |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--only", nargs="*", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--out", default="runs/augmentation")
    parser.add_argument("--table-only", action="store_true", help="print the table from the results file")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="for every recipe")
    args = parser.parse_args()
    kept = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    finished: dict[str, Path] = {}  # teacher_key -> a folder whose teachers are trained
    for name in args.only if not args.table_only else []:
        folder = Path(args.out) / name
        cfg = load_config(BASE, [*COMMON, f"seeds={args.seeds}", f"name=augmentation-{name}", *RECIPES[name],
                                 *args.overrides])
        if teacher_key(cfg) in finished:
            share_teachers(finished[teacher_key(cfg)], folder)
        results = run_experiment(cfg, folder, quiet=True)
        finished.setdefault(teacher_key(cfg), folder)
        kept[name] = {key: results[key] for key in ("table", "sampler", "seeds", "config", "provenance",
                                                    "environment", "seconds")}
        atomic_write_json(RESULTS, kept)
    print(HEADER)
    print("\n".join(row(name, kept[name]) for name in args.only if name in kept))


if __name__ == "__main__":
    main()
