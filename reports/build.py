"""A run directory → every report: JSON, Markdown, LaTeX, plots, image grids and one self-contained HTML page.

Everything is derived from the store and the images, so a report can be rebuilt at any time (`bench report`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.store import RunStore
from reports.aggregate import TIME_UNITS, WEIGHT, at_latest_speed, metric_info, one_per_cell, summarize, weighted_mean
from reports.tables import FailedEdits, latex_header, render

REPORT_DIR = "report"


def load_run(run_dir: Path) -> tuple[RunStore, dict]:
    """The store and manifest of a run directory; a BenchError (nothing created) for anything else."""
    run_dir = Path(run_dir)
    if run_dir.is_file():
        raise BenchError(f"{run_dir} is a file, not a run directory (the folder `bench run` wrote, e.g. runs/smoke)")
    if not (run_dir / "manifest.json").is_file():
        raise BenchError(f"{run_dir} is not a run directory (no manifest.json); run `bench run SUITE --out "
                         f"{run_dir}` first")
    store = RunStore(run_dir)
    try:
        return store, store.read_manifest()
    except json.JSONDecodeError as exc:
        raise BenchError(f"{run_dir / 'manifest.json'}:{exc.lineno}: not valid JSON ({exc.msg})") from None


def by_edit(records) -> list[dict]:
    """Summary rows per (method, variant, edit, metric); with several seeds each row also carries `seed_range`,
    the lowest and highest of its per-seed means (how much a conclusion moves with the seed)."""
    records = one_per_cell(records)  # once: summarize takes the reduced records as they are
    rows = summarize(records, by=("method", "variant", "edit"))
    if records.empty or records["seed"].nunique() < 2:
        return rows
    keys = ["method", "variant", "edit", "metric"]
    per_seed = records.groupby([*keys, "seed"])[["value", WEIGHT]].apply(weighted_mean)
    per_seed = per_seed.groupby(keys).agg(["min", "max"])
    for row in rows:
        low, high = per_seed.loc[tuple(row[k] for k in keys)]
        row["seed_range"] = [float(low), float(high)]
    return rows


def set_sizes(records) -> dict[str, list[int]]:
    """The distinct sizes of the FID/KID sets, read from the per-set records: {"fid_n": [7, 8], …}."""
    if records.empty:
        return {}
    counts = records[records["metric"].isin(["fid_n", "kid_n"])].dropna(subset=["value"])
    return {metric: sorted({int(round(v)) for v in group["value"]}) for metric, group in counts.groupby("metric")}


def report_json(run_dir: Path) -> dict:
    """{"suite": …, "suite_hash": …, "limit": the run's --limit (None: every source), "rows": [{"method",
    "variant", "metric", "mean", "ci95": [lo, hi], "n", "n_cells"}], "by_edit": [the same with "edit" (and
    "seed_range" with several seeds)], "set_sizes": {"fid_n": [16]}, …}; `n` counts the values the mean rests on
    (a per-sample metric's images), `n_cells` the cells the CI is over (its (edit, seed) cells; one: the CI is over
    the images, `reports.aggregate`); ci95 is [NaN, NaN] where n < 2 (null once written with `dumps`, as an
    undefined mean is). The latencies of a resumed run are all at the latest session's speed, the
    one `calibration_ms` gives (`latency_cells_rescaled` cells were timed in earlier sessions and rescaled)."""
    store, manifest = load_run(run_dir)
    cells = store.cells()
    records, rescaled = at_latest_speed(store.records(), cells, manifest)
    return {"suite": manifest["suite"], "suite_hash": manifest["suite_hash"], "limit": manifest.get("limit"),
            "device": manifest["device"],
            "git_commit": manifest["git_commit"], "rows": summarize(records), "by_edit": by_edit(records),
            "failed_cells": [{"cell": r.cell_id, "error": r.error, "method": r.method, "variant": r.variant,
                              "edit": r.edit} for r in cells.itertuples() if r.status == "error"],
            "notes": manifest.get("metric_notes", {}), "calibration_ms": manifest.get("calibration_ms"),
            "latency_cells_rescaled": rescaled, "set_sizes": set_sizes(records)}


def json_safe(value: Any) -> Any:
    """`value` with every NaN or infinite float replaced by None, so that it is written as JSON's null: `NaN` and
    `Infinity` are not JSON, and strict readers (jq, JavaScript, most languages' parsers) refuse them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def dumps(report: dict) -> str:
    """A report (or baseline) as strict JSON: undefined values are null (`allow_nan=False` to be sure)."""
    return json.dumps(json_safe(report), indent=2, allow_nan=False) + "\n"


def _ordered(report: dict, manifest: dict) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    present = {(r["method"], r["variant"]) for r in report["rows"]}
    variants = [tuple(v) for v in manifest.get("variants", []) if tuple(v) in present]
    variants += sorted(present - set(variants))
    metrics = list(dict.fromkeys(r["metric"] for r in report["rows"]))
    quality = [m for m in metrics if metric_info(m).kind == "quality"]
    cost = [m for m in metrics if metric_info(m).kind == "cost"]
    return variants, quality, cost


def _sizes(report: dict, metric: str) -> list[int] | None:
    """The set sizes of `metric` ("fid"/"kid"): from the report's per-set records, else (a report written before
    `set_sizes` existed) from summary rows whose values were all equal; None when unknown."""
    known = report.get("set_sizes", {}).get(f"{metric}_n")
    if known is not None:
        return list(known)
    sizes = set()
    for row in report["rows"]:
        if row["metric"] != f"{metric}_n" or row["mean"] is None or math.isnan(row["mean"]):
            continue
        low, high = row["ci95"]
        if row.get("n") != 1 and not low == high == row["mean"]:
            return None  # sizes that differ: their mean is not one of them
        sizes.add(int(round(row["mean"])))
    return sorted(sizes) or None


def _set_note(metric: str, sizes: list[int] | None) -> str:
    if not sizes:
        size = f"set of edited images (its size in the {metric}_n column)"
    elif len(sizes) == 1:
        size = f"set of {sizes[0]} edited images ({metric}_n)"
    else:
        size = f"sets of {', '.join(map(str, sizes[:-1]))} and {sizes[-1]} edited images ({metric}_n)"
    if metric == "fid":
        caveat = "small-sample FID is biased upwards, so compare only at equal fid_n"
    else:
        caveat = "KID is unbiased but has a high variance at small kid_n, so read it with its CI"
    return f"computed per (edit, seed) {size}; {caveat}"


CI_LEGEND = "± half-width of the 95% Student-t CI"


def ci_legend(metrics: list[str], seeds: bool | None = None) -> str:
    """What the ± of a table is over, for the line under it. `metrics`: the metrics it shows; `seeds`: None for a
    table of variants, for a per-edit table (of one metric) whether the suite has several seeds (its cells there)."""
    infos = [metric_info(m) for m in metrics]
    per_image = any(i.kind == "quality" and i.per_sample for i in infos)
    per_set = any(i.kind == "quality" and not i.per_sample for i in infos)
    if seeds is None:
        parts = [("per-image metrics over the (edit, seed) cells' means, centred on the pooled per-image mean (the "
                  "images of a cell share its one preparation); a row of one cell: over its images, conditional on "
                  "that preparation") if per_image else "",
                 "set metrics over the cells' values" if per_set else "",
                 "costs over the cells' measurements" if any(i.kind == "cost" for i in infos) else ""]
        return f"{CI_LEGEND}: " + "; ".join(p for p in parts if p)
    if not per_image:
        return f"{CI_LEGEND} over the seeds' values" if seeds else "one value per edit (one seed): no CI"
    if seeds:
        return (f"{CI_LEGEND} over the seeds' means (one (edit, seed) cell each), centred on the pooled per-image "
                "mean; a row of one seed: over its images, conditional on that seed's preparation")
    return (f"{CI_LEGEND} over the edit's images: one (edit, seed) cell, so conditional on its one preparation (the "
            "spread between seeds is not in it)")


def failed_groups(report: dict, manifest: dict) -> dict[tuple[str, str], FailedEdits]:
    """{(method, variant): its edits with a failed cell, of how many} from the report's failed cells (entries of a
    report written before they carried method, variant and edit are skipped)."""
    suite_edits = list(manifest.get("edits") or [])
    seen: dict[tuple[str, str], set[str]] = {}
    for row in report.get("by_edit") or []:
        seen.setdefault((row["method"], row["variant"]), set()).add(row["edit"])
    lost: dict[tuple[str, str], set[str]] = {}
    for cell in report.get("failed_cells") or []:
        if all(cell.get(k) is not None for k in ("method", "variant", "edit")):
            lost.setdefault((cell["method"], cell["variant"]), set()).add(cell["edit"])
    out = {}
    for key, edits in lost.items():
        every = suite_edits or sorted(seen.get(key, set()) | edits)
        ordered = [e for e in every if e in edits] + sorted(edits - set(every))
        out[key] = FailedEdits(tuple(ordered), max(len(every), len(ordered)))
    return out


NO_FINISHED_CELLS = "No finished cells yet"


def no_cells_note(report: dict) -> str:
    """Why a report has no table: no cell finished (all failed, or none recorded yet); "" when some did."""
    if report["rows"]:
        return ""
    failed = len(report.get("failed_cells") or [])
    if failed:
        return (f"{NO_FINISHED_CELLS}: all {failed} recorded cell(s) failed (listed under Failed cells); fix the "
                "cause and run them again with bench run --resume.")
    return (f"{NO_FINISHED_CELLS}: the run has recorded no cell; start or continue it with bench run SUITE --out "
            "DIR --resume.")


TABLE_KEY = ("± is the half-width of the 95% CI of the mean (what it is over: the line under each table); ↑/↓: "
             "higher/lower is better; bold: the best ranked value (reference methods and rows marked † for failed "
             "cells are not ranked).")


def tables(report: dict, manifest: dict, fmt: str) -> str:
    """The main table (quality metrics), the cost table, one ablation table per method family and one table per
    edit-scored metric, in `fmt` ("md" or "latex"); every table carries the notes of the metrics it shows, and the
    variants with failed cells are marked (`failed_groups`). A run with no finished cell gets a line that says so."""
    variants, quality, cost = _ordered(report, manifest)
    failed = failed_groups(report, manifest)
    rows = report["rows"]
    notes = dict(report.get("notes", {}))
    for metric in ("fid", "kid"):
        if metric in quality:
            note = _set_note(metric, _sizes(report, metric))
            notes[metric] = f"{notes[metric]}; {note}" if notes.get(metric) else note
    prepare_notes = []
    if manifest.get("prepare_cache"):
        prepare_notes.append(f"prepared states shared by runs in {manifest['prepare_cache']}: a state restored from "
                             f"there reports the time and memory measured when it was made")
    workers = manifest.get("prepare_workers", 1)
    if workers > 1:
        threads = manifest.get("prepare_worker_threads")  # absent from manifests written before it was recorded
        processes = f"in processes of {threads} thread(s)" if threads else "in separate processes"
        prepare_notes.append(f"with --workers {workers} the per-edit preparations (mapper training, NADA) ran up to "
                             f"{workers} at a time {processes}: each such time is one preparation's, measured beside "
                             "the others")
    if prepare_notes and "latency_prepare_s" in cost:
        notes["latency_prepare_s"] = "; ".join(prepare_notes)
    if report.get("latency_cells_rescaled"):
        rescaled = (f"{report['latency_cells_rescaled']} cell(s) timed in an earlier session of this resumed run, "
                    "rescaled to the latest session's machine speed (× its calibration_ms / theirs)")
        for metric in cost:
            if metric_info(metric).unit in TIME_UNITS:
                notes[metric] = f"{notes[metric]}; {rescaled}" if notes.get(metric) else rescaled
    title = f"Suite {report['suite']} ({report['suite_hash']}), device {report['device']}"
    parts = []

    def table(heading: str, caption: str, table_rows, members, columns, **options) -> None:
        key = f" {TABLE_KEY}" if not parts else ""  # the first caption says how to read every table
        parts.append(render(fmt, table_rows, members, columns, heading=heading, caption=f"{caption}. {title}.{key}",
                            notes=notes, failed=failed, **options))

    for name, metrics in (("Quality", quality), ("Cost", cost)):
        if metrics:
            table(name, name, rows, variants, metrics, legend=ci_legend(metrics))
    families = {}
    for method, variant in variants:
        families.setdefault(method, []).append((method, variant))
    for family, members in families.items():
        if len(members) >= 2:
            table(f"Ablation: {family}", f"Ablation of {family}", rows, members, quality + cost,
                  legend=ci_legend(quality + cost))
    _per_edit_tables(report, variants, quality, manifest.get("edits", []), table)
    empty = no_cells_note(report)
    if fmt == "md":
        header = (f"# {title}\n\nmean ± half-width of the 95% Student-t CI of the mean, over what the line under "
                  "each table says: for a per-image metric a variant's (edit, seed) cells, not its images, as the "
                  "images of a cell share one preparation (no ± where n < 2 or all values are equal; \"n=1\" marks "
                  "a single value); ↑/↓ higher/lower is better; best in bold (the unedited source, reference "
                  "methods and rows marked † for failed cells are not ranked).\n")
        return header + "\n" + (f"**{empty}**\n" if empty else "") + "\n".join(parts)
    from reports.tables import _latex_escape

    body = rf"\paragraph{{{_latex_escape(empty)}}}" + "\n" if empty else ""
    return latex_header(report["suite"]) + body + "\n".join(parts)


FAILED_SHOWN = 20  # failed cells listed in report.md / report.tex (report.json and the HTML page list them all)


def failed_cells_note(report: dict, fmt: str) -> str:
    """The failed cells of a run (their values are missing from every table), for the end of report.md and
    report.tex (the HTML page lists them itself); "" when none failed."""
    from reports.tables import _latex_escape

    failed = report.get("failed_cells") or []
    if not failed:
        return ""
    shown = failed[:FAILED_SHOWN]
    more = (f"{len(failed) - FAILED_SHOWN} more in report.json (failed_cells)" if len(failed) > FAILED_SHOWN
            else "")
    heading = f"Failed cells ({len(failed)})"
    text = "Their values are missing from the tables above; bench run --resume runs them again."
    if fmt == "md":
        lines = [f"- {f['cell']}: {f['error']}" for f in shown] + ([f"- … {more}"] if more else [])
        return f"\n## {heading}\n\n{text}\n\n" + "\n".join(lines) + "\n"
    items = [rf"\item {_latex_escape(f['cell'])}: {_latex_escape(f['error'])}" for f in shown]
    if more:
        items.append(rf"\item \ldots{{}} {_latex_escape(more)}")
    return "\n".join([rf"\paragraph{{{heading}.}} {_latex_escape(text)}", r"\begin{itemize}", *items,
                       r"\end{itemize}"]) + "\n"


def _per_edit_tables(report: dict, variants: list[tuple[str, str]], quality: list[str], suite_order: list[str],
                     table) -> None:
    """One table per scored quality metric with one column per edit (suites with several edits), edits in the
    suite's order, each added with `table(heading, caption, rows, variants, edits, …)`."""
    rows = report.get("by_edit", [])
    present = set(r["edit"] for r in rows)
    edits = [e for e in suite_order if e in present] + sorted(present - set(suite_order))
    if len(edits) < 2:
        return
    seeds = any("seed_range" in r for r in rows)
    for metric in quality:
        if metric_info(metric).higher_is_better is None:
            continue  # counts and info columns
        metric_rows = [r for r in rows if r["metric"] == metric]
        note = " (mean ± CI [lowest, highest per-seed mean])" if seeds else ""
        table(f"By edit: {metric}{note}", f"{metric} by edit", metric_rows, variants, edits, column_key="edit",
              metric=metric, legend=ci_legend([metric], seeds))


def write_reports(run_dir: Path) -> dict:
    """Write run_dir/report/{report.json, report.md, report.tex, …, index.html}; returns their paths."""
    run_dir = Path(run_dir)
    out = run_dir / REPORT_DIR
    store, manifest = load_run(run_dir)  # first: a directory that holds no run gets no report folder either
    out.mkdir(parents=True, exist_ok=True)
    report = report_json(run_dir)
    markdown = tables(report, manifest, "md")
    paths = {"json": out / "report.json", "md": out / "report.md", "latex": out / "report.tex"}
    paths["json"].write_text(dumps(report))
    paths["md"].write_text(markdown + failed_cells_note(report, "md"))
    paths["latex"].write_text(tables(report, manifest, "latex") + failed_cells_note(report, "latex"))
    from reports.grids import failed_sources, write_grids
    from reports.html import write_html
    from reports.plots import write_plots

    grids = write_grids(run_dir, out, manifest, failed_sources(store.cells(), store.records(),
                                                                 manifest.get("batch_size")))
    plots = write_plots(run_dir, out, report, _ordered(report, manifest)[0])
    paths["html"] = write_html(out / "index.html", report, markdown, grids, plots)
    paths["markdown_text"] = markdown + failed_cells_note(report, "md")
    return paths
