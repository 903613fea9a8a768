"""rolemodels: knowledge distillation from noisy teachers. Train several models on noisy labels,
let them label unlabelled data, and distil one student that is better than any of them: the paper's
experiment (run, theory) or your own data (distill, then predict). `rolemodels COMMAND --help` gives
a command's options; bad input is answered in one line with exit code 2, before anything is computed.
"""
from __future__ import annotations

import argparse
import sys

from rolemodels.errors import RunError, UserError
from rolemodels.version import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rolemodels", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--version", action="version", version=f"rolemodels {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    # One module a command (cli/), each registering itself here.
    from rolemodels.cli import distill, models, noise, predict, run, theory

    for command in (run, distill, predict, noise, models, theory):
        command.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may stand anywhere among the options; anything else unknown is an error.
    stray = [item for item in extra if item.startswith("-") or "=" not in item or not hasattr(args, "overrides")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    debug = args.debug or getattr(args, "sub_debug", False)
    try:
        return int(args.func(args) or 0)
    except (UserError, RunError) as err:
        if debug:
            raise
        from rolemodels.runtime.world import rank_label

        print(f"rolemodels: {rank_label()}error: {err}", file=sys.stderr)  # under torchrun: which rank failed
        return err.exit_code
    except OSError as err:  # any file a command cannot read or write: one line, exit 1
        if debug:
            raise
        from rolemodels.runtime.files import reason

        where = f"{err.filename}: " if err.filename else ""
        print(f"rolemodels: error: {where}{reason(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rolemodels: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
