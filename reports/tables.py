"""Summary rows → tables: Markdown and LaTeX (booktabs), one row per method variant, one column per metric,
"mean ± half-width of the 95% CI", ↑/↓ per metric, the best value of each column in bold (every row that shows it,
at the table's precision; none when every ranked row shows the same value). The unedited source and
the reference methods (`REFERENCE_METHODS`) are shown but never bold: they win preservation metrics by
construction. A cell without a CI (n < 2) shows its mean and "(n=1)"; a `legend` (what the ± is over) and the
metrics' notes follow each table in both formats.

A variant with failed cells (`failed`: {(method, variant): FailedEdits}) is averaged over the cells that finished, so
its row is marked "†", a note under the table names the edits, and it is never bold (as a reference method); in a
per-edit table only the columns of its failed edits are marked and unranked.

A per-edit table (`column_key="edit"`) shows one metric with one column per edit; its rows may carry `seed_range`
(the lowest and highest per-seed mean), which the Markdown form prints as "[lo, hi]" after the CI.

LaTeX output is for pdflatex: the fragment needs booktabs and graphicx (`LATEX_PACKAGES`); each tabular is shrunk to
the line width when wider; text is escaped (`_latex_escape`: TeX's special characters, and non-ASCII characters
through `LATEX_UNICODE`), and negative numbers in cells are set in math mode ($-$0.108)."""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from typing import NamedTuple

from reports.aggregate import metric_info

# Methods that are references, not contenders: `source` returns its inputs unedited (identity 1, LPIPS 0 by
# construction) and `synthface_oracle` writes the ground-truth edit. The method registry has no flag for this,
# so they are named here.
REFERENCE_METHODS = ("source", "synthface_oracle")
FORMATS = ("md", "latex")
FAILED_MARK = "†"


class FailedEdits(NamedTuple):
    """The edits of a variant with at least one failed cell, in the suite's order, and how many edits it has."""

    edits: tuple[str, ...]
    total: int


Failed = dict[tuple[str, str], FailedEdits]


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


def _best(table: dict, column: str, metric: str, incomplete: frozenset = frozenset()) -> set[tuple[str, str]]:
    """The ranked variants that show the best value of `column`: every one whose value reads the same as the best
    at the table's precision (a tie is bold in every tied row); none when every ranked variant reads the same
    (nothing is better than anything) or fewer than two are ranked. Reference methods and the `incomplete`
    variants (failed cells in this column) are not ranked."""
    info = metric_info(metric)
    candidates = [(key, cells[column]["mean"]) for key, cells in table.items()
                  if column in cells and not _undefined(cells[column]["mean"]) and key[0] not in REFERENCE_METHODS
                  and key not in incomplete]
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


def _cells(table: dict, column: str, metric: str, seed_range: bool = False, incomplete: frozenset = frozenset(),
           mark: bool = False) -> dict[tuple[str, str], tuple[str, bool]]:
    """{variant key: (text, bold)} of one column; `incomplete` variants are not ranked and, with `mark`, their
    text ends in FAILED_MARK (a per-edit table's failed edit)."""
    best = _best(table, column, metric, incomplete)
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
    for key in incomplete if mark else ():
        text, bold = out.get(key, ("–", False))
        out[key] = (f"{text} {FAILED_MARK}", bold)
    return out


def _incomplete(failed: Failed | None, column: str, column_key: str) -> frozenset:
    """The variants whose values in `column` miss failed cells: all variants with failures for a metric column,
    those whose failed edits include the column in a per-edit table."""
    return frozenset(key for key, lost in (failed or {}).items() if column_key == "metric" or column in lost.edits)


def _columns(table: dict, columns: Sequence[str], metric: str | None, seed_range: bool = False,
             failed: Failed | None = None, column_key: str = "metric") -> dict:
    """column → {variant key: (text, bold)}; `metric` None: each column is its own metric."""
    return {c: _cells(table, c, metric or c, seed_range, _incomplete(failed, c, column_key), column_key == "edit")
            for c in columns}


def _label(key: tuple[str, str], failed: Failed | None) -> str:
    """A row's variant name, marked when the variant has failed cells."""
    return f"{key[1]} {FAILED_MARK}" if key in (failed or {}) else key[1]


