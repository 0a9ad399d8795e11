"""Image domains of the synthetic face world: the caption words of each domain and its image-space style.

`photo` is the generator's training domain; the others are StyleGAN-NADA targets. A domain is applied to the
same face (same identity, same attributes): the renderer first changes a few palette entries (zombie skin,
blank marble eyes) and then calls `apply_domain` on the rendered photo with the person mask.

Domain words must not collide with any word of the 79 CLIP prompt templates
(`zoo/data/imagenet_templates_79.txt`), or wrapping a caption in a template would name a domain by accident
("a sketch of a {}" would turn every caption into a sketch caption). The templates contain, among others,
photo, sketch, cartoon, drawing, painting, rendering, rendition, doodle, art, tattoo, origami, plastic, toy,
plushie, sculpture, graffiti, embroidered, pixelated, video, game, black, white, dark, bright, clean, dirty.
So the domain words are: realistic (photo), pencil (instead of sketch/drawing), comic (instead of cartoon),
zombie, mosaic (instead of pixel/pixelated), watercolor (instead of painting), neon, marble (instead of
sculpture). `tests/test_synthface_render.py` checks every word against the template file.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class DomainSpec:
    """One image domain. `words`: the caption words that name it (the first is the canonical one);
    `prompt`: the text a NADA-style method uses for it (source text for photo, target text otherwise)."""

    name: str
    words: tuple[str, ...]
    prompt: str
    description: str


DOMAINS: dict[str, DomainSpec] = {
    "photo": DomainSpec("photo", ("realistic",), "a realistic face",
                        "the generator's training domain: shaded, natural colours"),
    "pencil": DomainSpec("pencil", ("pencil",), "a pencil portrait",
                         "grey pencil lines and hatched shading on off-white paper"),
    "comic": DomainSpec("comic", ("comic",), "a comic face",
                        "posterised flat colours with thick dark outlines"),
    "zombie": DomainSpec("zombie", ("zombie",), "a zombie face",
                         "grey-green desaturated skin, dark eye sockets, pale eyes, dark lips, mottled"),
    "mosaic": DomainSpec("mosaic", ("mosaic",), "a mosaic face",
                         "square tiles (16 per side) with light grout lines"),
    "watercolor": DomainSpec("watercolor", ("watercolor",), "a watercolor portrait",
                             "blurred, bleeding pigment with darkened edges on textured paper"),
    "neon": DomainSpec("neon", ("neon",), "a neon face",
                       "glowing saturated outlines on a near-black background"),
    "marble": DomainSpec("marble", ("marble", "statue"), "a marble statue",
                         "white veined stone figure, blank eyes, in front of the original background"),
}
DOMAIN_NAMES: tuple[str, ...] = tuple(DOMAINS)
PHOTO = 0  # index of the photo domain
COLOURLESS_DOMAINS = ("pencil", "marble")  # domains whose drawing leaves hair colour out (the judge's hair-colour
# head is neither trained nor scored there)


def domain_index(domain: str | int) -> int:
    """Index of a domain given by name or index."""
    if isinstance(domain, int):
        if not 0 <= domain < len(DOMAIN_NAMES):
            raise ValueError(f"domain index {domain} out of range 0..{len(DOMAIN_NAMES) - 1}")
        return domain
    try:
        return DOMAIN_NAMES.index(domain)
    except ValueError:
        raise ValueError(f"unknown domain {domain!r}; known: {', '.join(DOMAIN_NAMES)}") from None


# ---------------------------------------------------------------------------------------------- helpers
_LUMA = (0.299, 0.587, 0.114)


def _luma(img: Tensor) -> Tensor:
    """[N,3,H,W] in [0,1] -> [N,1,H,W]."""
    w = img.new_tensor(_LUMA).view(1, 3, 1, 1)
    return (img * w).sum(1, keepdim=True)


@functools.lru_cache(maxsize=16)
def _gauss_kernel(sigma: float) -> Tensor:
    r = max(1, int(math.ceil(2.5 * sigma)))
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _blur(img: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur with replicate padding; sigma in pixels."""
    k = _gauss_kernel(float(sigma)).to(img)
    r = (k.numel() - 1) // 2
    n, c, h, w = img.shape
    x = img.reshape(n * c, 1, h, w)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
    return x.reshape(n, c, h, w)


