"""`rolemodels theory [--out DIR] [--quick] [--seed N]`: run the synthetic experiments of
rolemodels.paper.theory and write theory.json plus one figure per experiment into DIR."""
from __future__ import annotations

import argparse
from pathlib import Path

from rolemodels.errors import UserError
from rolemodels.paper import theory
from rolemodels.paper.theory_report import write_outputs

# ------------------------------------------------------------------------ Command line

def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `theory` command to the rolemodels parser."""
    parser = subparsers.add_parser(
        "theory", help="synthetic experiments: samplers, ensembles of samplers, distillation",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/theory", help="output folder (default: runs/theory)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a few seconds, for tests")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--debug", dest="sub_debug", action="store_true", help="show tracebacks")
    parser.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Run the experiments, write the outputs, print where they are and the headline numbers."""
    if args.seed < 0:
        raise UserError(f"--seed: expected a nonnegative integer, got {args.seed}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    results = theory.run_theory(theory.QUICK if args.quick else theory.FULL, seed=args.seed)
    results["quick"] = bool(args.quick)
    paths = write_outputs(results, out)
    ensemble = results["ensemble"]
    print(f"bayes accuracy (clean test labels): {results['bayes_accuracy']:.3f}")
    print(f"ensemble of {ensemble['k'][-1]} samplers: measured {ensemble['measured'][-1]:.4f}, "
          f"predicted {ensemble['predicted'][-1]:.4f}")
    for path in paths:
        print(f"wrote {path}")
    return 0
