"""`bench validate SUITE`: schema, includes, and every method/metric/backbone name."""

from __future__ import annotations

import argparse

from rich.console import Console


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", nargs="+", help="suite YAML file(s)")


def run(args: argparse.Namespace) -> int:
    from bench.suite import load_suite

    console = Console(soft_wrap=True)
    for path in args.suite:
        suite = load_suite(path)
        console.print(f"[green]ok[/green] {path}: suite {suite.name!r} v{suite.version}: "
                      f"{len(suite.methods)} method variant(s) × {len(suite.edits)} edit(s) × "
                      f"{len(suite.seeds)} seed(s), {len(suite.metrics)} metric(s), hash {suite.content_hash()}")
    return 0
