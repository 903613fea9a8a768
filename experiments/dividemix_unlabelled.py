"""What DivideMix's unlabelled loss does on MNIST-1D's 1-D CNN: one compare.py setting, the
practitioner's DivideMix (experiments/compare_sota.py's options for the setting's network) refitted
with one or more parameters changed.

    python experiments/dividemix_unlabelled.py --noise symmetric40 --seed 1 \
        '{}' '{"lambda_u": 0}' '{"rampup_fraction": 0.2133}' '{"rampup_fraction": 1}'

Each JSON argument is a set of DivideMixClassifier parameters laid over the practitioner's. Each
fit prints its schedule (epochs, warm-up, lr step, the lambda_u ramp-up in epochs), its clean
test accuracy, its fit of the noisy training labels and the precision and recall of its flags
against the truly flipped labels, and appends them to --out. The setting's noisy labels are the
ones compare.py saved (or makes) under runs/compare/, so '{}' is compare.py's `dividemix` row.
--quick fits at compare.py's quick sizes for QUICK_EPOCHS epochs: a check of the code, not a result.
Why it exists: docs/compare.md, "The field's methods", on DivideMix's rows on MNIST-1D.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

EXPERIMENTS = Path(__file__).resolve().parent
sys.path.insert(0, str(EXPERIMENTS))

import compare  # noqa: E402
import compare_sota  # noqa: E402
from baselines.dividemix import PRACTITIONER, DivideMixClassifier  # noqa: E402
from compare_methods import as_numpy_inputs  # noqa: E402

from rolemodels.runtime.files import atomic_write_json  # noqa: E402


def refit(case, change: dict) -> dict:
    """The practitioner's DivideMix on `case` with `change` laid over its options, scored."""
    options = {**compare_sota.options_of(case, "dividemix", dict(PRACTITIONER)), **change}
    x = as_numpy_inputs(case.data.x_train)
    started = time.perf_counter()
    clf = DivideMixClassifier(**options, random_state=case.seed).fit(x, case.noisy)
    seconds = time.perf_counter() - started
    flagged, flipped = np.asarray(clf.flagged_, dtype=bool), case.flipped
    hits = int((flagged & flipped).sum())
    test = clf.predict(as_numpy_inputs(case.data.x_test)) == case.data.y_test.numpy()
    return {"change": change, "schedule": vars(clf.schedule_), "accuracy": float(test.mean()),
            "train_fit": float(np.mean(clf.predict(x) == case.noisy)),
            "precision": hits / max(int(flagged.sum()), 1), "recall": hits / max(int(flipped.sum()), 1),
            "seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("changes", nargs="+", help="JSON objects of DivideMixClassifier parameters, e.g. "
                                                   "'{\"lambda_u\": 0}'")
    parser.add_argument("--noise", choices=list(compare.NOISES), default="symmetric40")
    parser.add_argument("--seed", type=int, choices=compare.SEEDS, default=1)
    parser.add_argument("--quick", action="store_true", help="compare.py's quick sizes and budget: a check, not a result")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", default="runs/dividemix_unlabelled.json", help="results JSON (appended to)")
    args = parser.parse_args()
    try:
        changes = [json.loads(text) for text in args.changes]
    except json.JSONDecodeError as err:
        parser.error(f"a change is not JSON: {err}")
    if not all(isinstance(change, dict) for change in changes):
        parser.error("each change must be a JSON object of parameters, e.g. '{\"lambda_u\": 0}'")
    known = set(DivideMixClassifier().get_params()) - {"random_state"}
    unknown = sorted({name for change in changes for name in change} - known)
    if unknown:
        parser.error(f"not DivideMixClassifier parameters: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    torch.set_num_threads(args.threads)
    case = compare.make_case("mnist1d", args.noise, args.seed, quick=args.quick, threads=args.threads,
                             work=compare.QUICK if args.quick else compare.WORK, loaded={})
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else []
    for change in changes:
        try:
            scored = refit(case, change)
        except ValueError as err:  # the classifier's own check of a value
            parser.error(f"{json.dumps(change)}: {err}")
        row = {"noise": args.noise, "seed": args.seed, "machine": compare.machine(), **scored}
        print(json.dumps(row), flush=True)
        results.append(row)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out, results)  # an interrupted fit leaves the earlier ones whole


if __name__ == "__main__":
    main()
