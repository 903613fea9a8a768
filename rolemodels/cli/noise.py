"""`rolemodels noise make|inspect`: write noisy labels from clean ones, or measure a pair of files.

    rolemodels noise make --labels clean.npy --preset paper --rate 0.2 --seed 0 --out noisy.npy
    rolemodels noise make --labels clean.npy --preset annotator --probs probs.npy --seed 0 --out noisy.npy
    rolemodels noise inspect --clean clean.npy --noisy noisy_labels.int64 [--json]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from rolemodels.data import labelfiles
from rolemodels.errors import UserError
from rolemodels.method import instance_noise, noise

FULL_MATRIX_MAX_CLASSES = 20  # above this, text output lists classes instead of the C x C tables
INSTANCE_PRESETS = ("annotator", "part")  # noise that depends on the example: no transition matrix


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `noise` command with its `make` and `inspect` actions to `subparsers`."""
    parser = subparsers.add_parser("noise", help="make or inspect noisy labels", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="noise_command", metavar="ACTION")
    actions.required = True

    make = actions.add_parser("make", help="write noisy labels made from clean ones")
    make.add_argument("--labels", required=True, metavar="CLEAN", help="clean label file")
    make.add_argument("--labels-format", metavar="F", help="format of CLEAN (npy, raw, txt, pt, npz)")
    make.add_argument("--labels-key", metavar="K", help="which array of a .pt/.npz file")
    make.add_argument("--preset", required=True, choices=noise.PRESETS + INSTANCE_PRESETS,
                      help="kind of noise: a transition matrix, or annotator / part (depends on the example)")
    make.add_argument("--rate", type=float, default=None, help="noise rate in [0, 1) (default 0.2)")
    make.add_argument("--shift", type=int, default=None, help="paper preset: c -> (c + shift) mod C (default C // 2)")
    make.add_argument("--matrix", metavar="FILE", help="matrix preset: C x C row-stochastic .npy/.csv/.txt")
    make.add_argument("--probs", metavar="P.npy", help="annotator preset: float [N, C] probabilities, one row a label")
    make.add_argument("--inputs", metavar="X.npy", help="part preset: the examples' features [N, ...] (.npy)")
    make.add_argument("--mode", choices=noise.MODES, default=None,
                      help="matrix presets: exact, a fixed count per class (default); sampled, independent draws")
    make.add_argument("--num-classes", type=int, metavar="C", help="default: max clean label + 1")
    make.add_argument("--seed", type=int, required=True, help="random seed (same seed, same labels)")
    make.add_argument("--out", required=True, metavar="FILE", help="noisy label file (.npy, .txt, .csv, .int64, .bin)")
    make.add_argument("--out-format", metavar="F", help="format of FILE when its extension does not say")
    make.add_argument("--debug", dest="sub_debug", action="store_true", help="show tracebacks")
    make.set_defaults(func=run_make)

    inspect = actions.add_parser("inspect", help="print the realised transition matrix of two label files")
    inspect.add_argument("--clean", required=True, help="clean label file")
    inspect.add_argument("--noisy", required=True, help="noisy label file, same order")
    inspect.add_argument("--clean-format", metavar="F")
    inspect.add_argument("--clean-key", metavar="K")
    inspect.add_argument("--noisy-format", metavar="F")
    inspect.add_argument("--noisy-key", metavar="K")
    inspect.add_argument("--num-classes", type=int, metavar="C", help="default: max clean label + 1")
    inspect.add_argument("--json", action="store_true",
                         help='print {"rate", "counts", "matrix", "num_classes", "n"} as JSON')
    inspect.add_argument("--debug", dest="sub_debug", action="store_true", help="show tracebacks")
    inspect.set_defaults(func=run_inspect)
    return parser


# ----------------------------------------------------------------------------- actions