def failed_lines(variants: Sequence[tuple[str, str]], failed: Failed | None, column_key: str = "metric") -> list[str]:
    """One line per marked variant of a table: which of its edits have failed cells and what that does to its row."""
    effect = ("its values leave out those cells and it is not ranked (not bold)" if column_key == "metric" else
              "those edits' columns leave out the failed cells and are not ranked")
    lines = []
    for key in variants:
        lost = (failed or {}).get(key)
        if lost:
            lines.append(f"{FAILED_MARK} {key[1]}: cells of {len(lost.edits)} of {lost.total} edit(s) failed "
                         f"({', '.join(lost.edits)}); {effect}")
    return lines


def _md_escape(text: str) -> str:
    """A Markdown table cell: `|` would end the cell (GitHub-flavoured Markdown reads `\\|` as a literal pipe)."""
    return str(text).replace("|", r"\|")


def markdown_table(rows: Sequence[dict], variants: Sequence[tuple[str, str]], metrics: Sequence[str],
                   notes: dict[str, str] | None = None, column_key: str = "metric", metric: str | None = None,
                   legend: str = "", failed: Failed | None = None) -> str:
    """`column_key="edit"` with one `metric`: the columns are edits (`metrics` lists them) of that metric;
    `legend` is set in italics under the table, before the failed variants' lines and the notes."""
    table = pivot(rows, variants, metrics, column_key)
    columns = _columns(table, metrics, metric, column_key != "metric", failed, column_key)
    header = "| method | variant | " + " | ".join(_md_escape(f"{m}{_arrow(metric or m)}") for m in metrics) + " |"
    lines = [header, "|" + "---|" * (len(metrics) + 2)]
    for key in variants:
        cells = [f"**{t}**" if bold else t for t, bold in (columns[m][key] for m in metrics)]
        lines.append(f"| {_md_escape(key[0])} | {_md_escape(_label(key, failed))} | " + " | ".join(cells) + " |")
    if legend:
        lines.append(f"\n_{legend}_")
    for line in failed_lines(variants, failed, column_key):
        lines.append(f"\n_{line}_")
    for metric, note in (notes or {}).items():
        lines.append(f"\n_{metric}: {note}_")
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "|": r"\textbar{}", "<": r"\textless{}", ">": r"\textgreater{}",
                  **{char: "\\" + char for char in "&%$#_{}"}}
# Non-ASCII characters the reports write (arrows, ±, ×, Greek parameter names, subscripts, dashes, quotes) as
# LaTeX that pdflatex sets without extra packages; Latin-1 letters (é, ü, ß, …) stay as they are (LaTeX reads UTF-8
# and sets them); anything else becomes its ASCII compatibility form (NFKD without accents: ō → o, ﬁ → fi) or,
# when it has none, "[U+XXXX]" (visible, never dropped).
LATEX_UNICODE = {
    "±": r"$\pm$", "×": r"$\times$", "·": r"$\cdot$", "÷": r"$\div$", "−": r"$-$", "°": r"$^\circ$",
    "↑": r"$\uparrow$", "↓": r"$\downarrow$", "→": r"$\rightarrow$", "←": r"$\leftarrow$",
    "↔": r"$\leftrightarrow$",
    "≤": r"$\leq$", "≥": r"$\geq$", "≈": r"$\approx$", "≠": r"$\neq$", "∞": r"$\infty$", "√": r"$\surd$",
    "–": "--", "—": "---", "…": r"\ldots{}", "‘": "`", "’": "'", "“": "``", "”": "''", "†": r"\dag{}",
    "\u00a0": "~", "µ": r"$\mu$",
    **{greek: f"$\\{name}$" for greek, name in zip(
        "αβγδεζηθικλμνξπρστυφχψωΓΔΘΛΞΠΣΦΨΩ",
        ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu", "nu",
         "xi", "pi", "rho", "sigma", "tau", "upsilon", "phi", "chi", "psi", "omega", "Gamma", "Delta", "Theta",
         "Lambda", "Xi", "Pi", "Sigma", "Phi", "Psi", "Omega"])},
    **{sub: f"$_{{{digit}}}$" for sub, digit in zip("₀₁₂₃₄₅₆₇₈₉", "0123456789")},
    **{sup: f"$^{{{digit}}}$" for sup, digit in zip("⁰¹²³⁴⁵⁶⁷⁸⁹", "0123456789")},
}
LATIN1_LETTERS = frozenset(chr(c) for c in range(0xC0, 0x100)) - {"×", "÷"}
LATEX_PACKAGES = ("booktabs", "graphicx")  # \toprule/\midrule/\bottomrule; \resizebox
_LATEX_PATTERN = re.compile("|".join(map(re.escape, _LATEX_SPECIAL)) + r"|[^\x00-\x7f]")
_NEGATIVE = re.compile(r"(?<![\w.])-(?=\d)")  # a minus sign before a number (not the one of an exponent: 1e-05)


