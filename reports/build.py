"""A run directory → every report: JSON, Markdown, LaTeX, plots, image grids and one self-contained HTML page.

Everything is derived from the store and the images, so a report can be rebuilt at any time (`bench report`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from bench.errors import BenchError
from bench.store import RunStore
from reports.aggregate import metric_info, summarize
from reports.tables import latex_table, markdown_table

REPORT_DIR = "report"


def load_run(run_dir: Path) -> tuple[RunStore, dict]:
    run_dir = Path(run_dir)
    if not (run_dir / "manifest.json").exists():
        raise BenchError(f"{run_dir} is not a run directory (no manifest.json); run `bench run SUITE --out "
                         f"{run_dir}` first")
    store = RunStore(run_dir)
    return store, store.read_manifest()


def by_edit(records) -> list[dict]:
    """Summary rows per (method, variant, edit, metric); with several seeds each row also carries `seed_range`,
    the lowest and highest of its per-seed means (how much a conclusion moves with the seed)."""
    rows = summarize(records, by=("method", "variant", "edit"))
    if records.empty or records["seed"].nunique() < 2:
        return rows
    keys = ["method", "variant", "edit", "metric"]
    per_seed = records.groupby([*keys, "seed"])["value"].mean().groupby(keys).agg(["min", "max"])
    for row in rows:
        low, high = per_seed.loc[tuple(row[k] for k in keys)]
        row["seed_range"] = [float(low), float(high)]
    return rows


def report_json(run_dir: Path) -> dict:
    """{"suite": …, "rows": [{"method", "variant", "metric", "mean", "ci95": [lo, hi], "n"}],
    "by_edit": [the same with "edit" (and "seed_range" with several seeds)], …}."""
    store, manifest = load_run(run_dir)
    records = store.records()
    cells = store.cells()
    return {"suite": manifest["suite"], "suite_hash": manifest["suite_hash"], "device": manifest["device"],
            "git_commit": manifest["git_commit"], "rows": summarize(records), "by_edit": by_edit(records),
            "failed_cells": [{"cell": r.cell_id, "error": r.error} for r in cells.itertuples() if r.status == "error"],
            "notes": manifest.get("metric_notes", {}), "calibration_ms": manifest.get("calibration_ms")}


def _ordered(report: dict, manifest: dict) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    present = {(r["method"], r["variant"]) for r in report["rows"]}
    variants = [tuple(v) for v in manifest.get("variants", []) if tuple(v) in present]
    variants += sorted(present - set(variants))
    metrics = list(dict.fromkeys(r["metric"] for r in report["rows"]))
    quality = [m for m in metrics if metric_info(m).kind == "quality"]
    cost = [m for m in metrics if metric_info(m).kind == "cost"]
    return variants, quality, cost


def tables(report: dict, manifest: dict, fmt: str) -> str:
    """The main table (quality metrics), the cost table, and one ablation table per method family."""
    variants, quality, cost = _ordered(report, manifest)
    rows = report["rows"]
    notes = dict(report.get("notes", {}))
    for metric in ("fid", "kid"):
        if metric in quality:
            counts = sorted({int(r["mean"]) for r in rows
                             if r["metric"] == f"{metric}_n" and not math.isnan(r["mean"])})
            sizes = ", ".join(map(str, counts)) if counts else "?"
            notes[metric] = (f"computed per (edit, seed) set of {sizes} edited images ({metric}_n); small-sample "
                             f"{metric.upper()} is biased upwards, so compare only at equal {metric}_n")
    cost_notes, prepare_notes = {}, []
    if manifest.get("prepare_cache"):
        prepare_notes.append(f"prepared states shared by runs in {manifest['prepare_cache']}: a state restored from "
                             f"there reports the time and memory measured when it was made")
    workers = manifest.get("prepare_workers", 1)
    if workers > 1:
        prepare_notes.append(f"with --workers {workers} the per-edit preparations (mapper training, NADA) ran up to "
                             f"{workers} at a time in processes of {manifest['prepare_worker_threads']} thread(s): "
                             f"each such time is one preparation's, measured beside the others")
    if prepare_notes and "latency_prepare_s" in cost:
        cost_notes["latency_prepare_s"] = "; ".join(prepare_notes)
    render = markdown_table if fmt == "md" else latex_table
    parts = []
    title = f"Suite {report['suite']} ({report['suite_hash']}), device {report['device']}"
    sections = [("Quality", quality), ("Cost", cost)]
    for name, metrics in sections:
        if not metrics:
            continue
        if fmt == "md":
            parts.append(f"## {name}\n\n" + markdown_table(rows, variants, metrics,
                                                            notes if name == "Quality" else cost_notes))
        else:
            parts.append(render(rows, variants, metrics, caption=f"{name}. {title}"))
    families = {}
    for method, variant in variants:
        families.setdefault(method, []).append((method, variant))
    for family, members in families.items():
        if len(members) < 2:
            continue
        if fmt == "md":
            parts.append(f"## Ablation: {family}\n\n" + markdown_table(rows, members, quality + cost))
        else:
            parts.append(render(rows, members, quality + cost, caption=f"Ablation of {family}. {title}"))
    parts += _per_edit_tables(report, variants, quality, fmt, title, manifest.get("edits", []))
    if fmt == "md":
        header = f"# {title}\n\nmean ± half-width of the 95% bootstrap CI; ↑/↓ higher/lower is better; best in bold.\n"
        return header + "\n" + "\n".join(parts)
    return "\n".join(parts)


def _per_edit_tables(report: dict, variants: list[tuple[str, str]], quality: list[str], fmt: str,
                     title: str, suite_order: list[str]) -> list[str]:
    """One table per scored quality metric with one column per edit (suites with several edits), edits in the
    suite's order."""
    rows = report.get("by_edit", [])
    present = set(r["edit"] for r in rows)
    edits = [e for e in suite_order if e in present] + sorted(present - set(suite_order))
    if len(edits) < 2:
        return []
    seeds = any("seed_range" in r for r in rows)
    parts = []
    for metric in quality:
        if metric_info(metric).higher_is_better is None:
            continue  # counts and info columns
        metric_rows = [r for r in rows if r["metric"] == metric]
        if fmt == "md":
            note = " (mean ± CI [lowest, highest per-seed mean])" if seeds else ""
            parts.append(f"## By edit: {metric}{note}\n\n"
                         + markdown_table(metric_rows, variants, edits, column_key="edit", metric=metric))
        else:
            parts.append(latex_table(metric_rows, variants, edits, caption=f"{metric} by edit. {title}",
                                     column_key="edit", metric=metric))
    return parts


def write_reports(run_dir: Path) -> dict:
    """Write run_dir/report/{report.json, report.md, report.tex, …, index.html}; returns their paths."""
    run_dir = Path(run_dir)
    out = run_dir / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    _, manifest = load_run(run_dir)
    report = report_json(run_dir)
    markdown = tables(report, manifest, "md")
    paths = {"json": out / "report.json", "md": out / "report.md", "latex": out / "report.tex"}
    paths["json"].write_text(json.dumps(report, indent=2) + "\n")
    paths["md"].write_text(markdown)
    paths["latex"].write_text(tables(report, manifest, "latex"))
    from reports.grids import write_grids
    from reports.html import write_html
    from reports.plots import write_plots

    grids = write_grids(run_dir, out, manifest)
    plots = write_plots(run_dir, out, report)
    paths["html"] = write_html(out / "index.html", report, markdown, grids, plots)
    paths["markdown_text"] = markdown
    return paths
