"""A second scoreboard: the practitioner's default, `RoleModelClassifier()`, on data and noise that
experiments/compare.py lacks (raw tabular columns, no pool, class imbalance, random transition
matrices, instance-dependent and look-alike noise), against what a practitioner of that data uses.

    python experiments/compare_practice.py --threads 2                 # every setting, seeds 0, 1, 2 (Time: below)
    python experiments/compare_practice.py --quick                     # tiny sizes, seed 0, under a minute
    python experiments/compare_practice.py --only cancer/flip25 --seeds 0
    python experiments/compare_practice.py --markdown                  # the table, from docs/data/compare_practice.json

Data (split per seed s by np.random.default_rng(s).permutation; generated data are drawn once with
random_state=0, and their columns rescaled by 10**uniform(-2, 3) from default_rng(0): raw scales
from 0.01 to 1,000, left for each method to cope with):

| data             | source                                             | classes | labelled | pool   | test   |
|------------------|----------------------------------------------------|---------|----------|--------|--------|
| cancer           | load_breast_cancer, raw features (30)              | 2       | 400      | none   | 169    |
| synthetic-binary | make_classification, 20 features, raw scales       | 2       | 600      | none   | 4,000  |
| imbalanced       | the same with weights [0.9, 0.1]                   | 2       | 600      | none   | 4,000  |
| multiclass       | make_classification, 5 classes, 20 features, raw   | 5       | 1,000    | 4,000  | 4,000  |
| digits           | load_digits (8x8, 64 features)                     | 10      | 1,000    | none   | 797    |
| fashion-rows     | Fashion-MNIST as rows of 784 uint8 values          | 10      | 3,000    | 20,000 | 10,000 |

"none": X_pool=None, so the estimator cross-fits (its teachers label the folds they did not see).
Fashion-MNIST's test set is the official one; its labelled rows and pool come from the 60,000
training images (rolemodels.data.fashion_mnist, seeded by s).

Noise, drawn for seed s from the clean training labels by rolemodels' noise code (seed s):
flip25 (binary: symmetric_matrix(2, 0.25), exactly 25% of each class flipped), symmetric30
(multiclass: symmetric at 0.3, exact), random40 (random_transition_matrix(C, 0.4, s), sampled),
annotator30 (annotator_noise at 0.3; the annotator: 5-fold out-of-fold predict_proba of a
standardised LogisticRegression fitted on the clean labels), lookalike28 (Fashion-MNIST: T-shirt
0 <-> shirt 6, pullover 2 <-> coat 4, sandal 5 <-> sneaker 7, each of these six classes keeps its
label with 0.72 and gets its partner with 0.28, applied exactly: 28% of the examples of each of
these classes flipped, none of the other four), part30 (Xia et al.'s part_dependent_noise at 0.3).
Each row records the realised rate and the rate expected for those clean labels.

Time: cancer/flip25 took 23 s a seed on 2 cores of an AMD EPYC (ours 15 s of it: no pool, so 5
folds of 10 teachers); the full run is not measured here, and Fashion-MNIST's settings cost most.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compare_practice_report import METHOD_LABELS, markdown  # noqa: E402
from sota_methods import SOTA_METHODS  # noqa: E402  (co-teaching, ELR, DivideMix: experiments/baselines)

from rolemodels.method.instance_noise import (  # noqa: E402
    annotator_noise,
    part_dependent_expected_rate,
    part_dependent_noise,
)
from rolemodels.method.noise import apply_noise, random_transition_matrix, transition_matrix  # noqa: E402
from rolemodels.paper.report import processor_name  # noqa: E402  (lscpu's model name)
from rolemodels.runtime.files import arrays_sha256, atomic_write_json  # noqa: E402

RESULTS = ROOT / "docs" / "data" / "compare_practice.json"
QUICK = Path("runs") / "compare-practice-quick"  # like compare.py's, under the current folder
FASHION_ROOT = "/usr/share/datasets/fashion-mnist"
SEEDS = (0, 1, 2)

# ---------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class Data:
    """One dataset's sizes: labelled rows, pool rows (0: none, the estimator cross-fits), test rows
    (None: the rest); `quick` the same three for --quick."""

    n_train: int
    n_pool: int
    n_test: int | None
    quick: tuple[int, int, int | None]


DATA = {
    "cancer": Data(400, 0, None, (200, 0, None)),
    "synthetic-binary": Data(600, 0, 4000, (200, 0, 1000)),
    "imbalanced": Data(600, 0, 4000, (200, 0, 1000)),
    "multiclass": Data(1000, 4000, 4000, (300, 1000, 1000)),
    "digits": Data(1000, 0, None, (300, 0, 500)),
    "fashion-rows": Data(3000, 20_000, 10_000, (300, 1000, 1000)),
}
GENERATED = {  # make_classification's options (n_samples: the sizes' sum); flip_y=0: the labels are clean
    "synthetic-binary": dict(n_features=20, n_informative=8, n_redundant=4, n_classes=2),
    "imbalanced": dict(n_features=20, n_informative=8, n_redundant=4, n_classes=2, weights=[0.9, 0.1]),
    "multiclass": dict(n_features=20, n_informative=10, n_redundant=4, n_classes=5, class_sep=1.5),
}  # on clean labels, seed 0's split: logreg 89 / 97 / 76%, gradient boosting 94 / 97 / 86% (class_sep 1: 60 / 74%)


@dataclass
class Split:
    """One seed's split: inputs as numpy rows (float64, or uint8 for Fashion-MNIST), labels int64."""

    x_train: np.ndarray
    y_train: np.ndarray  # the clean labels (the noise is drawn from them; only the references train on them)
    x_pool: np.ndarray | None  # None: no pool
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int


