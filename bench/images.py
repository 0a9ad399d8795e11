"""Images on disk: PNGs named by source index, and safe folder names for variant/edit labels."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def slug(label: str) -> str:
    """A folder name for a label: letters, digits, '.', '-', '_' kept; anything else becomes '_' (as do the labels
    '.' and '..', which name no folder of their own)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_")
    return "_" if name in ("", ".", "..") else name


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """`[N, 3, H, W]` in [-1, 1] → `[N, H, W, 3]` uint8 (round to nearest)."""
    pixels = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).numpy()


def save_pngs(images: torch.Tensor, folder: Path, start: int = 0) -> list[Path]:
    """Write `folder/{start + i:06d}.png` for each image; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, array in enumerate(to_uint8(images)):
        path = folder / f"{start + i:06d}.png"
        Image.fromarray(array).save(path)
        paths.append(path)
    return paths


def read_png_folder(folder: Path, indices: list[int] | None = None) -> tuple[list[int], torch.Tensor]:
    """(source indices, `[N, 3, H, W]` in [-1, 1]) of the PNGs in `folder` (only `indices` when given)."""
    files = sorted(folder.glob("*.png"))
    found = {int(p.stem): p for p in files if p.stem.isdigit()}
    keep = sorted(found) if indices is None else [i for i in indices if i in found]
    if not keep:
        return [], torch.empty(0, 3, 0, 0)
    arrays = np.stack([np.asarray(Image.open(found[i]).convert("RGB")) for i in keep])
    return keep, torch.from_numpy(arrays).permute(0, 3, 1, 2).float() / 127.5 - 1.0
