"""How it compares: the noisy-label methods a practitioner would use instead, on the same data and
the very same noisy labels, side by side with ours.

    python experiments/compare.py --threads 2                  # the full benchmark (hours on 2 cores: see docs/compare.md)
    python experiments/compare.py --data digits --methods elr  # one method's rows on one dataset's settings
    python experiments/compare.py --quick                      # tiny sizes, under a minute: runs/compare-quick/
    python experiments/compare.py --markdown                   # docs/compare.md's tables from docs/data/compare.json
    python experiments/compare.py --figure                     # docs/figures/compare.png from it

A setting is (data, noise, seed). For each, the noisy training labels are drawn once, saved, and
every method trains on them (each row records their SHA-256). The methods:

    baselines     early stopping on a noisy 10% split; generalised cross-entropy (`teachers.loss=gce`);
                  cleanlab's CleanLearning (5-fold out-of-fold probabilities, prune, retrain); cleanlab,
                  then a student on the pool pseudo-labelled by the cleaned model; on the table only:
                  scikit-learn's SelfTrainingClassifier and LabelSpreading
    ours          `rolemodels run` itself (the default configuration, whatever it is, reading the saved
                  labels through noise.labels_file): one teacher, the test-time ensemble, ensemble and
                  random-teacher distillation; on MNIST-1D also the mnist1d-best preset
    the field     co-teaching, ELR and DivideMix (experiments/baselines/, rows in compare_sota.py): the
                  practitioner's configuration and the paper's setting-matched one (oracle) of each,
                  and DivideMix given the pool
    combination   teachers trained on the cleanlab-pruned set, then ensemble-distilled
    references    the teacher recipe on the clean labels, the student recipe on the pool's true labels

Every network is the configuration's: the teachers' architecture and recipe for the one-model
methods, the students' for the pool students. Results go to one JSON file, row by row; a rerun
computes only the rows it lacks (a group of rows that one computation gives is kept whole).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compare_methods import Case  # noqa: E402
from compare_registry import GROUPS, METHODS  # noqa: E402
from compare_report import draw_figure, full_table, rank_table, short_table  # noqa: E402

from rolemodels.config import load_config  # noqa: E402
from rolemodels.data import Dataset, load_dataset  # noqa: E402
from rolemodels.data.labelfiles import write_labels  # noqa: E402
from rolemodels.method.noise import noise_partner  # noqa: E402
from rolemodels.paper.experiment import noisy_training_labels  # noqa: E402
from rolemodels.paper.report import processor_name  # noqa: E402
from rolemodels.runtime.device import resolve_device  # noqa: E402
from rolemodels.runtime.files import atomic_write_json  # noqa: E402
from rolemodels.seeds import Seeds  # noqa: E402

RESULTS = ROOT / "docs" / "data" / "compare.json"
FIGURE = ROOT / "docs" / "figures" / "compare.png"
WORK = Path("runs") / "compare"  # like `rolemodels run`, under the current folder
QUICK = Path("runs") / "compare-quick"
FASHION_ROOT = "/usr/share/datasets/fashion-mnist"

# ---------------------------------------------------------------------------------------------
# Settings: data, noise, seeds

# name -> (noise.preset, noise.rate); the paper's pair noise, symmetric noise, and c -> c + 1.
NOISES = {"paper20": ("paper", 0.2), "symmetric40": ("symmetric", 0.4), "pairflip30": ("pairflip", 0.3)}
PARTNERED = ("paper", "pairflip")  # noises whose wrong labels have one partner class (noise replication)

# The tabular set: scikit-learn's 8x8 digits (1,797 rows, 64 features, 10 classes, so the paper's
# (c + 5) mod 10 pairs exist), split once: a test set, the labelled training set, the rest the pool.
DIGITS_TEST, DIGITS_TRAIN = 400, 600


@dataclass(frozen=True)
class Data:
    """One dataset: the preset the pipeline starts from (None: the default) and its overrides."""

    preset: str | None
    overrides: tuple[str, ...]
    quick: tuple[str, ...]  # the quick mode's sizes, after the overrides
    network: str | None = None  # the one option the estimator's row names: its teachers' network (None: the default)


QUICK_RECIPE = ("students.pool_budget=false", "teachers.count=3", "teachers.epochs=3", "teachers.width=8", "students.batch_size=128",
                "sweep.teachers=[1, 3]", "train.eval_batch_size=1024")
DATA = {
    # The default run's data and recipe, unchanged.
    "mnist1d": Data(None, (), ("data.n_train=1000", "data.n_test=500", "data.n_pool=4000", "data.generator=fast",
                               *QUICK_RECIPE, "teachers.epochs=10", "teachers.width=16",
                               "students.min_examples=20000"), "cnn1d"),
    # The same data with the recipe the default had before augmentation (30 epochs, nothing shifted):
    # the setting in which the benchmark's first numbers were measured, and what shifting does to
    # every method.
    "mnist1d-noaug": Data(str(ROOT / "configs" / "mnist1d-noaug.toml"), (),
                          ("data.n_train=1000", "data.n_test=500", "data.n_pool=4000", "data.generator=fast",
                           *QUICK_RECIPE, "teachers.epochs=10", "teachers.width=16", "students.min_examples=20000"),
                          "cnn1d"),
    # The preset's sizes: 10,000 noisy images, a 50,000-image pool, the 10,000 test images.
    "fashion": Data(str(ROOT / "configs" / "fashion-mnist.toml"), (f"data.root={FASHION_ROOT}",),
                    ("data.n_train=300", "data.n_test=300", "data.n_pool=1024", *QUICK_RECIPE), "cnn2d_wide"),
    # Digits' proportions on photographs: 1,000 noisy images and a pool of 2,000. Teachers see
    # 30,000 examples (30 passes, as many as the preset's 18 epochs of 10,000 give in steps, about),
    # students 64,000 (32 passes of the pool, where the preset's 2 passes of 50,000 give 100,000).
    "fashion-small": Data(str(ROOT / "configs" / "fashion-mnist.toml"),
                          (f"data.root={FASHION_ROOT}", "data.n_train=1000", "data.n_pool=2000",
                           "teachers.min_examples=30000", "students.min_examples=64000"),
                          ("data.n_train=300", "data.n_test=300", "data.n_pool=600", "teachers.min_examples=0",
                           "students.min_examples=3000", *QUICK_RECIPE), "cnn2d_wide"),
    # A table: the MLP, and enough steps for 600 rows and a pool of 797: teachers see 30,000 examples
    # (50 passes, which fit 99.8% of the paper noise's labels and all of 40% symmetric noise's),
    # students 200,000 (the sklearn estimator's student budget).
    # Its pool of 797 rows is small (recipe.is_small_pool): the pool alone, as it was measured.
    "digits": Data(None, ("data.name=arrays", "teachers.model=mlp", "teachers.min_examples=30000",
                          "students.min_examples=200000", "students.small_pool=pool"),
                   ("teachers.min_examples=0", "students.min_examples=3000", *QUICK_RECIPE)),
}

# What the full run covers (see docs/compare.md for its time): MNIST-1D and the table on every
# noise, Fashion-MNIST (the costliest, about 10 minutes a setting on an AMX Xeon) on the paper's
# noise, and the small Fashion-MNIST setting (--fashion small, the default); --fashion paper leaves
# the small one out, --fashion all gives both every noise.
SEEDS = (0, 1, 2)
FASHION = ("fashion", "fashion-small")
QUICK_SETTINGS = [("mnist1d", "paper20", 0), ("digits", "pairflip30", 0)]


def full_settings(fashion: str) -> list[tuple[str, str, int]]:
    settings = [("mnist1d-noaug", "paper20", 0)]  # the first measurement's setting, reproduced
    settings += [(d, n, s) for d in ("mnist1d", "digits") for n in NOISES for s in SEEDS]
    sizes = {"paper": ("fashion",), "small": FASHION, "all": FASHION, "none": ()}[fashion]
    noises = list(NOISES) if fashion == "all" else ["paper20"]
    fashion_settings = [(d, n, s) for d in sizes for n in noises for s in SEEDS]
    return settings + fashion_settings


def digits_file(folder: Path) -> Path:
    """scikit-learn's digits as the pipeline's arrays file (written once): float32 [N, 64] features."""
    path = folder / "digits.npz"
    if not path.exists():
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        order = np.random.default_rng(0).permutation(len(y))
        x, y = x[order].astype(np.float32), y[order].astype(np.int64)
        test, train = slice(0, DIGITS_TEST), slice(DIGITS_TEST, DIGITS_TEST + DIGITS_TRAIN)
        pool = slice(DIGITS_TEST + DIGITS_TRAIN, None)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / "digits.tmp.npz"
        np.savez(tmp, x_train=x[train], y_train=y[train], x_test=x[test], y_test=y[test], x_pool=x[pool],
                 y_pool=y[pool])
        tmp.replace(path)
    return path


def make_case(data_name: str, noise: str, seed: int, *, quick: bool, threads: int, work: Path,
              loaded: dict[str, Dataset]) -> Case:
    """Draw the setting's noisy labels with the pipeline's own noise code, save them, and point the
    pipeline's configuration at the file."""
    spec = DATA[data_name]
    preset, rate = NOISES[noise]
    folder = work / data_name / noise / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    overrides = [*spec.overrides, *(spec.quick if quick else ()), f"seed={seed}", "seeds=1",
                 f"noise.preset={preset}", f"noise.rate={rate}", f"train.threads={threads}",
                 # Figure 2's students for K < K_max are not compared here: not trained.
                 "sweep.students=false"]
    if data_name == "digits":
        overrides.insert(0, f"data.path={digits_file(work)}")
    cfg = load_config(spec.preset, overrides)
    if data_name not in loaded:
        loaded[data_name] = load_dataset(cfg.data)
    data = loaded[data_name]
    noisy, T = noisy_training_labels(cfg, data, Seeds(seed).noise)
    labels = folder / "noisy_labels.npy"
    if not labels.exists():
        write_labels(labels, noisy)
    overrides.append(f"noise.labels_file={labels.resolve()}")  # the run folders' configuration: from any folder
    cfg = load_config(spec.preset, overrides)
    return Case(data_name, noise, seed, cfg, spec.preset, overrides, data, noisy,
                noise_partner(T) if preset in PARTNERED else None, folder, resolve_device(cfg.train.device),
                spec.network, quick)