def raw_scales(x: np.ndarray) -> np.ndarray:
    """Columns multiplied by 10**uniform(-2, 3), from a fixed generator: scales from 0.01 to 1,000."""
    return x * 10.0 ** np.random.default_rng(0).uniform(-2, 3, x.shape[1])


@lru_cache(maxsize=4)
def table(name: str, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """A tabular dataset's rows float64 [N, D] and labels int64 [N], before any split."""
    from sklearn import datasets

    if name == "cancer":
        x, y = datasets.load_breast_cancer(return_X_y=True)
    elif name == "digits":
        x, y = datasets.load_digits(return_X_y=True)
    else:
        x, y = datasets.make_classification(n_samples=n_samples, flip_y=0.0, random_state=0, **GENERATED[name])
        x = raw_scales(x)
    return x.astype(np.float64), y.astype(np.int64)


def load_split(name: str, seed: int, quick: bool) -> Split:
    n_train, n_pool, n_test = DATA[name].quick if quick else (DATA[name].n_train, DATA[name].n_pool, DATA[name].n_test)
    if name == "fashion-rows":
        from rolemodels.data.fashion_mnist import load_fashion_mnist

        data = load_fashion_mnist(FASHION_ROOT, n_train=n_train, n_pool=n_pool, seed=seed)
        rows = lambda x: x.numpy().reshape(len(x), -1)  # noqa: E731  uint8 [N, 784]
        return Split(rows(data.x_train), data.y_train.numpy(), rows(data.x_pool), rows(data.x_test)[:n_test],
                     data.y_test.numpy()[:n_test], 10)
    x, y = table(name, n_train + n_pool + (n_test or 0))
    order = np.random.default_rng(seed).permutation(len(y))
    train, pool = order[:n_train], order[n_train:n_train + n_pool]
    test = order[n_train + n_pool:] if n_test is None else order[n_train + n_pool:n_train + n_pool + n_test]
    return Split(x[train], y[train], x[pool] if n_pool else None, x[test], y[test], int(y.max()) + 1)


# ---------------------------------------------------------------------------------------------
# Noise: noisy training labels and the rate expected, from the clean ones


def lookalike_matrix(rate: float = 0.28) -> np.ndarray:
    """Fashion-MNIST's look-alike pairs, float64 [10, 10]: T-shirt 0 <-> shirt 6, pullover 2 <->
    coat 4, sandal 5 <-> sneaker 7 keep their label with 1 - rate and get the partner's with rate;
    trouser, dress, bag and ankle boot keep theirs."""
    T = np.eye(10)
    for a, b in ((0, 6), (2, 4), (5, 7)):
        T[[a, b], [a, b]] = 1.0 - rate
        T[a, b] = T[b, a] = rate
    return T


def annotator_probs(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """The annotator model's posterior float64 [n, C]: 5-fold out-of-fold predict_proba of a
    standardised LogisticRegression fitted on the clean labels."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    return cross_val_predict(model, x.astype(np.float64), y, cv=folds, method="predict_proba")


def matrix_noise(y: np.ndarray, T: np.ndarray, seed: int, mode: str) -> tuple[np.ndarray, float]:
    expected = float(np.bincount(y, minlength=len(T)) @ (1.0 - np.diag(T)) / len(y))
    return apply_noise(y, T, seed, mode=mode), expected


NOISES = {  # name -> (split, seed) -> (noisy labels int64 [n], the realised rate expected)
    "flip25": lambda s, seed: matrix_noise(s.y_train, transition_matrix("symmetric", 2, 0.25), seed, "exact"),
    "symmetric30": lambda s, seed: matrix_noise(s.y_train, transition_matrix("symmetric", s.num_classes, 0.3), seed,
                                                "exact"),
    "random40": lambda s, seed: matrix_noise(s.y_train, random_transition_matrix(s.num_classes, 0.4, seed), seed,
                                             "sampled"),
    "annotator30": lambda s, seed: (annotator_noise(s.y_train, annotator_probs(s.x_train, s.y_train, seed), 0.3,
                                                    seed), 0.3),
    "lookalike28": lambda s, seed: matrix_noise(s.y_train, lookalike_matrix(0.28), seed, "exact"),
    "part30": lambda s, seed: (part_dependent_noise(s.y_train, s.x_train, 0.3, seed, num_classes=s.num_classes),
                               part_dependent_expected_rate(0.3)),
}

# The matrix: binary raw tables without a pool, imbalance, a multiclass table with a pool, random
# matrices, instance-dependent (annotator, part-dependent) and look-alike noise. Each with SEEDS.
SETTINGS = [
    ("cancer", "flip25"), ("cancer", "annotator30"),
    ("synthetic-binary", "flip25"), ("synthetic-binary", "annotator30"),
    ("imbalanced", "flip25"), ("imbalanced", "annotator30"),
    ("multiclass", "symmetric30"), ("multiclass", "random40"), ("multiclass", "annotator30"),
    ("digits", "random40"), ("digits", "annotator30"), ("digits", "part30"),
    ("fashion-rows", "lookalike28"), ("fashion-rows", "part30"), ("fashion-rows", "annotator30"),
]
QUICK_EPOCHS = 10  # --quick's networks: this many passes (3 left GCE teachers too weak to teach digits)
QUICK_SETTINGS = [("cancer", "flip25"), ("multiclass", "random40"), ("digits", "part30"),
                  ("fashion-rows", "lookalike28")]


@dataclass
class Setting:
    data: str
    noise: str
    seed: int
    split: Split
    noisy: np.ndarray  # int64 [n]: the labels every method but the references trains on
    expected_rate: float
    quick: bool

    @property
    def realised_rate(self) -> float:
        return float(np.mean(self.noisy != self.split.y_train))


def make_setting(data: str, noise: str, seed: int, quick: bool) -> Setting:
    split = load_split(data, seed, quick)
    noisy, expected = NOISES[noise](split, seed)
    return Setting(data, noise, seed, split, np.asarray(noisy, dtype=np.int64), float(expected), quick)


# ---------------------------------------------------------------------------------------------
# Methods: each fits on the setting's training rows and returns its test predictions and numbers


def accuracy(pred: np.ndarray, s: Setting) -> float:
    return float(np.mean(np.asarray(pred) == s.split.y_test))


def scores(pred: np.ndarray, s: Setting) -> dict:
    """Test accuracy on the clean labels, and its mean over classes (for the imbalanced data)."""
    from sklearn.metrics import balanced_accuracy_score

    return {"accuracy": accuracy(pred, s), "balanced_accuracy": float(balanced_accuracy_score(s.split.y_test, pred))}


def timed_fit(model, s: Setting, labels: np.ndarray, **pool) -> tuple[object, float]:
    started = time.perf_counter()
    model.fit(s.split.x_train, labels, **pool)
    return model, time.perf_counter() - started


def logreg(s: Setting):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))


def gbm(s: Setting):
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_iter=20 if s.quick else 100, random_state=s.seed)


def cleanlab(base):
    def make(s: Setting):
        from cleanlab.classification import CleanLearning

        return CleanLearning(base(s), seed=s.seed, cv_n_folds=5)
    return make


def gce_mlp(s: Setting):
    """One mlp with the robust recipe of ours' teachers: GCE (q 0.8) after 10% of the steps on
    cross-entropy, 30 epochs, at least 10,000 examples."""
    from rolemodels import NetworkClassifier

    budget = {"epochs": QUICK_EPOCHS, "min_examples": 0} if s.quick else {"epochs": 30, "min_examples": 10_000}
    return NetworkClassifier("mlp", loss="gce", gce_q=0.8, gce_warmup=0.1, **budget, random_state=s.seed)


def plain_mlp(s: Setting):
    """One mlp on cross-entropy with NetworkClassifier's defaults (the paper's teacher)."""
    from rolemodels import NetworkClassifier

    budget = {"epochs": QUICK_EPOCHS, "min_examples": 0} if s.quick else {}
    return NetworkClassifier("mlp", **budget, random_state=s.seed)


def one_model(make, clean: bool = False):
    """A method that fits one classifier, on the noisy labels (or the clean ones: a reference)."""
    def method(s: Setting) -> dict:
        model, seconds = timed_fit(make(s), s, s.split.y_train if clean else s.noisy)
        return {**scores(model.predict(s.split.x_test), s), "seconds": seconds}
    return method


def ours(s: Setting, **chosen) -> dict:
    """RoleModelClassifier(random_state=seed) with its defaults (X_pool where the setting has one),
    or with the `chosen` options (the cost study's rows); --quick: 2 teachers of QUICK_EPOCHS
    epochs. Also each teacher's test accuracy and the fit's warnings."""
    from rolemodels import RoleModelClassifier

    options = {"n_teachers": 2, "teacher_epochs": QUICK_EPOCHS} if s.quick else dict(chosen)
    clf, seconds = timed_fit(RoleModelClassifier(**options, random_state=s.seed), s, s.noisy, X_pool=s.split.x_pool)
    teachers = [accuracy(clf.classes_[np.asarray(t.predict(s.split.x_test), dtype=np.int64)], s)
                for t in clf.teachers_]
    d = clf.diagnostics_
    return {**scores(clf.predict(s.split.x_test), s), "seconds": seconds,
            "ensemble_accuracy": accuracy(clf.ensemble_predict(s.split.x_test), s),
            "teacher_accuracy": [round(a, 4) for a in teachers],
            "warnings": [w["kind"] for w in d["warnings"]], "combine": d["combine"], "pool": d["pool"],
            "pool_graph": d["pool_graph"], "teacher_epochs": d["teacher_epochs"],
            "estimated_noise_rate": d["estimated_noise_rate"], "options": options}


METHODS = {
    "ours": ours,
    # the cost study: other teacher counts (without a pool, each of the 5 folds trains this many)
    "ours-k10": lambda s: ours(s, n_teachers=10),
    "ours-k5": lambda s: ours(s, n_teachers=5),
    "ours-k3": lambda s: ours(s, n_teachers=3),
    "ours-k2": lambda s: ours(s, n_teachers=2),
    "ours-k1": lambda s: ours(s, n_teachers=1),
    "logreg": one_model(logreg),
    "gbm": one_model(gbm),
    "cleanlab-logreg": one_model(cleanlab(logreg)),
    "cleanlab-gbm": one_model(cleanlab(gbm)),
    "gce-mlp": one_model(gce_mlp),
    "plain-mlp": one_model(plain_mlp),
    "clean-mlp": one_model(plain_mlp, clean=True),
    "clean-logreg": one_model(logreg, clean=True),
    **SOTA_METHODS,  # None where a method does not apply (dividemix-pool without a pool): no row
}
assert set(METHODS) == set(METHOD_LABELS), "compare_practice_report.METHOD_LABELS names every method"


# ---------------------------------------------------------------------------------------------
# The run: rows kept in one JSON, a rerun computes only the missing ones


def row_key(row: dict) -> tuple[str, str, int, str]:
    return row["data"], row["noise"], row["seed"], row["method"]


def load_rows(out: Path) -> dict[tuple, dict]:
    return {row_key(r): r for r in json.loads(out.read_text())["rows"]} if out.exists() else {}


def save(out: Path, rows: dict[tuple, dict], *, command: str, threads: int, quick: bool) -> None:
    settings = {f"{d}/{n}": i for i, (d, n) in enumerate(SETTINGS)}
    methods = {name: i for i, name in enumerate(METHODS)}
    ordered = sorted(rows.values(), key=lambda r: (settings.get(f"{r['data']}/{r['noise']}", len(settings)),
                                                   r["data"], r["noise"], r["seed"], methods.get(r["method"], 99)))
    processor = processor_name() or "unknown processor"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, {
        "command": command, "machine": f"{processor}, {len(os.sched_getaffinity(0))} cores",
        "processor": processor, "threads": threads, "torch": torch.__version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "quick": quick,
        "sizes": {name: {"labelled": n, "pool": p, "test": "the rest" if t is None else t}
                  for name, spec in DATA.items()
                  for n, p, t in [spec.quick if quick else (spec.n_train, spec.n_pool, spec.n_test)]},
        "methods": METHOD_LABELS, "rows": ordered})


def run(settings: list[tuple[str, str, int]], methods: list[str], *, out: Path, quick: bool, threads: int,
        command: str) -> dict[tuple, dict]:
    """Compute every (setting, method) row that `out` lacks, saving after each row."""
    from threadpoolctl import threadpool_limits

    rows = load_rows(out)
    for data, noise, seed in settings:
        missing = [m for m in methods if (data, noise, seed, m) not in rows
                   and not (m == "dividemix-pool" and DATA[data].n_pool == 0)]
        if not missing:
            continue
        with threadpool_limits(threads):  # scikit-learn's and BLAS's threads, as torch's
            setting = make_setting(data, noise, seed, quick)
        split = setting.split
        common = {"data": data, "noise": noise, "seed": seed, "noise_rate": round(setting.realised_rate, 4),
                  "expected_rate": round(setting.expected_rate, 4), "n_train": len(split.y_train),
                  "n_pool": 0 if split.x_pool is None else len(split.x_pool), "n_test": len(split.y_test),
                  "labels_sha256": arrays_sha256(setting.noisy)[1]}
        print(f"{data} / {noise} / seed {seed} (noise {setting.realised_rate:.3f}): {', '.join(missing)}", flush=True)
        for name in missing:
            with threadpool_limits(threads):
                numbers = METHODS[name](setting)
            if numbers is None:
                continue
            numbers["seconds"] = round(numbers["seconds"], 2)
            rows[(data, noise, seed, name)] = {**common, "method": name, **numbers, "threads": threads,
                                               "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            print(f"  {name}: {numbers['accuracy']:.4f} in {numbers['seconds']:.1f} s", flush=True)
            save(out, rows, command=command, threads=threads, quick=quick)
    return rows


# ---------------------------------------------------------------------------------------------


def parse_only(names: list[str], parser: argparse.ArgumentParser, allowed: list[tuple[str, str]]):
    known = {f"{d}/{n}": (d, n) for d, n in allowed}
    unknown = [n for n in names if n not in known]
    if unknown:
        parser.error(f"--only {' '.join(unknown)}: unknown setting(s); expected any of {', '.join(known)}")
    return [known[n] for n in names]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 2 teachers, seed 0: a check, not a result")
    parser.add_argument("--only", nargs="+", metavar="DATA/NOISE", help="only these settings, e.g. cancer/flip25")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), help="only these methods' rows")
    parser.add_argument("--seeds", nargs="+", type=int, help=f"only these seeds (default {SEEDS}; --quick: 0)")
    parser.add_argument("--threads", type=int, default=1, help="torch's and scikit-learn's threads (default 1)")
    parser.add_argument("--out", help=f"results JSON (default {RESULTS.relative_to(ROOT)}; with --quick "
                                      f"{QUICK / 'compare_practice.json'})")
    parser.add_argument("--markdown", action="store_true", help="print the table from the results JSON, and exit")
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else QUICK / "compare_practice.json" if args.quick else RESULTS
    if args.markdown:
        if not out.exists():
            parser.error(f"{out} does not exist: run the comparison first (or give its file with --out)")
        print(markdown(json.loads(out.read_text())))
        return
    pairs = parse_only(args.only, parser, SETTINGS) if args.only else QUICK_SETTINGS if args.quick else SETTINGS
    seeds = args.seeds or ([0] if args.quick else list(SEEDS))
    if any(data == "fashion-rows" for data, _ in pairs) and not Path(FASHION_ROOT).is_dir():
        parser.error(f"Fashion-MNIST is not under {FASHION_ROOT} (apt-get install dataset-fashion-mnist puts it "
                     f"there): install it, or leave its settings out with --only")
    torch.set_num_threads(args.threads)
    command = "python experiments/compare_practice.py " + " ".join(argv if argv is not None else sys.argv[1:])
    started = time.perf_counter()
    run([(d, n, s) for d, n in pairs for s in seeds], args.methods or list(METHODS), out=out, quick=args.quick,
        threads=args.threads, command=command.strip())
    print(f"{out}: {len(load_rows(out))} rows ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
