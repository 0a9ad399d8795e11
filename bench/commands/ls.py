"""`bench ls methods|metrics|backbones|suites`."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from bench.errors import UnknownNameError

KINDS = ("methods", "metrics", "backbones", "suites")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", help=f"one of: {', '.join(KINDS)}")


def _registry(kind: str):
    if kind == "methods":
        from methods import METHODS
        return METHODS
    if kind == "metrics":
        from metrics import METRICS
        return METRICS
    from zoo.backbones import BACKBONES
    return BACKBONES


def run(args: argparse.Namespace) -> int:
    if args.kind not in KINDS:
        raise UnknownNameError("kind", args.kind, list(KINDS))
    table = Table(title=args.kind, show_lines=False)
    table.add_column("name", style="bold")
    table.add_column("description")
    if args.kind == "suites":
        from bench.suite import load_suite, suite_dirs
        for directory in suite_dirs():
            for path in sorted(directory.glob("*.yaml")):
                try:
                    suite = load_suite(path, check_names=False)
                    table.add_row(str(path.relative_to(directory.parent)), suite.description.strip().split("\n")[0])
                except Exception as exc:  # a broken suite is listed, not fatal to the listing
                    table.add_row(str(path), f"[red]invalid: {exc}[/red]")
    else:
        for entry in _registry(args.kind):
            table.add_row(entry.name, entry.summary)
    Console(width=120).print(table)
    return 0
