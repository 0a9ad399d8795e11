"""One self-contained HTML page: the tables (rendered from the Markdown), the plots and the image grids, with
every image embedded as a data URI so the file can be mailed or attached to a CI run on its own."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3rem 0.6rem; text-align: right; }
th:first-child, td:first-child, th:nth-child(2), td:nth-child(2) { text-align: left; }
img { image-rendering: pixelated; max-width: 100%; border: 1px solid #eee; margin: 0.5rem 0; }
.failed { color: #a00; }
"""


def _inline(text: str) -> str:
    """Markdown bold (**x**) and italics (_x_) inside escaped text."""
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    return re.sub(r"(?<!\w)_(.+?)_(?!\w)", r"<i>\1</i>", text)


def _cells(row: str) -> list[str]:
    """The cells of a Markdown table row: split on the pipes that are not escaped (`\\|` is a literal `|`)."""
    return [cell.strip().replace(r"\|", "|") for cell in re.split(r"(?<!\\)\|", row.strip())[1:-1]]


def markdown_to_html(markdown: str) -> str:
    """The subset of Markdown our tables use: headings, pipe tables, paragraphs."""
    out, table = [], []

    def flush():
        if table:
            header, *body = [row for row in table if not set(row.replace("|", "").strip()) <= set("-: ")]
            out.append("<table><thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in _cells(header))
                       + "</tr></thead><tbody>" + "".join(
                           "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in _cells(row)) + "</tr>" for row in body)
                       + "</tbody></table>")
            table.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{_inline(line.lstrip('#').strip())}</h{level}>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
    flush()
    return "\n".join(out)


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"><figcaption>' \
           f"{html.escape(alt)}</figcaption></figure>"


def write_html(path: Path, report: dict, markdown: str, grids: list[Path], plots: list[Path]) -> Path:
    failed = report.get("failed_cells", [])
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(report['suite'])} report"
             f"</title><style>{STYLE}</style></head><body>", markdown_to_html(markdown)]
    if failed:
        parts.append(f"<h2>Failed cells ({len(failed)})</h2><ul class='failed'>"
                     + "".join(f"<li>{html.escape(f['cell'])}: {html.escape(str(f['error']))}</li>" for f in failed)
                     + "</ul>")
    if plots:
        parts.append("<h2>Plots</h2>" + "".join(_img(p, p.stem) for p in plots))
    if grids:
        parts.append("<h2>Images</h2><p>sources in rows (#: the source's index); the source and each method "
                     "variant in columns, at the suite's first seed; a red crossed tile: that cell failed; a grey "
                     "one: no image</p>" + "".join(_img(p, p.stem.removeprefix("grid_")) for p in grids))
    parts.append("</body></html>")
    path.write_text("\n".join(parts))
    return path
