"""`bench validate SUITE`: schema, includes, and every method/metric/backbone name."""

from __future__ import annotations

import argparse

from rich.console import Console


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", nargs="+", help="suite YAML file(s)")


def run(args: argparse.Namespace) -> int:
    """Every file is checked; each bad one prints its error on one line, and the exit code is 2 if any was bad."""
    import sys

    from bench.errors import BenchError
    from bench.suite import load_suite

    from rich.text import Text

    console = Console(soft_wrap=True)
    bad = 0
    for path in args.suite:
        try:
            suite = load_suite(path)
        except BenchError as exc:
            bad += 1
            print(f"bench validate: error: {exc}", file=sys.stderr)
            continue
        # Text, not markup: a path or name with "[...]" or ":name:" is printed as it is
        console.print(Text.assemble(("ok", "green"), f" {path}: suite {suite.name!r} v{suite.version}: "
                                    f"{len(suite.methods)} method variant(s) × {len(suite.edits)} edit(s) × "
                                    f"{len(suite.seeds)} seed(s), {len(suite.metrics)} metric(s), hash "
                                    f"{suite.content_hash()}"))
    if bad and len(args.suite) > 1:
        print(f"bench validate: {bad} of {len(args.suite)} suite file(s) invalid", file=sys.stderr)
    return 2 if bad else 0