def _edges(img: Tensor) -> Tensor:
    """Sobel gradient magnitude, max over channels: [N,C,H,W] -> [N,1,H,W]."""
    kx = img.new_tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0
    k = torch.stack([kx, kx.t()]).unsqueeze(1)  # [2,1,3,3]
    n, c, h, w = img.shape
    g = F.conv2d(F.pad(img.reshape(n * c, 1, h, w), (1, 1, 1, 1), mode="replicate"), k)
    mag = g.pow(2).sum(1).sqrt().reshape(n, c, h, w)
    return mag.amax(1, keepdim=True)


def _texture(like: Tensor, seed: int, sigma: float) -> Tensor:
    """A fixed smooth noise field [1,1,S,S] (S = like's size) with zero mean and unit std, on like's device
    (deterministic, shared by all images: drawn once on the CPU)."""
    return _cpu_texture(like.shape[-1], seed, sigma).to(like.device)


@functools.lru_cache(maxsize=8)
def _cpu_texture(size: int, seed: int, sigma: float) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, 1, size, size, generator=g, device="cpu")
    noise = _blur(noise, sigma * size / 64.0)
    return (noise - noise.mean()) / noise.std()


def _grid(size: int) -> tuple[Tensor, Tensor]:
    c = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    return c.view(1, 1, 1, size), c.view(1, 1, size, 1)


# ---------------------------------------------------------------------------------------------- styles
def _pencil(img: Tensor, person: Tensor) -> Tensor:
    s = img.shape[-1]
    lines = ((_edges(_blur(img, 0.45 * s / 64)) - 0.03) * 4.0).clamp(0, 1)
    shade = ((0.75 - _luma(img)) / 0.75).clamp(0, 1) ** 1.3
    x, y = _grid(s)
    hatch = (torch.sin((x + y) * s * 1.1) > 0.2).float()  # diagonal hatching in the darker tones
    tone = shade * (0.18 + 0.30 * hatch)
    grain = _texture(img, 31, 0.6)
    paper = img.new_tensor([0.97, 0.96, 0.92]).view(1, 3, 1, 1)
    graphite = 0.72 * lines + tone
    val = (1 - graphite * (1 + 0.1 * grain)).clamp(0.12, 1)
    return paper * val


def _comic(img: Tensor, person: Tensor) -> Tensor:
    s = img.shape[-1]
    mean = img.mean(1, keepdim=True)
    sat = (mean + 1.3 * (img - mean)).clamp(0, 1)
    lum = _luma(sat).clamp(min=1e-3)
    bands = (torch.floor(lum * 4) + 0.6) / 4  # flat shading: four tone bands, hue kept
    post = (sat * (bands / lum)).clamp(0, 1)
    edges = _edges(_blur(img, 0.5 * s / 64))
    ink = ((edges - 0.10) * 8).clamp(0, 1)
    x, y = _grid(s)
    dots = (torch.sin(x * s * 1.6) * torch.sin(y * s * 1.6) > 0.55).float()  # halftone behind the person
    post = post * (1 - 0.12 * dots * (1 - person))
    return post * (1 - ink) + 0.04 * ink


def _zombie(img: Tensor, person: Tensor) -> Tensor:
    s = img.shape[-1]
    mean = img.mean(1, keepdim=True)
    out = mean + 0.6 * (img - mean)  # desaturate
    tint = img.new_tensor([0.92, 1.02, 0.88]).view(1, 3, 1, 1)
    mottle = _texture(img, 11, 1.2)
    out = out * tint * (1 - 0.10 * person * mottle.clamp(-1.5, 1.5))
    return (out * (0.85 + 0.15 * (1 - person))).clamp(0, 1)