def _latex_char(char: str) -> str:
    if char in _LATEX_SPECIAL:
        return _LATEX_SPECIAL[char]
    if char in LATEX_UNICODE:
        return LATEX_UNICODE[char]
    if char in LATIN1_LETTERS:
        return char
    parts = [c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c)]
    if parts and all(c.isascii() for c in parts):
        return _latex_escape("".join(parts))  # ﬁ → fi, ō → o
    return f"[U+{ord(char):04X}]"


def _latex_escape(text: str) -> str:
    """Text mode LaTeX, every special and non-ASCII character replaced in one pass (a replacement is never escaped
    again); see LATEX_UNICODE."""
    return _LATEX_PATTERN.sub(lambda match: _latex_char(match.group()), str(text))


def _latex_cell(text: str) -> str:
    """A value cell ("-0.108 ± 0.05", "–" for none) in LaTeX: minus signs in math mode, ± and the dash mapped."""
    return _latex_escape(_NEGATIVE.sub("\N{MINUS SIGN}", text))


def latex_header(suite: str) -> str:
    """The comment at the top of report.tex: what it is and what a document that \\inputs it must load."""
    packages = ",".join(LATEX_PACKAGES)
    return (f"% Tables of suite {suite.splitlines()[0] if suite else ''}, written by `bench report`: a fragment to "
            f"\\input.\n% Needs \\usepackage{{{packages}}} (booktabs for the rules, graphicx for \\resizebox, "
            "which shrinks a\n% table wider than the line). Written for pdflatex: non-ASCII characters are LaTeX "
            "commands.\n\n")


def latex_table(rows: Sequence[dict], variants: Sequence[tuple[str, str]], metrics: Sequence[str],
                caption: str = "", column_key: str = "metric", metric: str | None = None,
                notes: dict[str, str] | None = None, legend: str = "", failed: Failed | None = None) -> str:
    """As `markdown_table`; `legend`, the failed variants' lines and `notes` ({metric: text}) are set in small type
    below the tabular, which is shrunk to the line width when it is wider (needs graphicx)."""
    table = pivot(rows, variants, metrics, column_key)
    columns = _columns(table, metrics, metric, failed=failed, column_key=column_key)
    header = [_latex_escape(f"{m}{_arrow(metric or m)}") for m in metrics]
    lines = [r"\begin{table}[t]", r"\centering",
             r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",
             r"\begin{tabular}{ll" + "c" * len(metrics) + "}", r"\toprule",
             "Method & Variant & " + " & ".join(header) + r" \\", r"\midrule"]
    for key in variants:
        cells = []
        for metric_name in metrics:
            text, bold = columns[metric_name][key]
            text = _latex_cell(text)
            cells.append(rf"\textbf{{{text}}}" if bold else text)
        lines.append(f"{_latex_escape(key[0])} & {_latex_escape(_label(key, failed))} & " + " & ".join(cells)
                     + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}"]
    for line in ([legend] if legend else []) + failed_lines(variants, failed, column_key):
        lines.append(rf"{{\par\footnotesize {_latex_escape(line)}\par}}")
    for name, note in (notes or {}).items():
        lines.append(rf"{{\par\footnotesize\textit{{{_latex_escape(name)}}}: {_latex_escape(note)}\par}}")
    if caption:
        lines.append(rf"\caption{{{_latex_escape(caption)}}}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def render(fmt: str, rows: Sequence[dict], variants: Sequence[tuple[str, str]], columns: Sequence[str],
           heading: str, caption: str, notes: dict[str, str] | None = None, column_key: str = "metric",
           metric: str | None = None, legend: str = "", failed: Failed | None = None) -> str:
    """One table in `fmt`: "md" a `## heading` section, "latex" a table float captioned `caption`; either with its
    `legend`, the lines of its `failed` variants and the `notes` of the metrics it shows (its columns, or `metric`
    for a table whose columns are edits)."""
    from bench.errors import BenchError

    shown = set(columns) if column_key == "metric" else {metric}
    own = {name: note for name, note in (notes or {}).items() if name in shown}
    if fmt == "md":
        return f"## {heading}\n\n" + markdown_table(rows, variants, columns, own, column_key, metric, legend, failed)
    if fmt == "latex":
        return latex_table(rows, variants, columns, caption, column_key, metric, own, legend, failed)
    raise BenchError(f"table format {fmt!r}; valid formats: {', '.join(FORMATS)}")
