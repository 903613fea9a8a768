"""Do robust teachers get stuck? One mlp of the practitioner's robust recipe, and its variants, on
settings of experiments/compare_practice.py: its fit of its own noisy labels and its clean test
accuracy, beside one plain mlp.

    python experiments/stuck_teachers.py                                   # the settings below, seeds 0 1 2
    python experiments/stuck_teachers.py --only fashion-rows/lookalike28 --seeds 0

A teacher on generalised cross-entropy (GCE) from the first step weighs each example's gradient by
its predicted probability to the power q, so a class the network has not begun to predict gets
little gradient; it can learn some classes and stay stuck on the rest, below one plain model on
the same labels. A robust teacher should fit the labels it finds right and leave the wrong ones,
so its fit sits near 1 - the noise rate and its test accuracy above the plain model's.
Variants: q (GCE's exponent), and `warmup`: that share of the steps on cross-entropy first
(NetworkClassifier(gce_warmup=...), the robust recipe's ROBUST_GCE_WARMUP). Each variant trains 30
epochs and at least 10,000 examples, the robust recipe's budget.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compare_practice import SETTINGS, make_setting, parse_only  # noqa: E402

from rolemodels import NetworkClassifier  # noqa: E402
from rolemodels.paper.report import processor_name  # noqa: E402

# name -> NetworkClassifier options: the recipe before 2026-12-06 (GCE, q 0.8, from the first step),
# Zhang & Sabuncu's q, a lower q, the recipe now (10% of the steps on cross-entropy first), and
# cross-entropy itself (the paper's teacher, which fits every label).
VARIANTS = {
    "gce q0.8": {"loss": "gce", "gce_q": 0.8},
    "gce q0.7": {"loss": "gce", "gce_q": 0.7},
    "gce q0.5": {"loss": "gce", "gce_q": 0.5},
    "gce q0.8, warm-up 0.1": {"loss": "gce", "gce_q": 0.8, "gce_warmup": 0.1},
    "gce q0.8, warm-up 0.2": {"loss": "gce", "gce_q": 0.8, "gce_warmup": 0.2},
    "cross-entropy": {"loss": "cross_entropy"},
}
DEFAULT_SETTINGS = [("fashion-rows", "lookalike28"), ("digits", "random40"), ("multiclass", "random40"),
                    ("cancer", "annotator30"), ("imbalanced", "flip25")]


def one_teacher(setting, options: dict) -> tuple[float, float, float]:
    """(fit of its noisy labels, clean test accuracy, seconds) of one mlp with `options`."""
    started = time.perf_counter()
    clf = NetworkClassifier("mlp", epochs=30, min_examples=10_000, random_state=setting.seed, **options)
    clf.fit(setting.split.x_train, setting.noisy)
    test = float(np.mean(clf.predict(setting.split.x_test) == setting.split.y_test))
    return clf.train_accuracy_, test, time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="DATA/NOISE", help="these settings (default: five that stuck)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    pairs = parse_only(args.only, parser, SETTINGS) if args.only else DEFAULT_SETTINGS
    print(f"{processor_name() or 'unknown processor'}, {args.threads} thread(s), torch {torch.__version__}; "
          f"fit of the noisy labels / clean test accuracy, %, per seed {', '.join(map(str, args.seeds))}\n")
    print("| setting | " + " | ".join(args.variants) + " |\n|---|" + "---|" * len(args.variants))
    for data, noise in pairs:
        cells = {v: [] for v in args.variants}
        for seed in args.seeds:
            setting = make_setting(data, noise, seed, quick=False)
            for v in args.variants:
                cells[v].append(one_teacher(setting, VARIANTS[v]))
        print(f"| {data}/{noise} | " + " | ".join(
            " · ".join(f"{100 * f:.0f}/{100 * t:.1f}" for f, t, _ in cells[v]) for v in args.variants) + " |",
            flush=True)


if __name__ == "__main__":
    main()
