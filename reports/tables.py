"""Summary rows → tables: Markdown and LaTeX (booktabs), one row per method variant, one column per metric,
"mean ± half-width of the 95% CI", ↑/↓ per metric, the best value of each column in bold (every row that shows it,
at the table's precision; none when every ranked row shows the same value). The unedited source and
the reference methods (`REFERENCE_METHODS`) are shown but never bold: they win preservation metrics by
construction. A cell without a CI (n < 2) shows its mean and "(n=1)"; a `legend` (what the ± is over) and the
metrics' notes follow each table in both formats.

A per-edit table (`column_key="edit"`) shows one metric with one column per edit; its rows may carry `seed_range`
(the lowest and highest per-seed mean), which the Markdown form prints as "[lo, hi]" after the CI."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from reports.aggregate import metric_info

# Methods that are references, not contenders: `source` returns its inputs unedited (identity 1, LPIPS 0 by
# construction) and `synthface_oracle` writes the ground-truth edit. The method registry has no flag for this,
# so they are named here.
REFERENCE_METHODS = ("source", "synthface_oracle")
FORMATS = ("md", "latex")


def _fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    magnitude = abs(value)
    if 0 < magnitude < 0.001:
        return f"{value:.2g}"
    if magnitude >= 100:
        return f"{value:.1f}"
    if magnitude >= 10:
        return f"{value:.2f}"
    return f"{value:.3f}"


def pivot(rows: Sequence[dict], variants: Sequence[tuple[str, str]], columns: Sequence[str],
          column_key: str = "metric") -> dict:
    """{(method, variant): {column: row}} where a row's column is its `column_key` value (metric or edit)."""
    table: dict[tuple[str, str], dict[str, dict]] = {v: {} for v in variants}
    for row in rows:
        key = (row["method"], row["variant"])
        if key in table and row.get(column_key) in columns:
            table[key][row[column_key]] = row
    return table


def _undefined(value: float | None) -> bool:
    """NaN in a report built in memory, None (null) in one read back from report.json."""
    return value is None or math.isnan(value)


def _best(table: dict, column: str, metric: str) -> set[tuple[str, str]]:
    """The ranked variants that show the best value of `column`: every one whose value reads the same as the best
    at the table's precision (a tie is bold in every tied row); none when every ranked variant reads the same
    (nothing is better than anything) or fewer than two are ranked."""
    info = metric_info(metric)
    candidates = [(key, cells[column]["mean"]) for key, cells in table.items()
                  if column in cells and not _undefined(cells[column]["mean"]) and key[0] not in REFERENCE_METHODS]
    if info.higher_is_better is None or len(candidates) < 2:
        return set()
    chooser = max if info.higher_is_better else min
    shown = {key: _fmt(value) for key, value in candidates}
    best = shown[chooser(candidates, key=lambda kv: kv[1])[0]]
    if all(text == best for text in shown.values()):
        return set()
    return {key for key, text in shown.items() if text == best}


def _arrow(metric: str) -> str:
    higher = metric_info(metric).higher_is_better
    return "" if higher is None else (" ↑" if higher else " ↓")


def _cells(table: dict, column: str, metric: str, seed_range: bool = False
           ) -> dict[tuple[str, str], tuple[str, bool]]:
    best = _best(table, column, metric)
    out = {}
    for key, cells in table.items():
        row = cells.get(column)
        if row is None:
            out[key] = ("–", False)
            continue
        low, high = row["ci95"]
        half = (high - low) / 2 if not (_undefined(low) or _undefined(high)) else float("nan")
        text = _fmt(row["mean"]) + ("" if math.isnan(half) or half == 0 else f" ± {_fmt(half)}")
        if math.isnan(half) and row.get("n") == 1:
            text += " (n=1)"  # a single value: no interval
        if seed_range and row.get("seed_range"):
            text += " [{}, {}]".format(*(_fmt(v) for v in row["seed_range"]))
        out[key] = (text, key in best)
    return out


def _columns(table: dict, columns: Sequence[str], metric: str | None, seed_range: bool = False) -> dict:
    """column → {variant key: (text, bold)}; `metric` None: each column is its own metric."""
    return {c: _cells(table, c, metric or c, seed_range) for c in columns}


def _md_escape(text: str) -> str:
    """A Markdown table cell: `|` would end the cell (GitHub-flavoured Markdown reads `\\|` as a literal pipe)."""
    return str(text).replace("|", r"\|")