def run_make(args: argparse.Namespace) -> int:
    """Read clean labels, apply the chosen noise, write the noisy labels, print a summary."""
    check_make_options(args)
    out_format = labelfiles.write_format(args.out, args.out_format)  # fail before any work
    if Path(args.out).resolve() == Path(args.labels).resolve():
        raise UserError(f"output {args.out}: is the clean label file itself; choose another --out")
    with _warnings_to_stderr():
        clean = labelfiles.read_labels(args.labels, fmt=args.labels_format, key=args.labels_key,
                                       num_classes=args.num_classes)
        num_classes = args.num_classes if args.num_classes is not None else int(clean.max()) + 1
        rate = 0.2 if args.rate is None else args.rate
        if args.preset in INSTANCE_PRESETS:
            noisy, num_classes = make_instance_noise(args, clean, num_classes, rate)
        else:
            T = noise.transition_matrix(args.preset, num_classes, rate=rate, shift=args.shift,
                                        matrix_file=args.matrix, seed=args.seed)
    if args.preset not in INSTANCE_PRESETS:
        noisy = noise.apply_noise(clean, T, args.seed, mode=args.mode or "exact")
    labelfiles.write_labels(args.out, noisy, fmt=out_format)
    counts, _ = noise.realized_matrix(clean, noisy, num_classes)
    mode = "" if args.preset in INSTANCE_PRESETS else f", mode {args.mode or 'exact'}"
    print(f"{describe_noise(args, num_classes)}{mode}, seed {args.seed}")
    print(f"wrote {args.out} ({out_format}): {noisy.size:,} labels, {num_classes} classes")
    print(format_summary(counts))
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    """Print the realised transition matrix between a clean and a noisy label file."""
    with _warnings_to_stderr():
        clean = labelfiles.read_labels(args.clean, fmt=args.clean_format, key=args.clean_key,
                                       num_classes=args.num_classes)
        num_classes = args.num_classes if args.num_classes is not None else int(clean.max()) + 1
        noisy = labelfiles.read_labels(args.noisy, fmt=args.noisy_format, key=args.noisy_key,
                                       num_classes=num_classes, expected_length=clean.size)
    counts, rates = noise.realized_matrix(clean, noisy, num_classes)
    rate = noise.noise_rate(clean, noisy)
    if args.json:
        print(json.dumps({"rate": rate, "counts": counts.tolist(), "matrix": rates.tolist(),
                          "num_classes": num_classes, "n": int(clean.size)}))
        return 0
    print(f"clean {args.clean}, noisy {args.noisy}: {clean.size:,} labels, {num_classes} classes")
    print(format_summary(counts))
    if num_classes <= FULL_MATRIX_MAX_CLASSES:
        print("\ncounts (rows = clean class, columns = noisy label)")
        print(format_matrix(counts, "{:,}"))
        print("\nrates")
        print(format_matrix(rates, "{:.4f}"))
    else:
        print(f"\n({num_classes} classes: use --json for the full matrix)")
    return 0


# ----------------------------------------------------------------------------- helpers


def make_instance_noise(args: argparse.Namespace, clean: np.ndarray, num_classes: int,
                        rate: float) -> tuple[np.ndarray, int]:
    """Noisy labels int64 [N] and the number of classes for --preset annotator or part."""
    if args.preset == "annotator":
        probs = read_array(args.probs, "probs", len(clean))
        if probs.ndim != 2 or probs.shape[1] < 2:
            raise UserError(f"probs file {args.probs}: shape {probs.shape}; expected [N, C] = [{len(clean):,}, classes]")
        if args.num_classes is not None and args.num_classes != probs.shape[1]:
            raise UserError(f"probs file {args.probs}: {probs.shape[1]} columns, but --num-classes is "
                            f"{args.num_classes}; expected one column per class")
        if clean.max(initial=0) >= probs.shape[1]:
            raise UserError(f"labels file {args.labels}: label {clean.max()}, but probs file {args.probs} has "
                            f"{probs.shape[1]} columns; expected labels in [0, {probs.shape[1]})")
        probs = instance_noise.check_probs(probs, len(clean), source=f"probs file {args.probs}")
        return instance_noise.annotator_noise(clean, probs, rate, args.seed), probs.shape[1]
    inputs = read_array(args.inputs, "inputs", len(clean))
    return instance_noise.part_dependent_noise(clean, inputs, rate, args.seed, num_classes=num_classes), num_classes


def read_array(path: str, what: str, rows: int) -> np.ndarray:
    """A .npy array of numbers with `rows` rows, memory-mapped (read when used); UserError otherwise."""
    if not Path(path).is_file():
        raise UserError(f"{what} file {path}: no such file")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as err:
        raise UserError(f"{what} file {path}: cannot read a .npy array ({err})") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf" or array.ndim == 0:
        if hasattr(array, "close"):  # an .npz archive
            array.close()
        raise UserError(f"{what} file {path}: not a .npy array of numbers [N, ...]")
    if array.shape[0] != rows:
        raise UserError(f"{what} file {path}: {array.shape[0]:,} rows, but the labels file has {rows:,} labels; "
                        f"expected one row per label")
    return array


