"""`bench ls methods|metrics|backbones|suites`."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

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


def shown_path(path: Path) -> str:
    """A path that works from the current directory: relative to it when the file lies below it, else absolute
    (the shipped suites seen from outside the repository)."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _suite_rows(table: Table) -> None:
    from bench.suite import load_suite, suite_dirs

    for directory in suite_dirs():
        for path in sorted(directory.glob("*.yaml")):
            try:
                suite = load_suite(path, check_names=False)
                lines = suite.description.strip().split("\n")
                table.add_row(Text(shown_path(path)), Text(lines[0]))  # Text: user text is not rich markup
            except Exception as exc:  # a broken suite is listed, not fatal to the listing
                table.add_row(Text(shown_path(path)), Text.assemble(("invalid: ", "red"), str(exc)))


def run(args: argparse.Namespace) -> int:
    if args.kind not in KINDS:
        raise UnknownNameError("kind", args.kind, list(KINDS))
    table = Table(title=args.kind, show_lines=False)
    table.add_column("name", style="bold")
    table.add_column("description")
    if args.kind == "suites":
        _suite_rows(table)
    else:
        for entry in _registry(args.kind):
            table.add_row(Text(entry.name), Text(entry.summary))
    Console(width=120).print(table)
    return 0
