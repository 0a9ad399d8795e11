"""Losses and helpers shared by the StyleCLIP and TediGAN methods (one home for what several methods use).

* `clip_networks(backbones)`: the `clip` role as ``[(ClipBackbone, weight), ...]`` (one network or a weighted list).
* `styleclip_clip_loss(clip, images, text_features)`: StyleCLIP's per-sample CLIP loss ``1 - logit / 100`` with
  ``logit = 100 · cos(E_I(x), E_T(t))``. The image goes to CLIP *without* mean/std normalisation (raw [-1, 1]
  generator output), resized by the exact area average (`zoo.clip.area_resize`, identical to the official
  ``AvgPool2d(S * 7 // 224)(Upsample(scale_factor=7)(x))``).
* `prompt_features(clip, text)`: the plain (template-free) L2-normalised text embedding of one prompt, as the
  official optimisation and mapper encode their description.
* `lr_schedule(t, lr0)`: the official optimisation's learning-rate schedule (linear warm-up over the first 5 %,
  cosine ramp-down over the last 25 %).
* `identity_loss(backbones)`: an `IdentityLoss` around the set's `identity` embedder (None when the set has none),
  cropped by `zoo.identity.identity_crop` of the set's generator, the rule the identity metric uses too: no crop
  for the synthetic world (its identity network takes whole images), StyleCLIP's FFHQ crop (pooled to 256 px
  first, whatever the size) for any other generator.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import math
from collections.abc import Sequence
from typing import Any

import torch

from bench.errors import BenchError


def clip_networks(backbones: Any, role: str = "clip") -> list[tuple[Any, float]]:
    """The CLIP role as a list of (network, weight); a single network gets weight 1."""
    value = backbones.get(role) if hasattr(backbones, "get") else None
    if value is None:
        roles = sorted(getattr(backbones, "roles", {}) or {})
        raise BenchError(f"this method needs a '{role}' backbone (the suite provides {roles})")
    if isinstance(value, (list, tuple)):
        return [(getattr(v, "network", v), float(getattr(v, "weight", 1.0))) for v in value]
    return [(value, 1.0)]


def generator_of(backbones: Any):
    """The `generator` role (an error naming the roles the suite provides when there is none)."""
    generator = backbones.get("generator") if hasattr(backbones, "get") else None
    if generator is None:
        roles = sorted(getattr(backbones, "roles", {}) or {})
        raise BenchError(f"this method needs a 'generator' backbone (the suite provides {roles})")
    return generator


@torch.no_grad()
def prompt_features(clip, text: str | Sequence[str]) -> torch.Tensor:
    """Plain L2-normalised CLIP text embeddings ``[N, D]`` (no templates), the official StyleCLIP encoding."""
    return clip.encode_text([text] if isinstance(text, str) else list(text)).float()


def styleclip_clip_loss(clip, images: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """Per-sample ``1 - cos(E_I(area(x)), E_T)`` (= 1 - logit/100), raw [-1, 1] pixels, no CLIP normalisation.

    `text_features`: ``[D]`` or ``[1, D]`` (shared) or ``[N, D]`` (one prompt per image), L2-normalised."""
    feats = clip.encode_images(images, resize="area", normalize=False)
    text = text_features.to(feats)
    if text.ndim == 1:
        text = text.unsqueeze(0)
    return 1 - (feats * text).sum(dim=-1)


def weighted_clip_loss(networks: list[tuple[Any, float]], images: torch.Tensor,
                       texts: list[torch.Tensor]) -> torch.Tensor:
    """Σ_k weight_k · styleclip_clip_loss(clip_k, images, texts[k]), per sample ``[N]``."""
    total = None
    for (clip, weight), text in zip(networks, texts):
        term = weight * styleclip_clip_loss(clip, images, text)
        total = term if total is None else total + term
    return total


def lr_schedule(t: float, lr0: float, rampdown: float = 0.25, rampup: float = 0.05) -> float:
    """``lr0 · min(1, t / rampup) · (0.5 − 0.5 · cos(π · min(1, (1 − t) / rampdown)))``,
    ``t = step / steps``."""
    ramp = min(1.0, (1.0 - t) / rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return lr0 * ramp * min(1.0, t / rampup)


def identity_loss(backbones: Any):
    """`IdentityLoss` over the set's identity embedder, or None when the set has no `identity` role. The crop is
    `zoo.identity.identity_crop` of the set's generator (which pools any size to 256)."""
    embedder = backbones.get("identity") if hasattr(backbones, "get") else None
    if embedder is None:
        return None
    from zoo.identity import IdentityLoss, identity_crop
    if isinstance(embedder, IdentityLoss):
        return embedder
    return IdentityLoss(embedder, crop=identity_crop(generator_of(backbones)))


def require_identity(backbones: Any, weight: float, method: str, explicit: bool = True):
    """The identity loss when `weight` > 0, else None. A set without an `identity` network is an error when the
    suite set the weight (`explicit`); a default weight then turns the ID term off (None)."""
    if weight <= 0:
        return None
    loss = identity_loss(backbones)
    if loss is None and explicit:
        roles = sorted(getattr(backbones, "roles", {}) or {})
        raise BenchError(f"{method}: id_lambda={weight} needs an 'identity' backbone (the suite provides {roles}); "
                         "set id_lambda: 0 or add one")
    return loss


def source_latents_or_invert(backbones: Any, sources) -> torch.Tensor:
    """The sources' W+ latents, or their inversion (encoder when the set has one, else optimisation)."""
    if sources.latents is not None:
        return sources.latents
    from methods.inversion import invert
    return invert(backbones, sources.images)


@contextmanager
def frozen(*modules: Any) -> Iterator[None]:
    """Turn off the gradients of the modules' parameters for the block (the latents are optimised, not the
    networks) and restore each parameter's own flag afterwards. `None` entries are skipped."""
    saved = [(p, p.requires_grad) for m in modules if m is not None for p in m.parameters()]
    for p, _ in saved:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)