def check_make_options(args: argparse.Namespace) -> None:
    """Reject options that do not apply to the chosen preset, instead of ignoring them."""
    for option, preset in (("probs", "annotator"), ("inputs", "part")):
        if args.preset == preset and getattr(args, option) is None:
            raise UserError(f"--preset {preset} needs --{option} FILE (.npy: "
                            f"{'float [N, C] probabilities' if preset == 'annotator' else 'features [N, ...]'})")
        if args.preset != preset and getattr(args, option) is not None:
            raise UserError(f"--{option} applies only to --preset {preset}, not {args.preset}")
    if args.preset in INSTANCE_PRESETS and args.mode is not None:
        raise UserError(f"--mode applies only to transition-matrix presets, not {args.preset} "
                        f"(each example's flip is drawn on its own)")
    if args.preset == "matrix":
        if args.matrix is None:
            raise UserError("--preset matrix needs --matrix FILE (a C x C row-stochastic .npy, .csv or .txt)")
        if args.rate is not None:
            raise UserError("--rate does not apply to --preset matrix; the matrix file sets the rates")
    elif args.matrix is not None:
        raise UserError(f"--matrix applies only to --preset matrix, not {args.preset}")
    if args.shift is not None and args.preset != "paper":
        raise UserError(f"--shift applies only to --preset paper, not {args.preset}")
    if args.rate is not None:
        noise.check_rate(args.rate)


def describe_noise(args: argparse.Namespace, num_classes: int) -> str:
    """One phrase naming the noise, e.g. 'paper noise, rate 0.2, shift 5'."""
    if args.preset == "matrix":
        return f"matrix noise from {args.matrix}"
    rate = 0.2 if args.rate is None else args.rate
    if args.preset in INSTANCE_PRESETS:
        source = args.probs if args.preset == "annotator" else args.inputs
        return f"{args.preset} noise from {source}, rate {rate:g}"
    text = f"{args.preset} noise, rate {rate:g}"
    if args.preset == "paper":
        text += f", shift {num_classes // 2 if args.shift is None else args.shift}"
    return text


def format_summary(counts: np.ndarray) -> str:
    """Overall realised rate and, per clean class, how many labels changed and mostly to what.

    counts: int64 [C, C] realised counts (rows = clean class).
    """
    total = int(counts.sum())
    changed = total - int(np.trace(counts))
    rate = changed / total if total else 0.0
    lines = [f"realised noise rate {rate:.4f}: {changed:,} of {total:,} labels changed",
             f"{'class':>5} {'n':>9} {'changed':>9} {'rate':>7}  most often to"]
    partner = noise.noise_partner(counts.astype(np.float64))
    for c, row in enumerate(counts):
        n_c = int(row.sum())
        flipped = n_c - int(row[c])
        to = f"{partner[c]} ({int(row[partner[c]]):,})" if flipped else "-"
        lines.append(f"{c:>5} {n_c:>9,} {flipped:>9,} {flipped / n_c if n_c else 0.0:>7.4f}  {to}")
    return "\n".join(lines)


def format_matrix(matrix: np.ndarray, fmt: str) -> str:
    """A [C, C] matrix as a text table with class numbers on both axes."""
    cells = [[fmt.format(v) for v in row] for row in matrix.tolist()]
    width = max([len(str(matrix.shape[1] - 1))] + [len(cell) for row in cells for cell in row])
    label_width = len(str(matrix.shape[0] - 1))
    header = " " * label_width + " " + " ".join(f"{j:>{width}}" for j in range(matrix.shape[1]))
    rows = [f"{c:>{label_width}} " + " ".join(f"{cell:>{width}}" for cell in row) for c, row in enumerate(cells)]
    return "\n".join([header, *rows])


@contextlib.contextmanager
def _warnings_to_stderr() -> Iterator[None]:
    """Show our warnings (e.g. a matrix that is not diagonally dominant) as one stderr line each."""
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        for w in caught:
            if issubclass(w.category, (noise.NoiseWarning, labelfiles.LabelFileWarning)):
                print(f"rolemodels: warning: {w.message}", file=sys.stderr)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


if __name__ == "__main__":  # for trying the command alone: python -m rolemodels.cli.noise noise ...
    root = argparse.ArgumentParser(prog="rolemodels")
    register(root.add_subparsers(dest="command"))
    parsed = root.parse_args()
    try:
        sys.exit(parsed.func(parsed))
    except UserError as err:
        print(f"rolemodels: error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
