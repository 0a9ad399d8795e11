"""`bench run SUITE`: expand the suite into cells, run them, store the results, print a summary table; exit 1
when any cell failed (the reports list the failed cells; `--resume` runs them again)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", nargs="?", help="suite YAML file")  # "?": see methods_and_suite
    parser.add_argument("--out", type=Path, help="run directory (default: runs/<suite name>)")
    parser.add_argument("--methods", nargs="+", action="extend", metavar="VARIANT",
                        help="run only these method variants (or names): --methods a b, --methods a,b or --methods "
                        "a --methods b")
    parser.add_argument("--limit", type=int, help="use only the first N sources")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default cpu)")
    parser.add_argument("--resume", action="store_true", help="continue a run in --out, skipping finished cells")
    parser.add_argument("--prepare-cache", type=Path, metavar="DIR",
                        help="share prepared states (trained mappers, relevance statistics, adapted generators) "
                        "across runs in DIR, keyed by method and parameters (files named in them by content), edit, "
                        "seed, backbone content hashes and device; a restored state reports the preparation time and memory measured when it was made "
                        "(default: <out>/cache/prepare)")
    parser.add_argument("--executor", choices=["local"], default="local", help="where cells run (default local)")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes that prepare per-edit methods (mapper training, NADA) side by side before "
                        "the cells run, each on an equal share of the threads (default 1: all in this process). On "
                        "a 2-core CPU, --workers 2 trained mappers 1.76x as fast as one process on both cores "
                        "(tools/prepare_workers_speed.py)")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice); use 1 when "
                        "other jobs share the cores, since oversubscribed threads slow every step many times over")


SUITE_SUFFIXES = (".yaml", ".yml")


def methods_and_suite(methods: list[str] | None, suite: str | None) -> tuple[list[str] | None, str]:
    """The variants of `--methods` (comma-separated ones split) and the suite file. In `bench run --methods a b
    SUITE` argparse hands the suite to --methods (it takes one or more values), so a missing suite is taken from
    the end of --methods when that names a YAML file."""
    from bench.errors import BenchError

    names = [name for item in methods or [] for name in item.split(",") if name] or None
    if suite is None:
        if names and (names[-1].endswith(SUITE_SUFFIXES) or Path(names[-1]).is_file()):
            suite = names.pop()
        else:
            raise BenchError("the suite file is missing: bench run SUITE.yaml [--methods VARIANT ...] [options]")
    if methods is not None and not names:
        raise BenchError("--methods names no variant; valid forms: --methods a b, --methods a,b")
    return names, suite


def run(args: argparse.Namespace) -> int:
    from bench.commands import checked_device
    from bench.errors import BenchError
    from bench.progress import reporting
    from bench.runner import RunOptions, Runner
    from bench.suite import load_suite
    from reports.build import write_reports

    args.methods, args.suite = methods_and_suite(args.methods, args.suite)
    suite = load_suite(args.suite)
    if args.limit is not None and args.limit < 1:
        raise BenchError(f"--limit must be >= 1, got {args.limit}")
    checked_device(args.device)
    if args.threads is not None:
        if args.threads < 1:
            raise BenchError(f"--threads must be >= 1, got {args.threads}")
        import torch
        torch.set_num_threads(args.threads)
    if args.workers < 1:
        raise BenchError(f"--workers must be >= 1, got {args.workers}")
    out = args.out or Path("runs") / suite.name
    console = Console(stderr=True)
    console.print(f"[bold]bench run[/bold] {escape(str(args.suite))} → {escape(str(out))}")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress, reporting(_step_reporter(progress)):
        inverting = {}

        def inverted(done, total):  # an image folder's inversion, batch by batch
            if not inverting:
                inverting["task"] = progress.add_task(f"inverting source images ({suite.sources.inversion})",
                                                      total=total)
            progress.update(inverting["task"], completed=done)

        def advance(cell):
            progress.update(task, advance=1, description=escape(f"{cell.variant} · {cell.edit}"))

        preparing = {}

        def prepared(job, error, total):
            if not preparing:
                preparing["task"] = progress.add_task(f"preparing in {args.workers} workers", total=total)
            failed = " (failed)" if error else ""
            progress.update(preparing["task"], advance=1,
                            description=escape(f"prepared {job.spec.label} · {job.edit.name}{failed}"))

        try:
            runner = Runner(suite, Path(args.suite), RunOptions(out, args.methods, args.limit, args.device,
                                                                args.resume, args.prepare_cache, args.workers),
                            on_sources=inverted, names_checked=True)  # load_suite checked the names
            pending = runner.pending()
            total = len(runner.cells())
            task = progress.add_task("cells", total=total, completed=total - len(pending))
            store = runner.run(on_cell=advance, on_prepared=prepared)
        except KeyboardInterrupt:
            progress.stop()
            console.print(f"finished cells and preparations are kept in {escape(str(out))}; continue with the "
                          "same command and --resume", soft_wrap=True)
            raise
    selected = runner.cells()  # this session's cells (--methods): failures of other variants are not its result
    failed = store.failed_cells(cell.cell_id for cell in selected)
    paths = write_reports(out)
    print(paths["markdown_text"])
    console.print(f"report: {escape(str(paths['html']))}")
    if len(failed):  # exit 1: a run with failed cells is not a complete result
        first = failed.iloc[0]
        console.print(f"[red]{len(failed)} of {len(selected)} cell(s) failed[/red]; first: "
                      + escape(f"{first['cell_id']}: {first['error']}; all are listed under \"Failed cells\" in "
                               f"{Path(paths['md'])} and in {Path(paths['json'])} (failed_cells); rerun with "
                               "--resume to run them again"), soft_wrap=True)
        return 1
    return 0


def _step_reporter(progress):
    """A `bench.progress` hook showing a method's current long loop as one transient bar."""
    current = {}

    def stepped(description: str, done: int, total: int) -> None:
        if current.get("description") != description:
            if "task" in current:
                progress.remove_task(current["task"])
            current.update(description=description, task=progress.add_task(escape(description), total=total))
        progress.update(current["task"], completed=done, visible=done < total)

    return stepped
