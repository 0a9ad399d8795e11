"""`bench report RUN_DIR --format md|latex|html|json`: rebuild every report of a run directory and print one (the
HTML page's path for html); a run with no finished cell says so on stderr."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="run directory (e.g. runs/faces)")
    parser.add_argument("--format", choices=["md", "latex", "html", "json"], default="md",
                        help="what to print: the Markdown, LaTeX or JSON report's text, or for html the path of "
                        "the self-contained page (every format is written to RUN_DIR/report/; default md)")


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from reports.build import no_cells_note, write_reports

    paths = write_reports(args.run_dir)
    if args.format == "html":
        print(paths["html"])
    else:
        print(Path(paths[args.format]).read_text(), end="")
    empty = no_cells_note(json.loads(Path(paths["json"]).read_text()))
    if empty:
        print(f"bench report: {empty}", file=sys.stderr)
    return 0
