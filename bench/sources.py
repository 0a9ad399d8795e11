"""Turning a suite's `sources:` block into batches of source images and W+ latents (`source_batches`).

* `generator`: z ~ N(0, I) from a seeded torch.Generator, mapped to W, truncated (`truncation`, 0.7 as in
  StyleCLIP) towards `truncation_center`, broadcast to W+, rendered with fixed noise. The centre is
    - `latent_avg` (the default): the checkpoint's `latent_avg`; for rosinality checkpoints converted from NVlabs'
      pickles that is the W average tracked during training (`dlatent_avg`). A generator without one falls back
      to `mean_latent` below. Every committed result was made with this centre;
    - `mean_latent`: the mean of mapping(z) over 4096 z drawn with a fixed seed (`MEAN_LATENT_SEED`). This is what
      StyleCLIP's official code truncates around (`g_ema.mean_latent(4096)`, a fresh random draw in each of its
      runs), so it is the centre for reproducing StyleCLIP; the two centres are close but not equal, and so are
      the sources they give.
* `latents`: a `.pt` file with W+ latents `[N, n_latent, style_dim]` (or z `[N, style_dim]`), rendered.
* `images`: a folder of images (sorted by name; `bench.images.read_image`: turned upright by their EXIF
  orientation, transparency composited onto white, the centre square resized to the generator's size). The batch's
  images are these photos, never a re-rendering of their inversion: methods that edit pixels (TediGAN's pixel
  loss), the metrics (identity, LPIPS, FID against the sources), the `source` baseline and the saved `_source` PNGs
  all see the photo. The batch's latents are the photos' W+ inversion, for the methods that edit latents: by the
  backbone set's encoder (`inversion: encoder`) or by optimisation-based projection (`inversion: optimization`,
  `methods.inversion.project`), both through `methods.inversion.invert`; each batch says which
  (`SourceBatch.inversion`), so a method that would invert its images the same way reuses the latents.
  The inversion runs one suite batch (`batch_size`) at a time, reports its progress, and stores each batch's
  latents in `cache_dir` (keyed by the pixels read, the inversion, the backbones and the device), so a resumed
  run edits the same latents and an interrupted inversion keeps the batches it finished.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bench.backbone_set import BackboneSet
from bench.cachefile import atomic_save, load_or_none
from bench.errors import BenchError
from bench.images import IMAGE_SUFFIXES, image_files_in, read_images
from bench.suite import GeneratorSources, ImageSources, LatentSources
from methods.base import SourceBatch
from methods.inversion import invert
from methods.losses import generator_of



def source_latents(spec: GeneratorSources | LatentSources | ImageSources, backbones: BackboneSet,
                   device: str = "cpu", limit: int | None = None) -> torch.Tensor:
    """All source W+ latents `[N, n_latent, style_dim]` of the suite (the first `limit` when given); for an image
    folder, the photos' inversions."""
    if isinstance(spec, ImageSources):
        return torch.cat([batch.latents for batch in source_batches(spec, backbones, device, limit)])
    return _drawn_latents(spec, backbones, device, limit)


def source_batches(spec: GeneratorSources | LatentSources | ImageSources, backbones: BackboneSet,
                   device: str = "cpu", limit: int | None = None, cache_dir: str | Path | None = None,
                   on_progress: Callable[[int, int], Any] | None = None) -> list[SourceBatch]:
    """The suite's sources in batches of `spec.batch_size`: rendered latents, or photos with their inversions
    (`on_progress(images inverted, images)` after each batch; `cache_dir` keeps each batch's inversion)."""
    if isinstance(spec, ImageSources):
        return _inverted_batches(spec, backbones, device, limit, cache_dir, on_progress)
    return render_batches(_drawn_latents(spec, backbones, device, limit), backbones, spec.batch_size)


@torch.no_grad()
def _drawn_latents(spec: GeneratorSources | LatentSources, backbones: BackboneSet, device: str,
                   limit: int | None) -> torch.Tensor:
    generator = generator_of(backbones)
    if isinstance(spec, GeneratorSources):
        count = spec.count if limit is None else min(spec.count, limit)
        rng = torch.Generator().manual_seed(spec.seed)
        z = torch.randn(spec.count, generator.style_dim, generator=rng)[:count].to(device)
        center = truncation_center(generator, spec.truncation_center) if spec.truncation != 1 else None
        w = generator.truncate(generator.mapping(z), spec.truncation, center)
        return w.unsqueeze(1).repeat(1, generator.n_latent, 1)
    if isinstance(spec, LatentSources):
        from bench.commands.generate import read_latents
        latents, space = read_latents(spec.path, generator.n_latent, generator.style_dim)
        latents = latents[:limit].to(device)
        if space == "w+":
            return latents
        w = generator.mapping(latents) if space == "z" else latents
        return w.unsqueeze(1).repeat(1, generator.n_latent, 1)


