"""Image → W+ inversion shared by every method: the backbone set's encoder when it has one, otherwise
optimisation-based projection.

`project(generator, images, steps=300, lr=0.1, ...)`: W+ initialised at the generator's average latent (every index),
optimised with Adam under StyleCLIP's / rosinality's projector learning-rate schedule (`losses.lr_schedule`: warm-up
over 5 %, cosine ramp-down over the last 25 %) against ``pixel_weight · MSE + perceptual_weight · perceptual``.
Noise inputs stay fixed (the generator's buffers); rosinality's projector also optimises the noise maps with a
noise regulariser and perturbs the latent with decaying noise — neither is done here.

Perceptual term: rosinality uses LPIPS-VGG. Pretrained VGG weights are not available offline, so `perceptual`
chooses: ``"pyramid"`` (default stand-in: mean squared error of a 4-level average-pooled image pyramid, a
scale-aware pixel loss, not a learned perceptual metric), ``"lpips"`` (the lpips package's VGG; needs its
torchvision VGG16 weights in the torch hub cache), ``"lpips_rand"`` (lpips with random VGG weights:
`pnet_rand=True`, for tests only), or any callable ``(x, y) -> [N]`` per-sample distance.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from bench.errors import BenchError
from bench.progress import track
from methods.losses import frozen, lr_schedule


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
VGG16_WEIGHTS = "https://download.pytorch.org/models/vgg16-397923af.pth"  # torchvision's ImageNet VGG16

_LPIPS_CACHE: dict[tuple[bool, str], Any] = {}


def lpips_distance(pretrained: bool = True, device: str | torch.device = "cpu") -> Callable:
    key = (pretrained, str(device))
    if key not in _LPIPS_CACHE:
        import lpips
        try:
            net = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=not pretrained, verbose=False)
        except Exception as exc:  # VGG weights not downloadable offline
            raise BenchError(
                f"LPIPS-VGG is unavailable ({type(exc).__name__}: {exc}); it needs torchvision's ImageNet VGG16 "
                f"weights (vgg16-397923af.pth), downloaded once from {VGG16_WEIGHTS} into the torch hub cache "
                f"({torch.hub.get_dir()}/checkpoints) on a machine that is online, plus the lpips package's own "
                "linear-layer weights (shipped with the package); or use perceptual: pyramid") from exc
        _LPIPS_CACHE[key] = net.to(device).eval().requires_grad_(False)
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


def project(generator, images: torch.Tensor, steps: int = 300, lr: float = 0.1, pixel_weight: float = 1.0,
            perceptual_weight: float = 1.0, perceptual: str | Callable | None = "pyramid",
            init: torch.Tensor | None = None) -> torch.Tensor:
    """Optimisation-based projection of images ``[N, 3, S, S]`` in [-1, 1] into W+ ``[N, n_latent, D]``.

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
    opt = torch.optim.Adam([w], lr=lr)
    with frozen(generator):
        for step in track(range(steps), "projection"):
            for group in opt.param_groups:
                group["lr"] = lr_schedule(step / steps, lr)
            x = generator(w)
            loss = pixel_weight * (x - images).pow(2).flatten(1).mean(1)
            if dist is not None:
                loss = loss + perceptual_weight * dist(x, images)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            opt.step()
    return w.detach()


def invert(backbones: Any, images: torch.Tensor, **project_kwargs) -> torch.Tensor:
    """W+ of images: the backbone set's `encoder` when present, else `project` with the set's generator."""
    encoder = backbones.get("encoder") if hasattr(backbones, "get") else None
    generator = backbones.get("generator") if hasattr(backbones, "get") else None
    if encoder is not None:
        with torch.no_grad():
            return encoder(images)
    if generator is None:
        raise BenchError("inversion needs an 'encoder' or a 'generator' backbone")
    return project(generator, images, **project_kwargs)
