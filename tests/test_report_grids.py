"""Image grids without a run: column labels wrapped (never cut without "…"), the suite's first seed, failed and
missing tiles marked, rows labelled with the source index."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from reports.grids import (ELLIPSIS, FAILED_FILL, LABEL_LINES, MISSING_FILL, SCALE, _measure, failed_sources,
                           label_lines, write_grids)

SIZE = 16  # source images are 16 px: tiles of SIZE * SCALE


@pytest.mark.parametrize("width", [40, 60, 124])
def test_labels_that_differ_only_at_the_end_stay_distinguishable(width):
    measure = _measure()
    short, long = "styleclip_optimization-60", "styleclip_optimization-60-id-0.005"
    a, b = label_lines(short, width), label_lines(long, width)
    assert a != b and "".join(a).endswith("-60") and "".join(b).endswith("-0.005")
    assert all(measure(line) <= width for line in a + b) and len(a) <= LABEL_LINES and len(b) <= LABEL_LINES
    if width >= 60:  # room for both in three lines: wrapped, nothing cut
        assert "".join(a) == short and "".join(b) == long


def test_a_label_too_long_for_three_lines_is_elided_in_the_middle():
    text = "styleclip_mapper-" + "x" * 80 + "-seed1"
    lines = label_lines(text, 60)
    joined = "".join(lines)
    assert len(lines) == LABEL_LINES and ELLIPSIS in joined
    assert joined.startswith("styleclip") and joined.endswith("-seed1")  # the end, where variants differ, is kept
    assert all(_measure()(line) <= 60 for line in lines)


def _png(path, colour):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (SIZE, SIZE), colour).save(path)


@pytest.fixture
def run_dir(tmp_path):
    """4 sources; variant v: seed2 green, seed10 blue (alphabetically first); its image of source 3 missing."""
    images = tmp_path / "images"
    for i in range(4):
        _png(images / "_source" / f"{i:06d}.png", (200, 200, 200))
        _png(images / "v" / "e" / "seed10" / f"{i:06d}.png", (0, 0, 255))
        if i != 3:
            _png(images / "v" / "e" / "seed2" / f"{i:06d}.png", (0, 255, 0))
    return tmp_path


def _tile(grid: Image.Image, row: int, column: int) -> np.ndarray:
    """The pixels of a tile (column 0: the sources), located from the grid's bottom-right corner."""
    tile = SIZE * SCALE
    pixels = np.asarray(grid.convert("RGB"))
    columns = 2
    top = pixels.shape[0] - 4 * tile + row * tile
    left = pixels.shape[1] - columns * tile + column * tile
    return pixels[top:top + tile, left:left + tile]


def _centre_colour(tile):
    return tuple(int(v) for v in tile[3, tile.shape[1] // 2])  # near the top, off the marks' cross and text


def test_the_grid_shows_the_suites_first_seed_else_the_lowest(run_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    manifest = {"variants": [["m", "v"]], "edits": ["e"], "seeds": [10, 2]}
    grid = Image.open(write_grids(run_dir, out, manifest)[0])
    assert _centre_colour(_tile(grid, 0, 1)) == (0, 0, 255)  # seed 10: the suite's first
    del manifest["seeds"]  # a manifest without seeds: the lowest seed number, not the first name (seed10)
    grid = Image.open(write_grids(run_dir, out, manifest)[0])
    assert _centre_colour(_tile(grid, 0, 1)) == (0, 255, 0)
    assert _centre_colour(_tile(grid, 3, 1)) == MISSING_FILL  # seed2 has no image of source 3
    left = np.asarray(grid.convert("L"))[:, : grid.width - 2 * SIZE * SCALE]
    for row in range(4):  # each row's label (#0 … #3) is drawn in the margin beside it
        top = grid.height - 4 * SIZE * SCALE + row * SIZE * SCALE
        assert (left[top:top + SIZE * SCALE] < 128).any()


def test_failed_cells_are_marked_tiles_even_over_stale_images(run_dir, tmp_path):
    cells = pd.DataFrame([{"method": "m", "variant": "v", "edit": "e", "batch": b, "seed": 2, "status": s}
                          for b, s in ((0, "ok"), (1, "error"))]
                         + [{"method": "m", "variant": "v", "edit": "e", "batch": -1, "seed": 2, "status": "error"}])
    records = pd.DataFrame([{"variant": "v", "edit": "e", "batch": 0, "seed": 2, "sample": i, "metric": "x",
                             "value": 0.0} for i in (0, 1)])
    failed = failed_sources(cells, records)
    assert failed == {("v", "e", 2): {2, 3}}  # batch 1 of 2 sources; the set cell (batch -1) draws no tile
    assert failed_sources(cells) == {("v", "e", 2): None}  # batch size unknown: the whole group
    out = tmp_path / "out"
    out.mkdir()
    grid = Image.open(write_grids(run_dir, out, {"variants": [["m", "v"]], "seeds": [2]}, failed)[0])
    assert _centre_colour(_tile(grid, 1, 1)) == (0, 255, 0)
    assert _centre_colour(_tile(grid, 2, 1)) == FAILED_FILL  # a stale image of a failed cell is not shown
    assert _centre_colour(_tile(grid, 3, 1)) == FAILED_FILL