def markdown_table(rows: Sequence[dict], variants: Sequence[tuple[str, str]], metrics: Sequence[str],
                   notes: dict[str, str] | None = None, column_key: str = "metric", metric: str | None = None,
                   legend: str = "") -> str:
    """`column_key="edit"` with one `metric`: the columns are edits (`metrics` lists them) of that metric;
    `legend` is set in italics under the table, before the notes."""
    table = pivot(rows, variants, metrics, column_key)
    columns = _columns(table, metrics, metric, seed_range=column_key != "metric")
    header = "| method | variant | " + " | ".join(_md_escape(f"{m}{_arrow(metric or m)}") for m in metrics) + " |"
    lines = [header, "|" + "---|" * (len(metrics) + 2)]
    for key in variants:
        cells = [f"**{t}**" if bold else t for t, bold in (columns[m][key] for m in metrics)]
        lines.append(f"| {_md_escape(key[0])} | {_md_escape(key[1])} | " + " | ".join(cells) + " |")
    if legend:
        lines.append(f"\n_{legend}_")
    for metric, note in (notes or {}).items():
        lines.append(f"\n_{metric}: {note}_")
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  **{char: "\\" + char for char in "&%$#_{}"}}
_LATEX_PATTERN = re.compile("|".join(map(re.escape, _LATEX_SPECIAL)))


def _latex_escape(text: str) -> str:
    """Text mode LaTeX, every special character replaced in one pass (a replacement is never escaped again)."""
    return _LATEX_PATTERN.sub(lambda match: _LATEX_SPECIAL[match.group()], str(text))


def latex_table(rows: Sequence[dict], variants: Sequence[tuple[str, str]], metrics: Sequence[str],
                caption: str = "", column_key: str = "metric", metric: str | None = None,
                notes: dict[str, str] | None = None, legend: str = "") -> str:
    """As `markdown_table`; `legend` and `notes` ({metric: text}) are set in small type below the tabular."""
    table = pivot(rows, variants, metrics, column_key)
    columns = _columns(table, metrics, metric)
    arrows = {m: _arrow(metric or m).strip().replace("↑", r"$\uparrow$").replace("↓", r"$\downarrow$")
              for m in metrics}
    lines = [r"\begin{table}[t]", r"\centering", r"\begin{tabular}{ll" + "c" * len(metrics) + "}", r"\toprule",
             "Method & Variant & " + " & ".join(f"{_latex_escape(m)} {arrows[m]}".strip() for m in metrics)
             + r" \\", r"\midrule"]
    for key in variants:
        cells = []
        for metric in metrics:
            text, bold = columns[metric][key]
            text = text.replace("±", r"$\pm$").replace("–", "--")
            cells.append(rf"\textbf{{{text}}}" if bold else text)
        lines.append(f"{_latex_escape(key[0])} & {_latex_escape(key[1])} & " + " & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if legend:
        legend = _latex_escape(legend).replace("±", r"$\pm$")
        lines.append(rf"{{\par\footnotesize {legend}\par}}")
    for name, note in (notes or {}).items():
        lines.append(rf"{{\par\footnotesize\textit{{{_latex_escape(name)}}}: {_latex_escape(note)}\par}}")
    if caption:
        lines.append(rf"\caption{{{_latex_escape(caption)}}}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def render(fmt: str, rows: Sequence[dict], variants: Sequence[tuple[str, str]], columns: Sequence[str],
           heading: str, caption: str, notes: dict[str, str] | None = None, column_key: str = "metric",
           metric: str | None = None, legend: str = "") -> str:
    """One table in `fmt`: "md" a `## heading` section, "latex" a table float captioned `caption`; either with its
    `legend` and the `notes` of the metrics it shows (its columns, or `metric` for a table whose columns are
    edits)."""
    from bench.errors import BenchError

    shown = set(columns) if column_key == "metric" else {metric}
    own = {name: note for name, note in (notes or {}).items() if name in shown}
    if fmt == "md":
        return f"## {heading}\n\n" + markdown_table(rows, variants, columns, own, column_key, metric, legend)
    if fmt == "latex":
        return latex_table(rows, variants, columns, caption, column_key, metric, own, legend)
    raise BenchError(f"table format {fmt!r}; valid formats: {', '.join(FORMATS)}")
