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


def report_json(run_dir: Path) -> dict:
    """{"suite": …, "rows": [{"method", "variant", "metric", "mean", "ci95": [lo, hi], "n"}], …}."""
    store, manifest = load_run(run_dir)
    records = store.records()
    cells = store.cells()
    return {"suite": manifest["suite"], "suite_hash": manifest["suite_hash"], "device": manifest["device"],
            "git_commit": manifest["git_commit"], "rows": summarize(records),
            "failed_cells": [{"cell": r.cell_id, "error": r.error} for r in cells.itertuples() if r.status == "error"],
            "notes": manifest.get("metric_notes", {})}


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
    render = markdown_table if fmt == "md" else latex_table
    parts = []
    title = f"Suite {report['suite']} ({report['suite_hash']}), device {report['device']}"
    sections = [("Quality", quality), ("Cost", cost)]
    for name, metrics in sections:
        if not metrics:
            continue
        if fmt == "md":
            parts.append(f"## {name}\n\n" + markdown_table(rows, variants, metrics, notes if name == "Quality" else None))
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
    if fmt == "md":
        header = f"# {title}\n\nmean ± half-width of the 95% bootstrap CI; ↑/↓ higher/lower is better; best in bold.\n"
        return header + "\n" + "\n".join(parts)
    return "\n".join(parts)


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
