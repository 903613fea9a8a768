"""`rolemodels distill (FILE.npz | --data FILE.npz | --x-train X.npy --y-train Y.npy --x-pool POOL.npy) [--out DIR]`."""
from __future__ import annotations

import argparse
from pathlib import Path

from rolemodels.cli.run import add_run_folder_options


def register(commands) -> None:
    parser = commands.add_parser("distill", help="your own files: teachers on noisy labels, a student to ship",
                                 description="Train teachers on your noisy labels, label your unlabelled pool with "
                                             "them and distil one student; writes student.pt, the pool labels, "
                                             "diagnostics.json (suspected label errors, estimated noise) and "
                                             "report.md. Overrides: section.key=value, e.g. teachers.count=5.")
    parser.add_argument("--data", help=".npz with x_train, y_train (noisy labels), x_pool and optionally x_test, "
                                       "y_test, class_names (or the .npz alone, before any override)")
    for name, what in (("x-train", "training inputs [n, ...]"), ("y-train", "their (noisy) labels [n]: integers "
                       "or strings"), ("x-pool", "unlabelled inputs [N, ...], memory-mapped"),
                       ("x-test", "test inputs (optional)"), ("y-test", "test labels (optional)"),
                       ("class-names", "names of the integer labels 0..C-1 (optional)")):
        parser.add_argument(f"--{name}", help=f".npy: {what}; overrides the array of --data")
    parser.add_argument("--recipe", choices=["robust", "paper"], default="robust",
                        help="robust (default): RoleModelClassifier's recipe (teachers on generalised cross-entropy, "
                             "a student on their mean probabilities; docs/compare.md); paper: the paper's teachers, "
                             "which interpolate the noise, and their vote")
    add_run_folder_options(parser, "runs/distill")
    parser.set_defaults(func=distill_command)


def data_file_among(overrides: list[str], data: str | None) -> tuple[str, list[str]]:
    """The data file and the overrides: `rolemodels distill data.npz` takes a lone .npz given where
    overrides go as --data; any other word without "=" is answered with what to write."""
    from rolemodels.errors import UserError

    files = [item for item in overrides if "=" not in item]
    rest = [item for item in overrides if "=" in item]
    if not files:
        return data or "", rest
    if len(files) == 1 and files[0].endswith(".npz") and not data:
        return files[0], rest
    flag = " (--data takes the .npz; --x-train, --y-train, --x-pool take .npy files)"
    raise UserError(f"{files[0]!r} is neither an option nor a section.key=value override; a data file is given as "
                    f"--data {files[0]}" + (flag if files[0].endswith(".npy") else ""))


def distill_command(args: argparse.Namespace) -> int:
    from rolemodels.practice.distill import load_distill_config, run_distill
    from rolemodels.practice.userdata import InputFiles

    data_file, overrides = data_file_among(args.overrides, args.data)
    files = InputFiles(data=data_file, x_train=args.x_train or "", y_train=args.y_train or "",
                       x_pool=args.x_pool or "", x_test=args.x_test or "", y_test=args.y_test or "",
                       class_names=args.class_names or "")
    cfg = load_distill_config(files, overrides, recipe=args.recipe)
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    d = run_distill(cfg, out, quiet=args.quiet, force=args.force)
    if not args.quiet:
        print(f"teachers fit their labels: {min(d['teacher_fit']):.1%} to {max(d['teacher_fit']):.1%}; "
              f"estimated noise rate {d['estimated_noise_rate']:.1%} ({d['suspected_label_errors']:,} suspected "
              f"label errors)")
        if "test_accuracy" in d:
            t = d["test_accuracy"]
            print(f"test accuracy: one teacher {t['teacher_mean']:.1%}, vote {t['ensemble']:.1%}, "
                  f"student {t['student']:.1%}")
    return 0
