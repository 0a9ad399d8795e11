"""StyleCLIP global directions (Patashnik et al. 2021), written from the facts in reference-defaults.md.

Preprocessing (edit-independent, cached on disk):

* Style statistics: `stat_samples` (official 100,000) z → W (truncation 0.7) → S; per-channel mean and std of
  every style vector (`Generator.styles`, ToRGB included).
* Channel relevance ("fs3"): for every channel c of the conv layers of resolution ≤ `max_resolution` (128; ToRGB
  excluded) and each of `relevance_images` (100) sampled images: set channel c to mean_c − 5σ_c and to
  mean_c + 5σ_c (`sigma` = 5), render both, CLIP-encode them with CLIP's own preprocessing (antialiased bicubic
  resize + centre crop + CLIP mean/std, as the official code's PIL `preprocess` of uint8 images), L2-normalise, take plus − minus, normalise, average over the images, normalise →
  one unit vector per channel; rows of the other channels are zero. Vectorised: `batch_size` (channel, image)
  pairs per forward pass. Cached as `<cache_dir>/<hash>.pt` (atomic write), the hash covering the generator's
  and the CLIP's weights and every preprocessing setting, so it is computed once per (generator, CLIP) whatever
  the edit; the harness also caches the prepared state per edit.
  Difference from the official relevance code, deliberate: it resets the style vectors with a shallow copy
  (`dlatents = copy.copy(dlatents_o)`, then `dlatents[layer][:, c] = mean`), so every channel visited earlier
  stays pinned at its mean for the later channels' image pairs; by the 128 px layers the 100 images' coarse and
  medium styles all sit at their means. Here each pair changes channel c alone, as the paper describes and
  reference-defaults.md states.
  Devices: the preprocessing blob (fresh or from the cache), the text direction and the prepared state (r, std)
  are CPU tensors; `apply` moves Δs to the generator's device.

Inference: Δt = 79-template text direction (neutral → target, `ClipBackbone.text_direction`); r = fs3 · Δt;
channels with |r| < β are zeroed; r / max|r|; times each channel's std; s ← s + α · Δs. Defaults α 4.1, β 0.15;
`beta: auto` takes the largest β in 0.10, 0.11 … 0.29 that keeps more than 20 channels (0.10 when none does).
With several CLIP networks, r = Σ_k weight_k · fs3_k · Δt_k (an extension; the paper uses one ViT-B/32).
`alpha` is one number: sweep strengths with one suite variant per α; it is used by `apply` only
(`APPLY_ONLY_PARAMS`), so the variants need one preparation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from bench.cachefile import atomic_save, load_or_none, state_hash
from bench.errors import BenchError
from bench.progress import track
from methods.base import EditMethod, EditResult, SourceBatch
from methods.losses import clip_networks, generator_of, source_latents_or_invert
from zoo.checkpoints import module_hash

AUTO_BETAS = tuple(round(0.10 + 0.01 * i, 2) for i in range(20))  # 0.10 .. 0.29
MIN_CHANNELS = 20


# ------------------------------------------------------------------------------------------------ S-space helpers
def flat_styles(generator, w_plus: torch.Tensor) -> torch.Tensor:
    """All style vectors of W+ ``[N, L, D]`` concatenated: ``[N, T]`` (T = total channels, ToRGB included)."""
    return torch.cat(generator.styles(w_plus), dim=1)


def split_styles(generator, flat: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.split(flat, [layer.channels for layer in generator.style_layers], dim=1))


def channel_mask(generator, max_resolution: int = 128) -> torch.Tensor:
    """Bool ``[T]``: the channels the relevance covers (conv layers of resolution ≤ max_resolution)."""
    return torch.cat([torch.full((layer.channels,), layer.kind == "conv" and layer.resolution <= max_resolution)
                      for layer in generator.style_layers])


def _sample_w_plus(generator, n: int, truncation: float, rng: torch.Generator) -> torch.Tensor:
    z = torch.randn(n, generator.style_dim, generator=rng).to(generator.device)
    return generator.to_w_plus(z, "z", truncation)  # mapping, truncation, replicated over W+ (a view)


@torch.no_grad()
def style_statistics(generator, samples: int = 100000, truncation: float = 0.7, seed: int = 0,
                     batch: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std ``[T]`` of S over sampled latents (float64 accumulation)."""
    rng = torch.Generator().manual_seed(seed)
    total = s1 = s2 = None
    for start in track(range(0, samples, batch), "style statistics"):
        s = flat_styles(generator, _sample_w_plus(generator, min(batch, samples - start), truncation, rng)).double()
        if s1 is None:
            s1, s2, total = s.sum(0), s.pow(2).sum(0), 0
        else:
            s1, s2 = s1 + s.sum(0), s2 + s.pow(2).sum(0)
        total += s.shape[0]
    mean = s1 / total
    var = (s2 / total - mean.pow(2)).clamp_min(0)  # population std (numpy's default)
    return mean.float(), var.sqrt().float()


