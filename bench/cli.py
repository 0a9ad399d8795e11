"""`bench`: the command-line entry point.

Each subcommand lives in `bench/commands/<name>.py` with `add_arguments(parser)` and `run(args) -> int`; it is
imported only when used, so `bench --help` and `bench ls` stay fast. A `BenchError` (bad input the user can fix)
prints one line and exits with code 2; anything else is a bug: its traceback is printed and the exit code is 3, so
a CI job does not read a harness bug as `bench compare`'s "regression" (1).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from bench.errors import BenchError

# name → (module, one-line help). Add a subcommand with one line here and one file in bench/commands/.
COMMANDS: dict[str, tuple[str, str]] = {
    "ls": ("bench.commands.ls", "list registered methods, metrics, backbones or shipped suites"),
    "validate": ("bench.commands.validate", "check a suite file: schema, includes and every registered name"),
    "generate": ("bench.commands.generate", "render images from a StyleGAN2 checkpoint and a latents file"),
    "run": ("bench.commands.run", "run a suite: every method variant × edit × source batch × seed, then report"),
    "report": ("bench.commands.report", "rebuild a run's tables, plots, grids and HTML page; print one format"),
    "compare": ("bench.commands.compare", "CI gate: compare a run against a baseline (exit 1 on regression)"),
    "zoo": ("bench.commands.zoo", "evaluate a trained world's gates: bench zoo eval synthface --json"),
}


INTERNAL_ERROR = 3  # an unexpected exception: a bug in the harness, not bad input (2) nor a regression (1)
EXIT_CODES = ("exit codes: 0 success; 1 the command's negative result (bench run: failed cells, bench compare: "
              "regressions, bench zoo eval: a failing gate); 2 bad input (one-line error); 3 internal error (a bug: "
              "the traceback is printed); 130 interrupted")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench", description="Benchmark harness for text-guided image editing with CLIP and StyleGAN.",
        epilog=EXIT_CODES)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if only == name:  # import just the module that will run (none for `bench --help`)
            importlib.import_module(module_name).add_arguments(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(only=next((a for a in argv if a in COMMANDS), None))
    args = parser.parse_args(argv)
    try:
        return int(importlib.import_module(COMMANDS[args.command][0]).run(args) or 0)
    except BenchError as exc:
        print(f"bench {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"bench {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception:  # a bug: keep its traceback, but not the exit code 1 that means "regression" or "failed"
        traceback.print_exc()
        print(f"bench {args.command}: internal error (a bug in the harness, not in the input; traceback above); "
              f"exit code {INTERNAL_ERROR}", file=sys.stderr)
        return INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
