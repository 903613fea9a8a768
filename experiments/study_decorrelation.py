"""Study: how close can a distilled student get to the clean-label model? (docs/findings.md)

    python experiments/study_decorrelation.py [--seeds 2] [--only NAME ...] [--out runs/study]

Each recipe is the MNIST-1D run without augmentation (`configs/mnist1d-noaug.toml`, the default
when this study was made) with a few keys overridden, so every option studied is an option of
the pipeline. Runs are resumable: a finished recipe and seed
is read back from its folder. Prints one Markdown table (mean over seeds) and writes
`study.json` beside the runs.

Columns: accuracy and noise replication of one teacher, the ensemble and both students; the
fraction of the gap from the paper recipe's teacher to clean_train that the better student
recovers; the compute of the
recipe relative to the default (FLOPs of teachers, pool labelling and the two students, counted
with FlopCounterMode; training counts forward and backward).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rolemodels.config import load_config  # noqa: E402
from rolemodels.method.teach import teacher_subsets  # noqa: E402
from rolemodels.models import build_model  # noqa: E402
from rolemodels.paper.experiment import run_experiment  # noqa: E402

COMMON = ["sweep.students=false"]  # Table 1 students only: Figure 2's students are not studied here

BASE = ROOT / "configs" / "mnist1d-noaug.toml"  # the default before augmentation: what the study measured

# name -> (why it is tried, overrides of the default run)
RECIPES: dict[str, tuple[str, list[str]]] = {
    "paper": ("the default: 10 teachers on the same 4,000 noisy examples, different seeds", []),
    "bootstrap": ("each teacher on its own bootstrap resample (63% distinct examples)",
                  ["teachers.data=bootstrap"]),
    "half": ("each teacher on a random half; twice the epochs keep its steps",
             ["teachers.data=overlap", "teachers.overlap=0.5", "teachers.epochs=60"]),
    "quarter-k20": ("20 teachers on random quarters: a noisy point is in 5 of 20 on average, so the "
                    "vote outnumbers it; same teacher compute",
                    ["teachers.data=overlap", "teachers.overlap=0.25", "teachers.count=20",
                     "teachers.epochs=60", "sweep.teachers=[1,2,5,10,20]"]),
    "disjoint-k10": ("the theory's independent samplers: 10 disjoint splits of 400",
                     ["teachers.data=disjoint", "teachers.epochs=150"]),
    "soft-mean-prob": ("soft labels: the student learns the teachers' mean softmax instead of the vote",
                       ["students.ensemble=mean_prob"]),
    "epoch-draws-3-passes": ("a fresh random teacher each time an example is seen, 3 passes: the student "
                             "sees the vote shares by sampling", ["students.random_teacher=epoch", "students.epochs=3"]),
    "small-k40": ("many small teachers (width 16, a quarter of the FLOPs) at equal teacher compute; "
                  "students keep width 32", ["teachers.width=16", "teachers.count=40", "students.width=32",
                                             "sweep.teachers=[1,2,5,10,20,40]"]),
    "large-k3": ("few large teachers (width 64, 4x the FLOPs) at about equal teacher compute",
                 ["teachers.width=64", "teachers.count=3", "students.width=32", "sweep.teachers=[1,2,3]"]),
    "student-regularised": ("the student as a smoother learner: weight decay 0.05 and 3 passes",
                            ["students.weight_decay=0.05", "students.epochs=3"]),
    "pool-10k": ("the paper recipe's teachers, students on the first 10,000 pool examples for 20 passes "
                 "(the steps of one pass over 200,000)", ["students.pool_size=10000", "students.epochs=20"]),
    "pool-50k": ("the paper recipe's teachers, students on the first 50,000 pool examples for 4 passes",
                 ["students.pool_size=50000", "students.epochs=4"]),
    "learner-teachers-12": ("teachers stopped after 12 of the usual 30 epochs: closer to learners, with less "
                            "time to memorise the noisy points", ["teachers.epochs=12"]),
    "learner-teachers": ("teachers stopped after 6 epochs: learners, not samplers (they no longer fit "
                         "the noise); what the sampler property costs", ["teachers.epochs=6"]),
}


def flops_per_example(model: str, width: int, input_shape: tuple, num_classes: int, train: bool) -> float:
    """FLOPs of one example through `model` (forward, or forward + backward when train)."""
    net = build_model(model, input_shape, num_classes, width, torch.zeros(1), torch.ones(1))
    x = torch.randn(8, *input_shape)
    counter = FlopCounterMode(display=False)
    with counter:
        out = net(x)
        if train:
            out.sum().backward()
    return counter.get_total_flops() / 8


def recipe_compute(cfg, input_shape: tuple, num_classes: int) -> float:
    """FLOPs of Table 1's pipeline: teachers, pool labelling, the two students."""
    t, s = cfg.teachers, cfg.students
    subsets = teacher_subsets(cfg.data.n_train, t.count, t.data, t.overlap, 0)
    teacher_examples = sum(len(sub) for sub in subsets) * t.epochs
    student_model = s.model or t.model
    student_width = s.width or (t.width if student_model == t.model else 0)
    return (teacher_examples * flops_per_example(t.model, t.width, input_shape, num_classes, True)
            + t.count * cfg.data.n_pool * flops_per_example(t.model, t.width, input_shape, num_classes, False)
            + 2 * s.epochs * (s.pool_size or cfg.data.n_pool)
            * flops_per_example(student_model, student_width, input_shape, num_classes, True))