@torch.no_grad()
def channel_relevance(generator, clip, mean: torch.Tensor, std: torch.Tensor, mask: torch.Tensor,
                      images: int = 100, sigma: float = 5.0, truncation: float = 0.7, seed: int = 1,
                      batch_size: int = 64) -> torch.Tensor:
    """fs3 ``[T, D]``: unit CLIP-space direction of each masked channel (zero rows elsewhere)."""
    rng = torch.Generator().manual_seed(seed)
    base = flat_styles(generator, _sample_w_plus(generator, images, truncation, rng))  # [N, T]
    channels = mask.nonzero().flatten().to(base.device)
    mean, std = mean.to(base.device), std.to(base.device)
    pairs_c = channels.repeat_interleave(images)  # channel-major (c, i) pairs
    pairs_i = torch.arange(images, device=base.device).repeat(len(channels))
    acc = None
    for start in track(range(0, len(pairs_c), batch_size), "channel relevance"):
        c = pairs_c[start:start + batch_size]
        i = pairs_i[start:start + batch_size]
        k = torch.arange(len(c), device=base.device)
        s = base[i].repeat(2, 1)
        s[k, c] = mean[c] - sigma * std[c]
        s[k + len(c), c] = mean[c] + sigma * std[c]
        x = generator.synthesis(split_styles(generator, s)).clamp(-1, 1)
        e = F.normalize(clip.encode_images(x, resize="bicubic", normalize=True, antialias=True).float(), dim=-1)
        d = F.normalize(e[len(c):] - e[:len(c)], dim=-1)
        if acc is None:
            acc = torch.zeros(base.shape[1], d.shape[1], device=base.device)
        acc.index_add_(0, c, d)
    if acc is None:
        raise BenchError("no style channel qualifies for the relevance (max_resolution too low?)")
    return F.normalize(acc, dim=-1)  # the mean's direction = the sum's; zero rows stay zero


# ---------------------------------------------------------------------------------------------------- inference
def threshold_direction(r: torch.Tensor, beta: float) -> torch.Tensor:
    """Zero |r| < β, then divide by max |r| (all-zero stays zero)."""
    r = torch.where(r.abs() < beta, torch.zeros_like(r), r)
    peak = r.abs().max()
    return r / peak if peak > 0 else r


def auto_beta(r: torch.Tensor, betas=AUTO_BETAS, min_channels: int = MIN_CHANNELS) -> float:
    """The largest β of `betas` keeping more than `min_channels` channels (|r| ≥ β); the smallest β otherwise."""
    keeping = [b for b in betas if int((r.abs() >= b).sum()) > min_channels]
    return max(keeping) if keeping else min(betas)


def style_delta(r: torch.Tensor, std: torch.Tensor, beta: float) -> torch.Tensor:
    """Δs = threshold_direction(r, β) · std."""
    return threshold_direction(r, beta) * std.to(r)


