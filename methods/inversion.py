"""Image → W+ inversion, the one implementation: `invert(backbones, images, how)` serves the image-folder sources
(`bench.sources`, the suite's `inversion:`), the methods that need latents of sources that have none
(`methods.losses.source_latents_or_invert`) and TediGAN's starting point (`methods.tedigan`).

`how`: ``"encoder"`` (the backbone set's `encoder` role, an error without one), ``"optimization"`` (`project` on
the set's generator) or ``"auto"`` (the encoder when the set has one, else projection).

`project(generator, images, steps=300, lr=0.1, ...)`: rosinality's projector, less its noise optimisation. W+ starts
at the generator's average latent at every index (rosinality's start; also under `inversion: optimization` when the
set has an encoder: the encoder is not used as a starting point; pass `init` for another start) and is optimised
with Adam under StyleCLIP's / rosinality's projector learning-rate schedule (`losses.lr_schedule`: warm-up over 5 %,
cosine ramp-down over the last 25 %) against ``pixel_weight · MSE + perceptual_weight · perceptual``. It runs with
gradients on (`torch.enable_grad`), so it also works when called under `torch.no_grad`.
Noise inputs stay fixed (the generator's buffers); rosinality's projector also optimises the noise maps with a
noise regulariser and perturbs the latent with decaying noise — neither is done here.

Perceptual term: rosinality uses LPIPS-VGG, and above 256 px it average-pools the generated image down to 256 px
first (its images are loaded at 256); here both images go to the perceptual term pooled by ``size // 256`` when the
generator is larger than 256 px (`perceptual_input`), while the pixel MSE stays at full size. Pretrained VGG weights
are not available offline, so `perceptual` chooses: ``"pyramid"`` (default stand-in: mean squared error of a
4-level average-pooled image pyramid, a scale-aware pixel loss, not a learned perceptual metric), ``"lpips"`` (the
lpips package's VGG, built by `metrics.lpips.build_lpips`; needs torchvision's VGG16 weights in the torch hub cache),
``"lpips_rand"`` (lpips with random VGG weights: `pnet_rand=True`, for tests only), ``"none"``, or any callable
``(x, y) -> [N]`` per-sample distance.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from bench.errors import BenchError
from bench.progress import track
from methods.base import SourceBatch
from methods.losses import frozen, generator_of, lr_schedule

INVERSIONS = ("auto", "encoder", "optimization")  # the choices of `invert(how=...)`
PROJECTION_STEPS = 300  # `project`'s default: what `inversion: optimization` sources run
PERCEPTUAL_SIZE = 256  # rosinality's projector pools generated images above this size for LPIPS


def latents_inversion(sources: SourceBatch) -> str | None:
    """How a batch's latents were obtained from its images ("encoder", "optimization"), or None when they were not
    (latents drawn or read, then rendered): `SourceBatch.inversion`."""
    return sources.inversion


def pyramid_distance(x: torch.Tensor, y: torch.Tensor, levels: int = 4) -> torch.Tensor:
    """Per-sample mean over pyramid levels of the MSE between ×2-average-pooled copies (level 0 = the images);
    pooling stops once a level is below 8 px, and the mean is over the levels summed (3 for 16 px images)."""
    if levels < 1:
        raise ValueError(f"pyramid_distance needs levels >= 1, got {levels}")
    total = x.new_zeros(x.shape[0])
    summed = 0
    for _ in range(levels):
        total = total + (x - y).pow(2).flatten(1).mean(1)
        summed += 1
        if min(x.shape[-2:]) < 8:
            break
        x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    return total / summed


PERCEPTUAL = ("pyramid", "lpips", "lpips_rand", "none")  # the named choices of `perceptual_fn`

_LPIPS_CACHE: dict[tuple[bool, str], Any] = {}


def lpips_distance(pretrained: bool = True, device: str | torch.device = "cpu") -> Callable:
    """Per-sample LPIPS-VGG distance ``(x, y) -> [N]`` on [-1, 1] images; one network per (weights, device)."""
    key = (pretrained, str(device))
    if key not in _LPIPS_CACHE:
        from metrics.lpips import build_lpips
        _LPIPS_CACHE[key] = build_lpips("vgg", pnet_rand=not pretrained, device=device,
                                        who="perceptual 'lpips'", instead="perceptual: pyramid")
    net = _LPIPS_CACHE[key]
    return lambda x, y: net(x, y, normalize=False).flatten(1).mean(1)


def perceptual_fn(perceptual: str | Callable | None, device) -> Callable | None:
    if perceptual is None or perceptual == "none":
        return None
    if callable(perceptual):
        return perceptual
    if perceptual == "pyramid":
        return pyramid_distance
    if perceptual == "lpips":
        return lpips_distance(True, device)
    if perceptual == "lpips_rand":
        return lpips_distance(False, device)
    raise BenchError(f"unknown perceptual loss {perceptual!r}; valid: {', '.join(PERCEPTUAL)}")


def perceptual_input(images: torch.Tensor) -> torch.Tensor:
    """What the perceptual term sees: images above 256 px average-pooled by ``size // 256`` (rosinality's
    projector: ``img_gen.reshape(b, c, h // f, f, w // f, f).mean([3, 5])`` with ``f = h // 256``), else as is."""
    size = images.shape[-1]
    if size <= PERCEPTUAL_SIZE:
        return images
    return F.avg_pool2d(images, size // PERCEPTUAL_SIZE)


def project(generator, images: torch.Tensor, steps: int = PROJECTION_STEPS, lr: float = 0.1,
            pixel_weight: float = 1.0, perceptual_weight: float = 1.0, perceptual: str | Callable | None = "pyramid",
            init: torch.Tensor | None = None) -> torch.Tensor:
    """Optimisation-based projection of images ``[N, 3, S, S]`` in [-1, 1] into W+ ``[N, n_latent, D]``, from the
    average latent (or `init`), with gradients on whatever the caller's grad mode.

    Every image is optimised independently (per-sample losses are summed; Adam is element-wise), as one batch."""
    device = generator.device
    images = images.to(device)
    if images.shape[-1] != generator.size:
        images = F.interpolate(images, size=(generator.size, generator.size), mode="area")
    if init is None:
        avg = generator.get_latent_avg().detach()
        init = avg.view(1, 1, -1).expand(images.shape[0], generator.n_latent, -1)
    w = init.detach().clone().to(device).requires_grad_(True)
    dist = perceptual_fn(perceptual, device) if perceptual_weight > 0 else None
    target = perceptual_input(images)
    opt = torch.optim.Adam([w], lr=lr)
    with torch.enable_grad(), frozen(generator):
        for step in track(range(steps), "projection"):
            for group in opt.param_groups:
                group["lr"] = lr_schedule(step / steps, lr)
            x = generator(w)
            loss = pixel_weight * (x - images).pow(2).flatten(1).mean(1)
            if dist is not None:
                loss = loss + perceptual_weight * dist(perceptual_input(x), target)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            opt.step()
    return w.detach()


def inversion_kind(backbones: Any, how: str = "auto") -> str:
    """The inversion `how` means for this backbone set: "encoder" or "optimization" ("auto": the encoder when the
    set has one)."""
    if how not in INVERSIONS:
        raise BenchError(f"unknown inversion {how!r}; valid: {', '.join(INVERSIONS)}")
    if how == "auto":
        return "encoder" if _role(backbones, "encoder") is not None else "optimization"
    return how


def invert(backbones: Any, images: torch.Tensor, how: str = "auto", **project_kwargs) -> torch.Tensor:
    """W+ ``[N, n_latent, D]`` of images ``[N, 3, S, S]`` in [-1, 1] by `inversion_kind(backbones, how)`: the set's
    `encoder`, or `project` on the set's generator (`project_kwargs` go to it; the encoder ignores them)."""
    if inversion_kind(backbones, how) == "encoder":
        encoder = _role(backbones, "encoder")
        if encoder is None:
            roles = sorted(getattr(backbones, "roles", {}) or {})
            raise BenchError(f"inversion is 'encoder' but the backbones provide no 'encoder' (roles: {roles}); "
                             "use inversion: optimization")
        with torch.no_grad():
            return encoder(images)
    return project(generator_of(backbones), images, **project_kwargs)


def _role(backbones: Any, role: str):
    return backbones.get(role) if hasattr(backbones, "get") else None
