"""`bench report DIR --format md|latex|html|json`: rebuild every report of a run directory and print one."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="run directory (e.g. runs/faces)")
    parser.add_argument("--format", choices=["md", "latex", "html", "json"], default="md",
                        help="what to print (all formats are written to DIR/report/)")


def run(args: argparse.Namespace) -> int:
    from reports.build import write_reports

    paths = write_reports(args.run_dir)
    key = {"md": "md", "latex": "latex", "json": "json", "html": "html"}[args.format]
    if args.format == "html":
        print(paths["html"])
    else:
        print(Path(paths[key]).read_text(), end="")
    return 0