def truncation_center(generator, center: str) -> torch.Tensor:
    """The W `[D]` that generator sources are truncated towards: "latent_avg" (the checkpoint's, see
    `Generator.get_latent_avg`) or "mean_latent" (mean of mapping(z) over 4096 z from a fixed seed, StyleCLIP's)."""
    if center == "latent_avg":
        return generator.get_latent_avg()
    if center == "mean_latent":
        from zoo.stylegan2.generator import MEAN_LATENT_SEED
        return generator.mean_latent(4096, torch.Generator().manual_seed(MEAN_LATENT_SEED))
    raise BenchError(f"unknown truncation_center {center!r}; valid: 'latent_avg', 'mean_latent'")


def invert_images(spec: ImageSources, backbones: BackboneSet, images: torch.Tensor) -> torch.Tensor:
    """W+ of `images` by the suite's inversion (`methods.inversion.invert` with `how=spec.inversion`)."""
    return invert(backbones, images, how=spec.inversion)


def _inverted_batches(spec: ImageSources, backbones: BackboneSet, device: str, limit: int | None,
                      cache_dir: str | Path | None, on_progress: Callable[[int, int], Any] | None) -> list[SourceBatch]:
    generator = generator_of(backbones)
    files = image_files(spec.path, limit)
    batches = []
    for start in range(0, len(files), spec.batch_size):
        chunk = files[start:start + spec.batch_size]
        images = load_images(chunk, generator.size).to(device)
        cached = None
        if cache_dir is not None:
            # keyed by the pixels inverted, not the files' bytes, so a change in how files are read is a miss
            pixels = hashlib.sha256(images.cpu().numpy().tobytes()).hexdigest()
            key = json.dumps({"inversion": spec.inversion, "pixels": pixels, "size": generator.size,
                              "backbones": backbones.hashes, "device": device}, sort_keys=True)
            cached = Path(cache_dir) / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.pt"
        latents = load_or_none(cached, map_location=device, weights_only=True) if cached is not None else None
        if latents is None:
            latents = invert_images(spec, backbones, images)
            if cached is not None:
                atomic_save(latents.cpu(), cached)
        batches.append(SourceBatch(images=images, latents=latents.to(device), inversion=spec.inversion))
        if on_progress:
            on_progress(start + len(chunk), len(files))
    return batches


def image_folder_problem(path: str | Path) -> str | None:
    """Why `path` cannot serve as a folder of images (missing, not a folder, no image file in it), else None.
    One wording for sources, style images and `bench validate`."""
    folder = Path(path).expanduser()
    if not folder.exists():
        return f"folder {folder} does not exist"
    if not folder.is_dir():
        return f"{folder} is a file, not a folder of images"
    if not image_files_in(folder):
        return f"folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})"
    return None


def image_files(path: str | Path, limit: int | None = None) -> list[Path]:
    """The image files of a folder, sorted by name (the first `limit` when given)."""
    problem = image_folder_problem(path)
    if problem:
        raise BenchError(f"source images: {problem}")
    folder = Path(path).expanduser()
    return image_files_in(folder)[:limit]


def load_images(files: list[Path], size: int) -> torch.Tensor:
    """Image files as `[N, 3, size, size]` in [-1, 1] (`bench.images.read_images`: upright, centre square)."""
    return read_images(files, size, what="source image")


def load_image_folder(path: str | Path, size: int, limit: int | None = None) -> torch.Tensor:
    """Images of a folder (sorted by name), centre squares at `size`, as `[N, 3, size, size]` in [-1, 1]."""
    return load_images(image_files(path, limit), size)


@torch.no_grad()
def render_batches(latents: torch.Tensor, backbones: BackboneSet, batch_size: int) -> list[SourceBatch]:
    generator = generator_of(backbones)
    batches = []
    for start in range(0, len(latents), batch_size):
        w_plus = latents[start:start + batch_size]
        batches.append(SourceBatch(images=generator(w_plus).clamp(-1, 1), latents=w_plus))
    return batches
