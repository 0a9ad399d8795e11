"""Image grids: one PNG per edit, sources in rows (labelled with the source's index), the source and each method
variant in columns (labelled with the variant, wrapped onto up to LABEL_LINES lines and elided in the middle with
"…" only when that is still too long), at the suite's first seed. A tile whose cell failed is drawn as a red
"failed" tile, whatever image an earlier attempt left there; a missing image as a grey "no image" tile."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from bench.images import slug

MAX_ROWS = 8
LABEL_LINES = 3
PAD = 2
SCALE = 2  # synthetic-world images are 64 px: enlarge (nearest) so they can be seen
ELLIPSIS = "…"
FAILED_FILL, FAILED_INK = (255, 222, 222), (180, 0, 0)
MISSING_FILL, MISSING_INK = (235, 235, 235), (110, 110, 110)

Measure = Callable[[str], float]


def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default()  # Pillow >= 10.1: a scalable font with "…"


def _measure(font=None) -> Measure:
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    font = font or _font()
    return lambda text: draw.textlength(text, font=font)


def _wrap(text: str, width: float, measure: Measure) -> list[str]:
    """Greedy lines no wider than `width`, broken after "-", "_" or " " where possible, else between characters."""
    tokens = [t for t in re.findall(r"[^-_ ]*[-_ ]?", text) if t]
    lines, line = [], ""
    for token in tokens:
        if measure(line + token) <= width:
            line += token
            continue
        if line:
            lines.append(line)
            line = ""
        for char in token:  # a token wider than the tile: broken between characters
            if line and measure(line + char) > width:
                lines.append(line)
                line = ""
            line += char
    return lines + [line] if line else lines


def label_lines(text: str, width: float, measure: Measure | None = None, max_lines: int = LABEL_LINES) -> list[str]:
    """The lines a column label is drawn as: `text` wrapped to `width`; when it needs more than `max_lines`, the
    longest "head…tail" (the tail kept, where variant names differ) that fits. Nothing is cut without the "…"."""
    measure = measure or _measure()
    lines = _wrap(text, width, measure)
    if len(lines) <= max_lines:
        return lines
    for keep in range(len(text) - 1, 1, -1):
        head = keep // 2
        elided = _wrap(text[:head] + ELLIPSIS + text[len(text) - (keep - head):], width, measure)
        if len(elided) <= max_lines:
            return elided
    return _wrap(ELLIPSIS, width, measure)[:max_lines]


def _line_height(font) -> int:
    left, top, right, bottom = font.getbbox("Ag…|")
    return int(bottom) + 2


def _draw_lines(draw: ImageDraw.ImageDraw, lines: list[str], x: int, y: int, font, fill="black") -> None:
    for i, line in enumerate(lines):
        draw.text((x, y + i * _line_height(font)), line, fill=fill, font=font)


def _marked_tile(size: int, text: str, fill, ink, font) -> Image.Image:
    """A tile that stands for no image: a failed cell (crossed) or a missing file."""
    tile = Image.new("RGB", (size, size), fill)
    draw = ImageDraw.Draw(tile)
    draw.rectangle([0, 0, size - 1, size - 1], outline=ink, width=2)
    if fill == FAILED_FILL:
        draw.line([0, 0, size - 1, size - 1], fill=ink, width=1)
        draw.line([0, size - 1, size - 1, 0], fill=ink, width=1)
    width = draw.textlength(text, font=font)
    draw.rectangle([(size - width) / 2 - 2, size / 2 - 7, (size + width) / 2 + 2, size / 2 + 7], fill=fill)
    draw.text(((size - width) / 2, size / 2 - 6), text, fill=ink, font=font)
    return tile


def failed_sources(cells: pd.DataFrame, records: pd.DataFrame | None = None,
                   batch_size: int | None = None) -> dict[tuple[str, str, int], set[int] | None]:
    """{(variant folder, edit folder, seed): the source indices of its failed batch cells} from the store's cells
    (None: every source of the group, when the batch size is unknown). The batch size is `batch_size`, else the
    most distinct per-sample records of a finished batch cell."""
    failed = cells[(cells["status"] == "error") & (cells["batch"] >= 0)] if not cells.empty else cells
    if failed.empty:
        return {}
    if batch_size is None and records is not None and not records.empty:
        per_cell = records[(records["sample"] >= 0) & (records["batch"] >= 0)]
        counts = per_cell.groupby(["variant", "edit", "batch", "seed"])["sample"].nunique()
        batch_size = int(counts.max()) if len(counts) else None
    out: dict[tuple[str, str, int], set[int] | None] = {}
    for row in failed.itertuples():
        key = (slug(row.variant), slug(row.edit), int(row.seed))
        if batch_size is None or out.get(key, set()) is None:
            out[key] = None
            continue
        first = int(row.batch) * batch_size
        out.setdefault(key, set()).update(range(first, first + batch_size))
    return out


def _seed_dir(group: Path, seeds: list) -> Path | None:
    """The folder of the suite's first seed (the manifest's `seeds`), else of the lowest seed number."""
    for seed in seeds[:1]:
        if (group / f"seed{seed}").is_dir():
            return group / f"seed{seed}"
    found = [d for d in group.glob("seed*") if d.is_dir()]
    number = lambda d: (0, int(d.name[4:]), "") if d.name[4:].isdigit() else (1, 0, d.name)  # noqa: E731
    return min(found, key=number) if found else None


def _index(path: Path) -> int | None:
    return int(path.stem) if path.stem.isdigit() else None


def write_grids(run_dir: Path, out: Path, manifest: dict,
                failed: dict[tuple[str, str, int], set[int] | None] | None = None) -> list[Path]:
    """One grid per edit folder (in the suite's edit order); `failed` as `failed_sources` returns it."""
    images = Path(run_dir) / "images"
    sources = sorted((images / "_source").glob("*.png"))[:MAX_ROWS]
    if not sources:
        return []
    folders = sorted({p.name for variant_dir in images.iterdir() if variant_dir.is_dir()
                      and variant_dir.name != "_source" for p in variant_dir.iterdir() if p.is_dir()})
    order = [slug(e) for e in manifest.get("edits", [])]
    edits = [e for e in order if e in folders] + [e for e in folders if e not in order]
    variants = [label for _, label in manifest.get("variants", [])]
    seeds = list(manifest.get("seeds") or [])
    return [_write_grid(images, out, edit, sources, variants, seeds, failed or {}) for edit in edits]


def _write_grid(images: Path, out: Path, edit: str, sources: list[Path], variants: list[str], seeds: list,
                failed: dict) -> Path:
    font = _font()
    measure = _measure(font)
    size = Image.open(sources[0]).size[0] * SCALE
    columns: list[tuple[str, list[tuple[Path, bool]]]] = [("source", [(p, False) for p in sources])]
    for label in variants:
        seed_dir = _seed_dir(images / slug(label) / edit, seeds)
        if seed_dir is None:
            continue
        lost = failed.get((slug(label), edit, int(seed_dir.name[4:]) if seed_dir.name[4:].isdigit() else -1), set())
        columns.append((label, [(seed_dir / p.name, lost is None or _index(p) in lost) for p in sources]))
    row_labels = [f"#{_index(p)}" if _index(p) is not None else p.stem for p in sources]
    labels = [label_lines(label, size - 2 * PAD, measure) for label, _ in columns]
    left = int(max(measure(t) for t in row_labels)) + 2 * PAD
    top = max(map(len, labels)) * _line_height(font) + 2 * PAD
    grid = Image.new("RGB", (left + size * len(columns), top + size * len(sources)), "white")
    draw = ImageDraw.Draw(grid)
    for r, text in enumerate(row_labels):
        draw.text((PAD, top + r * size + size // 2 - 6), text, fill="black", font=font)
    for c, (lines, (_, tiles)) in enumerate(zip(labels, columns)):
        x = left + c * size
        _draw_lines(draw, lines, x + PAD, PAD, font)
        for r, (path, cell_failed) in enumerate(tiles):
            if cell_failed:
                tile = _marked_tile(size, "failed", FAILED_FILL, FAILED_INK, font)
            elif path.exists():
                tile = Image.open(path).convert("RGB").resize((size, size), Image.NEAREST)
            else:
                tile = _marked_tile(size, "no image", MISSING_FILL, MISSING_INK, font)
            grid.paste(tile, (x, top + r * size))
    path = out / f"grid_{edit}.png"
    grid.save(path)
    return path
