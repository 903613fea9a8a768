"""`rolemodels run [--config FILE] [--out DIR] [section.key=value ...]`."""
from __future__ import annotations

import argparse
from pathlib import Path

# Presets live in the checkout's configs/ folder (the package is installed editable from it).
PRESETS = Path(__file__).resolve().parents[2] / "configs"


def register(commands) -> None:
    parser = commands.add_parser("run", help="run the paper's experiment (default: MNIST-1D)",
                                 description="Run the paper's experiment: teachers on noisy labels, their ensemble, "
                                             "and students distilled on the pool. Overrides: section.key=value.")
    parser.add_argument("--config", help="a TOML preset file, or the name of one in configs/ (mnist1d, tiny, "
                        "cifar10-paper, cifar10-authors-code); default: mnist1d")
    add_run_folder_options(parser, "runs/NAME, NAME from the config")
    parser.set_defaults(func=run_command)


def add_run_folder_options(parser, default_out: str) -> None:
    """--out, --quiet, --force, --debug and section.key=value overrides: a command with a run folder."""
    parser.add_argument("--out", help=f"run folder (default: {default_out})")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument("--force", action="store_true", help="start over in a folder made with another configuration")
    parser.add_argument("--debug", dest="sub_debug", action="store_true", help="show tracebacks")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value")


def resolve_preset(name: str | None) -> Path | None:
    """A config path as given, or a built-in preset by name (mnist1d, tiny, ...)."""
    if name is None:
        return None
    path = Path(name)
    if path.exists() or path.suffix == ".toml" or "/" in name:
        return path
    builtin = PRESETS / f"{name}.toml"
    if builtin.exists():
        return builtin
    from rolemodels.errors import UserError

    known = ", ".join(sorted(p.stem for p in PRESETS.glob("*.toml")))
    raise UserError(f"unknown preset {name!r}: give a .toml file or one of {known}")


def run_command(args: argparse.Namespace) -> int:
    from rolemodels.config import load_config
    from rolemodels.paper.experiment import run_experiment
    from rolemodels.paper.report import sweep_markdown, table_markdown

    cfg = load_config(resolve_preset(args.config), args.overrides)
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    results = run_experiment(cfg, out, quiet=args.quiet, force=args.force)
    if results is not None and not args.quiet:  # None: a rank other than 0 under torchrun
        print(table_markdown(results))
        print()
        print(sweep_markdown(results))
    return 0