class StyleClipGlobal(EditMethod):
    """StyleCLIP global directions in style space S."""

    APPLY_ONLY_PARAMS = frozenset({"alpha"})  # prepare computes r and β; α scales Δs in apply
    CACHE_LOCATION_PARAMS = frozenset({"cache_dir"})
    POSITIVE_PARAMS = frozenset({"stat_samples", "relevance_images", "sigma", "max_resolution", "batch_size"})
    NON_NEGATIVE_PARAMS = frozenset({"beta"})  # alpha may be negative: the opposite edit
    UNIT_INTERVAL_PARAMS = frozenset({"truncation"})

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"alpha": 4.1, "beta": 0.15, "stat_samples": 100000, "relevance_images": 100, "sigma": 5.0,
                "truncation": 0.7, "max_resolution": 128, "batch_size": 64,
                "cache_dir": "runs/cache/global_directions"}

    def __init__(self, **params: Any):
        super().__init__(**params)
        beta = self.params["beta"]
        if not (beta == "auto" or isinstance(beta, (int, float))):
            raise BenchError(f"styleclip_global: beta must be a number or 'auto', got {beta!r}")
        self.state: dict[str, Any] | None = None

    def _settings(self) -> dict[str, Any]:
        p = self.params
        settings = {k: p[k] for k in ("stat_samples", "relevance_images", "sigma", "truncation", "max_resolution")}
        return {**settings, "clip_resize": "bicubic, antialiased"}  # the relevance's preprocessing (zoo/clip.py)

    def preprocess(self, generator, clip) -> dict[str, torch.Tensor]:
        """Statistics + relevance for one (generator, CLIP) pair, from the method cache when present."""
        p = self.params
        # the networks' hashes once per module object (module_hash): not re-read in every timed preparation
        key = state_hash({}, {"settings": self._settings(), "generator": module_hash(generator),
                              "clip": module_hash(clip)})[:24]
        path = Path(p["cache_dir"]).expanduser() / f"{key}.pt"
        blob = load_or_none(path, map_location="cpu", weights_only=True)  # CPU, as a fresh compute; damaged: None
        if blob is not None:
            return blob
        mean, std = style_statistics(generator, int(p["stat_samples"]), float(p["truncation"]))
        mask = channel_mask(generator, int(p["max_resolution"]))
        fs3 = channel_relevance(generator, clip, mean, std, mask, int(p["relevance_images"]), float(p["sigma"]),
                                float(p["truncation"]), batch_size=int(p["batch_size"]))
        blob = {"mean": mean.cpu(), "std": std.cpu(), "mask": mask.cpu(), "fs3": fs3.cpu()}
        atomic_save(blob, path)
        return blob

    def prepare(self, backbones: Any, edit: Any) -> None:
        generator = generator_of(backbones)
        networks = clip_networks(backbones)
        r = None
        std = None
        for clip, weight in networks:
            blob = self.preprocess(generator, clip)
            dt = clip.text_direction(edit.neutral, edit.target).float().cpu()
            term = weight * (blob["fs3"].float() @ dt)
            r = term if r is None else r + term
            std = blob["std"]
        beta = auto_beta(r) if self.params["beta"] == "auto" else float(self.params["beta"])
        self.state = {"r": r, "std": std, "beta": float(beta)}

    def prepared_state(self) -> dict[str, Any] | None:
        return self.state

    def load_prepared_state(self, state: dict[str, Any]) -> None:
        self.state = state

    def apply(self, backbones: Any, sources: SourceBatch, edit: Any) -> EditResult:
        if self.state is None:
            raise BenchError("styleclip_global: apply before prepare")
        generator = generator_of(backbones)
        w = source_latents_or_invert(backbones, sources).to(generator.device)
        delta = style_delta(self.state["r"].float(), self.state["std"].float(), float(self.state["beta"]))
        with torch.no_grad():
            s = flat_styles(generator, w) + float(self.params["alpha"]) * delta.to(generator.device)
            images = generator.synthesis(split_styles(generator, s))
        return EditResult(edited_images=images.clamp(-1, 1), edited_latents=None)
