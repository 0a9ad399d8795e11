"""Image grids: one PNG per edit, sources in rows, the source and each method variant in columns (first seed)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from bench.images import slug

MAX_ROWS = 8
LABEL_HEIGHT = 14
SCALE = 2  # synthetic-world images are 64 px: enlarge (nearest) so they can be seen


def _label(text: str, width: int) -> Image.Image:
    tile = Image.new("RGB", (width, LABEL_HEIGHT), "white")
    ImageDraw.Draw(tile).text((2, 1), text[: max(4, width // 6)], fill="black")
    return tile


def write_grids(run_dir: Path, out: Path, manifest: dict) -> list[Path]:
    images = Path(run_dir) / "images"
    sources = sorted((images / "_source").glob("*.png"))[:MAX_ROWS]
    if not sources:
        return []
    edits = sorted({p.name for variant_dir in images.iterdir() if variant_dir.name != "_source"
                    for p in variant_dir.iterdir() if p.is_dir()}) if images.is_dir() else []
    variants = [label for _, label in manifest.get("variants", [])]
    written = []
    for edit in edits:
        columns = [("source", [images / "_source" / p.name for p in sources])]
        for label in variants:
            seed_dirs = sorted((images / slug(label) / edit).glob("seed*"))
            if seed_dirs:
                columns.append((label, [seed_dirs[0] / p.name for p in sources]))
        size = Image.open(sources[0]).size[0] * SCALE
        grid = Image.new("RGB", (size * len(columns), LABEL_HEIGHT + size * len(sources)), "white")
        for c, (label, paths) in enumerate(columns):
            grid.paste(_label(label, size), (c * size, 0))
            for r, path in enumerate(paths):
                if path.exists():
                    tile = Image.open(path).convert("RGB").resize((size, size), Image.NEAREST)
                    grid.paste(tile, (c * size, LABEL_HEIGHT + r * size))
        path = out / f"grid_{edit}.png"
        grid.save(path)
        written.append(path)
    return written
