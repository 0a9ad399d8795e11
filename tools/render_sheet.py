"""Write the synthetic face world's sample sheet (docs/synthface-renders.png) and measure render throughput.

    python tools/render_sheet.py                      # sheet + throughput (2,048 faces at 64x64, one thread)
    python tools/render_sheet.py --bench-only --n 4096

The sheet has three panels: random faces (every attribute and the pose drawn at random); attribute edits
(each row one person with neutral attributes, each column one edit of that person); domains (the same people
in every image domain). Images are upscaled with nearest neighbour so single pixels stay visible.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo.synthface import (DOMAIN_NAMES, FaceParams, render, sample_params,  # noqa: E402
                           with_attribute, with_domain)

EDITS: list[tuple[str, str, object]] = [
    ("base", "", None),
    ("purple hair", "hair_color", "purple"),
    ("blue hair", "hair_color", "blue"),
    ("blond hair", "hair_color", "blond"),
    ("bald", "hair_style", "bald"),
    ("long", "hair_style", "long"),
    ("curly", "hair_style", "curly"),
    ("mohawk", "hair_style", "mohawk"),
    ("smiling", "smile", 1.0),
    ("frowning", "smile", -1.0),
    ("glasses", "eyewear", "glasses"),
    ("sunglasses", "eyewear", "sunglasses"),
    ("beard", "facial_hair", "beard"),
    ("moustache", "facial_hair", "moustache"),
    ("eyes closed", "eyes_closed", "closed"),
    ("lipstick", "lipstick", "lipstick"),
    ("hat", "hat", "hat"),
    ("cap", "hat", "cap"),
    ("old", "age", "old"),
    ("teal bg", "background", "teal"),
]


def neutral_people(n: int, seed: int) -> FaceParams:
    p = sample_params(n, seed=seed, hat="none", eyewear="none", facial_hair="none", eyes_closed="open",
                      lipstick="none", age="young", smile=0.0)
    style = p.attrs["hair_style"].clone()
    style[style == 0] = 1  # no bald bases, so hair edits show
    style[style == 4] = 1
    return with_attribute(p, "hair_style", style)


def _grid(imgs: torch.Tensor, rows: int, cols: int, pad: int = 2) -> torch.Tensor:
    """[rows*cols, 3, S, S] in [-1, 1] -> [3, H, W] in [0, 1] with a white gutter."""
    s = imgs.shape[-1]
    out = torch.ones(3, rows * (s + pad) + pad, cols * (s + pad) + pad)
    x = (imgs.clamp(-1, 1) + 1) / 2
    for i in range(rows * cols):
        r, c = divmod(i, cols)
        out[:, pad + r * (s + pad):pad + r * (s + pad) + s, pad + c * (s + pad):pad + c * (s + pad) + s] = x[i]
    return out


def _labelled(panel: torch.Tensor, labels: list[str], cell: int, title: str, scale: int):
    from PIL import Image, ImageDraw

    arr = (panel.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    im = Image.fromarray(arr).resize((arr.shape[1] * scale, arr.shape[0] * scale), Image.NEAREST)
    head = 26
    canvas = Image.new("RGB", (im.width, im.height + head), "white")
    canvas.paste(im, (0, head))
    d = ImageDraw.Draw(canvas)
    d.text((4, 1), title, fill=(0, 0, 0))
    for i, lab in enumerate(labels):
        d.text((2 * scale + i * cell * scale + 2, 13), lab[:14], fill=(60, 60, 60))
    return canvas


def make_sheet(out: Path, seed: int = 7, rows: int = 8, scale: int = 2, palette: bool = True) -> None:
    from PIL import Image

    s = 64
    cell = s + 2
    panels = []
    # random faces
    rnd = sample_params(2 * len(EDITS), seed=seed + 100)
    panels.append(_labelled(_grid(render(rnd), 2, len(EDITS)), [], cell, "random faces (all attributes drawn)",
                            scale))
    # attribute edits
    base = neutral_people(rows, seed)
    cols = []
    for _, name, value in EDITS:
        cols.append(base if not name else with_attribute(base, name, value))
    grid = FaceParams.cat([c[r] for r in range(rows) for c in cols])
    panels.append(_labelled(_grid(render(grid), rows, len(cols)), [e[0] for e in EDITS], cell,
                            "attribute edits (row: one person; column: one edit of the base)", scale))
    # domains (random attributes)
    people = sample_params(rows, seed=seed + 1)
    dgrid = FaceParams.cat([with_domain(people[r], d) for r in range(rows) for d in DOMAIN_NAMES])
    panels.append(_labelled(_grid(render(dgrid), rows, len(DOMAIN_NAMES)), list(DOMAIN_NAMES), cell,
                            "domains (row: one face; column: its domain)", scale))
    w = max(p.width for p in panels)
    h = sum(p.height for p in panels)
    sheet = Image.new("RGB", (w, h), "white")
    y = 0
    for p in panels:
        sheet.paste(p, (0, y))
        y += p.height
    out.parent.mkdir(parents=True, exist_ok=True)
    if palette:  # 256 colours keep the sheet small (~250 KB instead of ~850 KB) with no visible loss at 64 px
        sheet = sheet.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    sheet.save(out, optimize=True)
    print(f"wrote {out} ({sheet.width}x{sheet.height}, {out.stat().st_size / 1024:.0f} KB)")


def bench(n: int, size: int, domains: bool = False, repeats: int = 3) -> float:
    """Images per second rendering n faces (best of `repeats`, after a warm-up)."""
    p = sample_params(n, seed=0, domain=list(DOMAIN_NAMES) if domains else "photo")
    render(p[:64], size=size)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        render(p, size=size)
        best = min(best, time.perf_counter() - t)
    return n / best


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "synthface-renders.png")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--scale", type=int, default=2, help="nearest-neighbour upscale of the sheet")
    ap.add_argument("--n", type=int, default=2048, help="faces per throughput measurement")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--full-colour", action="store_true", help="save the sheet without palette quantisation")
    ap.add_argument("--bench-only", action="store_true")
    ap.add_argument("--no-bench", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.bench_only:
        make_sheet(args.out, seed=args.seed, scale=args.scale, palette=not args.full_colour)
    if not args.no_bench:
        for size, n, domains in ((64, args.n, False), (64, args.n, True), (128, args.n // 4, False)):
            rate = bench(n, size, domains)
            what = "all 8 domains mixed" if domains else "photo"
            print(f"render throughput: {rate:,.0f} images/s at {size}x{size} ({what}, {n} faces, "
                  f"{args.threads} thread(s), best of 3)")

if __name__ == "__main__":
    main()