def summarize_recipe(results: dict) -> dict:
    table, rep = results["table"], results["sampler"]["noise_replication"]
    row = {name: table[name]["mean"] for name in
           ("teacher", "teacher_train_fit", "ensemble", "ensemble_distill", "random_distill", "clean_train")}
    row.update({f"{name}_rep": rep[name]["mean"] for name in
                ("teacher", "ensemble", "ensemble_distill", "random_distill")})
    row["student_std"] = max(table["ensemble_distill"]["std"], table["random_distill"]["std"])
    row["agreement"] = results["sampler"]["teacher_agreement"]["mean"]
    row["seconds"] = results["seconds"]["total"]
    row["seeds"] = len(results["seeds"])
    return row


def teacher_key(cfg) -> str:
    """What the teachers and the pool labels depend on: recipes equal in it share them."""
    return json.dumps([dataclasses.asdict(cfg.data), dataclasses.asdict(cfg.noise), dataclasses.asdict(cfg.teachers),
                       cfg.train.precision, cfg.seed, cfg.seeds], sort_keys=True)


def share_teachers(source: Path, target: Path) -> None:
    """Start `target` with hard links to `source`'s finished teachers and pool labels (no retraining).

    Only into a fresh folder: its manifest gets the same entries, so the pipeline checks them as usual.
    """
    if (target / "manifest.json").exists() or not (source / "manifest.json").exists():
        return
    entries = json.loads((source / "manifest.json").read_text())
    shared = {key: entry for key, entry in entries.items() if "/teachers/" in key or "/pool/" in key}
    for key in shared:
        (target / key).parent.mkdir(parents=True, exist_ok=True)
        os.link(source / key, target / key)
    (target / "manifest.json").write_text(json.dumps(shared))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--only", nargs="*", help="recipe names (default: all)")
    parser.add_argument("--out", default=str(ROOT / "runs" / "study"))
    parser.add_argument("--table-only", action="store_true",
                        help="only read the finished recipes' results.json and print the table")
    parser.add_argument("extra", nargs="*", help="key=value overrides for every recipe (e.g. data.n_pool=50000)")
    args = parser.parse_args()
    names = args.only or list(RECIPES)
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        parser.error(f"unknown recipe(s) {unknown}; choose from {list(RECIPES)}")
    out = Path(args.out)
    rows = {}
    base = load_config(BASE, COMMON + args.extra)
    base_compute = None
    finished: dict[str, Path] = {}  # teacher_key -> a run folder with those teachers
    if "paper" not in names:
        names.insert(0, "paper")  # the reference for the gap and the compute
    for name in names:
        why, overrides = RECIPES[name]
        cfg = load_config(BASE, COMMON + overrides + args.extra + [f"seeds={args.seeds}"])
        started = time.perf_counter()
        if args.table_only:
            if not (out / name / "results.json").exists():
                continue
            results = json.loads((out / name / "results.json").read_text())
        else:
            if teacher_key(cfg) in finished:
                share_teachers(finished[teacher_key(cfg)], out / name)
            results = run_experiment(cfg, out / name, quiet=True)
        finished.setdefault(teacher_key(cfg), out / name)
        shape, classes = tuple(results["dataset"].get("input_shape", [40])), results["dataset"]["num_classes"]
        if base_compute is None:
            base_compute = recipe_compute(base, shape, classes)
        row = summarize_recipe(results)
        row["compute"] = recipe_compute(cfg, shape, classes) / base_compute
        row["why"], row["overrides"] = why, overrides
        # The gap is measured from the paper recipe's teacher: a recipe with worse teachers must not
        # look better for it.
        reference = rows.get("paper", row)
        best = max(row["ensemble_distill"], row["random_distill"])
        row["gap_recovered"] = (best - reference["teacher"]) / (reference["clean_train"] - reference["teacher"])
        rows[name] = row
        print(f"{name}: done in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    (out / "study.json").write_text(json.dumps({"seeds": args.seeds, "extra": args.extra, "recipes": rows}, indent=2))
    print(markdown(rows))


def markdown(rows: dict) -> str:
    pct = lambda v: f"{100 * v:.1f}"  # noqa: E731
    lines = ["| recipe | teacher | fit | ensemble | ens. distill | random distill | replication T / E / ED / RD "
             "| gap recovered | agreement | compute |", "|" + "---|" * 10]
    def spread(r: dict) -> str:  # the larger of the two students' std over seeds
        return " (1 seed)" if r["seeds"] == 1 else f" ± {pct(r['student_std'])}"

    for name, r in rows.items():
        lines.append(
            f"| {name} | {pct(r['teacher'])} | {pct(r['teacher_train_fit'])} | {pct(r['ensemble'])} "
            f"| {pct(r['ensemble_distill'])} | {pct(r['random_distill'])}{spread(r)} "
            f"| {pct(r['teacher_rep'])} / {pct(r['ensemble_rep'])} / {pct(r['ensemble_distill_rep'])} / "
            f"{pct(r['random_distill_rep'])} | {100 * r['gap_recovered']:.0f}% | {r['agreement']:.3f} "
            f"| {r['compute']:.2f}× |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