# ---------------------------------------------------------------------------------------------
# The run: rows kept in one JSON, each group computed once


def row_key(row: dict) -> tuple[str, str, int, str]:
    return row["data"], row["noise"], row["seed"], row["method"]


def load_rows(out: Path) -> dict[tuple, dict]:
    return {row_key(r): r for r in json.loads(out.read_text())["rows"]} if out.exists() else {}


def machine() -> str:
    return f"{processor_name() or 'unknown processor'}, {len(os.sched_getaffinity(0))} cores"


def save(out: Path, rows: dict[tuple, dict], command: str, threads: int, quick: bool) -> None:
    order = {name: i for i, name in enumerate(METHODS)}
    ordered = sorted(rows.values(), key=lambda r: (r["data"], list(NOISES).index(r["noise"]), r["seed"],
                                                   order[r["method"]]))
    atomic_write_json(out, {"command": command, "machine": machine(), "threads": threads, "quick": quick,
                            "methods": {name: m.__dict__ for name, m in METHODS.items()}, "rows": ordered})


def run(settings: list[tuple[str, str, int]], *, out: Path, work: Path, quick: bool, threads: int,
        command: str, methods: list[str] | None = None) -> dict[tuple, dict]:
    """Compute every row the settings call for that `out` lacks (only the groups giving one of
    `methods`, where given), saving after each group."""
    rows = load_rows(out)
    loaded: dict[str, Dataset] = {}
    groups = [g for g in GROUPS if methods is None or set(g[1]) & set(methods)]
    for data_name, noise, seed in settings:
        case = None
        for compute, names, applies in groups:
            if not applies(data_name, noise) or all((data_name, noise, seed, n) in rows for n in names):
                continue
            case = case or make_case(data_name, noise, seed, quick=quick, threads=threads, work=work, loaded=loaded)
            print(f"{data_name} / {noise} / seed {seed}: {', '.join(names)}", flush=True)
            computed = compute(case)
            finished = datetime.now(timezone.utc).isoformat(timespec="seconds")
            for name, numbers in computed.items():  # each row names its machine: a file may hold several
                rows[(data_name, noise, seed, name)] = {"data": data_name, "noise": noise, "seed": seed,
                                                        "method": name, **numbers, "finished": finished,
                                                        "machine": machine(), "threads": threads}
            out.parent.mkdir(parents=True, exist_ok=True)
            save(out, rows, command, threads, quick)
    return rows


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, two settings: a check, not a result")
    parser.add_argument("--fashion", choices=("paper", "small", "all", "none"), default="small",
                        help="Fashion-MNIST settings: the preset's sizes with the paper's noise, those and the "
                             "small setting (fashion-small; the default), both with every noise, or none; "
                             "3 seeds each")
    parser.add_argument("--data", nargs="+", choices=list(DATA), help="only these datasets' settings")
    parser.add_argument("--noises", nargs="+", choices=list(NOISES), help="only these noises' settings")
    parser.add_argument("--seeds", nargs="+", type=int, choices=SEEDS, help="only these seeds' settings")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), metavar="METHOD",
                        help="only the rows of these methods (and the rows computed with them), e.g. "
                             "dividemix elr; one of: " + ", ".join(METHODS))
    parser.add_argument("--out", help=f"results JSON (default {RESULTS.relative_to(ROOT)}; with --quick "
                                      f"{QUICK / 'compare.json'})")
    parser.add_argument("--work", help=f"folder for noisy labels and run folders (default {WORK}; with --quick {QUICK})")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--markdown", action="store_true", help="print the full table and the README's, and exit")
    parser.add_argument("--figure", metavar="PNG", nargs="?", const=str(FIGURE),
                        help=f"draw the figure from the results JSON (default {FIGURE.relative_to(ROOT)}), and exit")
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else QUICK / "compare.json" if args.quick else RESULTS
    if args.markdown or args.figure:
        if not out.exists():
            parser.error(f"{out} does not exist: run the benchmark first (or give its file with --out)")
        results = json.loads(out.read_text())
        if args.figure:
            draw_figure(results, Path(args.figure))
        if args.markdown:
            print(full_table(results), "\n### The field's methods: ranks\n", rank_table(results),
                  "\n### README\n", short_table(results), sep="\n")
        return
    work = Path(args.work) if args.work else QUICK if args.quick else WORK
    torch.set_num_threads(args.threads)
    settings = QUICK_SETTINGS if args.quick else full_settings(args.fashion)
    settings = [s for s in settings if (args.data is None or s[0] in args.data)
                and (args.noises is None or s[1] in args.noises) and (args.seeds is None or s[2] in args.seeds)]
    if any(data in FASHION for data, _, _ in settings) and not Path(FASHION_ROOT).is_dir():
        # found before an hour of other settings, not after
        parser.error(f"Fashion-MNIST is not under {FASHION_ROOT} (Debian's package dataset-fashion-mnist puts it "
                     "there): install it, or leave it out with --fashion none")
    command = "python experiments/compare.py " + " ".join(argv if argv is not None else sys.argv[1:])
    started = time.perf_counter()
    run(settings, out=out, work=work, quick=args.quick, threads=args.threads, command=command.strip(),
        methods=args.methods)
    print(f"{out}: {len(load_rows(out))} rows ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