def _mosaic(img: Tensor, person: Tensor) -> Tensor:
    s = img.shape[-1]
    cell = max(2, s // 16)
    tiles = F.avg_pool2d(img, cell)
    n_t = tiles.shape[-1]
    g = torch.Generator().manual_seed(5)
    jitter = 1 + 0.06 * torch.randn(1, 1, n_t, n_t, generator=g, device="cpu").to(img)
    tiles = (tiles * jitter).clamp(0, 1)
    out = F.interpolate(tiles, scale_factor=cell, mode="nearest")
    idx = torch.arange(s, device=img.device)
    grout_line = ((idx % cell) == cell - 1).float()
    grout = torch.maximum(grout_line.view(1, 1, 1, s), grout_line.view(1, 1, s, 1))
    return out * (1 - 0.45 * grout)  # dark grout between the tiles


def _watercolor(img: Tensor, person: Tensor) -> Tensor:
    s = img.shape[-1]
    f = s / 64
    soft = _blur(img, 0.8 * f)
    wide = _blur(img, 2.5 * f)
    bleed = 0.8 * soft + 0.2 * wide
    pool = ((_edges(soft) - 0.02) * 4).clamp(0, 1)  # pigment pools at region borders
    pigment = (1 - bleed) * (0.75 + 0.45 * pool)
    pigment = pigment * (1 + 0.07 * _texture(img, 23, 0.7)) * (1 + 0.12 * _texture(img, 29, 4.0))
    paper = img.new_tensor([0.98, 0.96, 0.90]).view(1, 3, 1, 1)
    return (paper * (1 - 0.9 * pigment)).clamp(0, 1)


def _neon(img: Tensor, person: Tensor) -> Tensor:
    s = img.shape[-1]
    f = s / 64
    edges = (_edges(_blur(img, 0.5 * f)) * 6).clamp(0, 1)
    mx = img.amax(1, keepdim=True)
    mn = img.amin(1, keepdim=True)
    sat = (mx - mn) / (mx + 1e-3)
    hue = (img - mn) / (mx - mn + 1e-3)  # the colour with its grey removed, max channel 1
    cyan = img.new_tensor([0.3, 0.95, 1.0]).view(1, 3, 1, 1)
    colour = torch.where(sat > 0.25, hue, cyan)
    colour = torch.where((sat > 0.25) & (sat <= 0.45), 0.5 * (hue + cyan), colour)
    line = edges * colour
    glow = _blur(line, 1.6 * f)
    base = img.new_tensor([0.02, 0.01, 0.06]).view(1, 3, 1, 1)
    fill = 0.10 * img * person  # a faint fill keeps the face readable
    return (base + fill + 1.1 * line + 1.4 * glow).clamp(0, 1)


def _marble(img: Tensor, person: Tensor) -> Tensor:
    s = img.shape[-1]
    lum = _luma(img)
    lum = (0.35 + 0.75 * (lum - 0.35)).clamp(0, 1)
    x, y = _grid(s)
    warp = _texture(img, 41, 5.0)
    veins = torch.abs(torch.sin(3.0 * x + 2.0 * y + 2.2 * warp))
    vein = (1 - veins / 0.12).clamp(0, 1) * 0.35
    lo = img.new_tensor([0.42, 0.42, 0.45]).view(1, 3, 1, 1)
    hi = img.new_tensor([0.98, 0.97, 0.94]).view(1, 3, 1, 1)
    stone = lo + (hi - lo) * (0.25 + 0.85 * lum).clamp(0, 1)
    stone = stone * (1 - vein)
    return stone * person + img * (1 - person)


_STYLES = {
    "pencil": _pencil,
    "comic": _comic,
    "zombie": _zombie,
    "mosaic": _mosaic,
    "watercolor": _watercolor,
    "neon": _neon,
    "marble": _marble,
}


def apply_domain(img01: Tensor, person: Tensor, domain: Tensor) -> Tensor:
    """Apply each image's domain style. `img01`: [N,3,H,W] photo render in [0,1]; `person`: [N,1,H,W] soft mask
    of everything in front of the background; `domain`: [N] long. Returns [N,3,H,W] in [0,1]."""
    out = img01
    for d in torch.unique(domain).tolist():
        name = DOMAIN_NAMES[d]
        if name == "photo":
            continue
        sel = (domain == d).nonzero().squeeze(1)
        styled = _STYLES[name](img01.index_select(0, sel), person.index_select(0, sel))
        if out is img01:
            out = img01.clone()
        out.index_copy_(0, sel, styled)
    return out
