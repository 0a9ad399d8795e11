"""Turning a suite's `sources:` block into batches of source images and W+ latents.

* `generator`: z ~ N(0, I) from a seeded torch.Generator, mapped to W, truncated towards the generator's
  `latent_avg` (StyleCLIP's convention: truncation 0.7), broadcast to W+, rendered with fixed noise.
* `latents`: a `.pt` file with W+ latents `[N, n_latent, style_dim]` (or z `[N, style_dim]`), rendered.
* `images`: a folder of images, inverted into W+ by the backbone set's encoder.
"""

from __future__ import annotations

from pathlib import Path

import torch

from bench.backbone_set import BackboneSet
from bench.errors import BenchError
from bench.suite import GeneratorSources, ImageSources, LatentSources
from methods.base import SourceBatch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def _generator(backbones: BackboneSet):
    if "generator" not in backbones:
        raise BenchError(f"the suite's backbones provide no 'generator' (roles: {sorted(backbones.roles)})")
    return backbones["generator"]


@torch.no_grad()
def source_latents(spec: GeneratorSources | LatentSources | ImageSources, backbones: BackboneSet,
                   device: str = "cpu", limit: int | None = None) -> torch.Tensor:
    """All source W+ latents `[N, n_latent, style_dim]` of the suite (the first `limit` when given)."""
    generator = _generator(backbones)
    if isinstance(spec, GeneratorSources):
        count = spec.count if limit is None else min(spec.count, limit)
        rng = torch.Generator().manual_seed(spec.seed)
        z = torch.randn(spec.count, generator.style_dim, generator=rng)[:count].to(device)
        w = generator.truncate(generator.mapping(z), spec.truncation)
        return w.unsqueeze(1).repeat(1, generator.n_latent, 1)
    if isinstance(spec, LatentSources):
        from bench.commands.generate import read_latents
        latents, space = read_latents(spec.path, generator.n_latent, generator.style_dim)
        latents = latents[:limit].to(device)
        if space == "w+":
            return latents
        w = generator.mapping(latents) if space == "z" else latents
        return w.unsqueeze(1).repeat(1, generator.n_latent, 1)
    images = load_image_folder(spec.path, generator.size, limit).to(device)
    if spec.inversion == "encoder":
        if "encoder" not in backbones:
            raise BenchError(f"sources.inversion is 'encoder' but the backbones provide none "
                             f"(roles: {sorted(backbones.roles)}); use inversion: optimization")
        return backbones["encoder"](images)
    from methods.inversion import project  # optimisation-based projection (W+, perceptual + pixel loss)
    return project(generator, images)


def load_image_folder(path: str | Path, size: int, limit: int | None = None) -> torch.Tensor:
    """Images of a folder (sorted by name), resized to the generator's size, as `[N, 3, size, size]` in [-1, 1]."""
    from PIL import Image
    import numpy as np

    folder = Path(path).expanduser()
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    if not files:
        raise BenchError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in source folder {folder}")
    files = files[:limit]
    arrays = [np.asarray(Image.open(f).convert("RGB").resize((size, size), Image.LANCZOS)) for f in files]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


@torch.no_grad()
def render_batches(latents: torch.Tensor, backbones: BackboneSet, batch_size: int) -> list[SourceBatch]:
    generator = _generator(backbones)
    batches = []
    for start in range(0, len(latents), batch_size):
        w_plus = latents[start:start + batch_size]
        batches.append(SourceBatch(images=generator(w_plus).clamp(-1, 1), latents=w_plus))
    return batches
