"""Images on disk and in memory: the one home of the conversions between `[N, 3, H, W]` tensors in [-1, 1] and
8-bit pixels (`to_uint8`, `from_uint8`), of listing an image folder (`image_files_in`) and reading an image file
(`read_image`, `read_images`: upright, alpha onto white, centre-cropped square), PNGs named by source index, and
safe folder names for variant/edit labels."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from bench.errors import BenchError

# Transparent pixels are composited onto white, the background a photo with a cut-out subject is usually shown on
# (PIL's plain convert("RGB") keeps whatever colour lies under them, black in most files).
BACKGROUND = (255, 255, 255)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")  # what an image folder (sources, style images, FID) is read for


def image_files_in(folder: Path) -> list[Path]:
    """The image files (`IMAGE_SUFFIXES`) directly in `folder`, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def slug(label: str) -> str:
    """A folder name for a label: letters, digits, '.', '-', '_' kept; anything else becomes '_' (as do the labels
    '.' and '..', which name no folder of their own)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_")
    return "_" if name in ("", ".", "..") else name


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """`[N, 3, H, W]` in [-1, 1] → `[N, H, W, 3]` uint8 (clamped, rounded to nearest)."""
    pixels = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).numpy()


def from_uint8(pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
    """`[N, H, W, 3]` (or one `[H, W, 3]`) uint8 → `[N, 3, H, W]` (or `[3, H, W]`) float32 in [-1, 1]."""
    # np.array copies: PIL's arrays are read-only, which torch.from_numpy warns about
    tensor = pixels if isinstance(pixels, torch.Tensor) else torch.from_numpy(np.array(pixels))
    return tensor.movedim(-1, -3).float() / 127.5 - 1.0


def upright_rgb(image: Image.Image) -> Image.Image:
    """`image` turned as its EXIF orientation says, in RGB, transparent pixels composited onto `BACKGROUND`."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def square(image: Image.Image, size: int) -> Image.Image:
    """The centre square of `image` at `size` x `size` (LANCZOS): rosinality's projector's Resize(size) (short side)
    + CenterCrop(size), computed as PIL's `ImageOps.fit` (resize the centre square's box, the filter reading its
    neighbours across the box's edge as a whole-image resize would), so the part cropped away is not resampled.
    A square image of that size is returned unchanged."""
    if image.size == (size, size):
        return image
    return ImageOps.fit(image, (size, size), method=Image.LANCZOS, centering=(0.5, 0.5))


def read_image(path: str | Path, size: int | None = None, what: str = "image") -> torch.Tensor:
    """An image file as `[3, size, size]` in [-1, 1] (`upright_rgb`, then `square` when `size` is given; as stored
    otherwise). BenchError naming the file (`what` says what it is) when PIL cannot read it."""
    from PIL import UnidentifiedImageError

    from zoo.checkpoints import error_detail

    try:
        with Image.open(path) as image:
            image = upright_rgb(image)
            pixels = np.asarray(square(image, size) if size is not None else image)
    except (OSError, SyntaxError, ValueError) as exc:  # PIL's UnidentifiedImageError is an OSError
        reason = "not a format PIL reads" if isinstance(exc, UnidentifiedImageError) else error_detail(exc)
        raise BenchError(f"{what} {path}: not a readable image ({reason}); remove it or replace it") from None
    return from_uint8(pixels)


def read_images(files: list[Path], size: int, what: str = "image") -> torch.Tensor:
    """Image files as `[N, 3, size, size]` in [-1, 1] (`read_image` each)."""
    return torch.stack([read_image(f, size, what) for f in files])


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
    return keep, torch.stack([read_image(found[i]) for i in keep])
