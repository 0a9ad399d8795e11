"""StyleCLIP latent mapper (Patashnik et al. 2021), written from the facts in reference-defaults.md.

* `LevelsMapper`: three sub-mappers over the W+ groups of `zoo.stylegan2.generator.latent_split` (coarse 0–3,
  medium 4–7, fine 8+, i.e. up to the generator's n_latent); each = PixelNorm + 4 × EqualLinear(D→D, lr_mul 0.01,
  fused leaky ReLU), applied to every W+ vector of its group. A disabled group outputs zeros.
  `pixel_norm`: "official" (default) normalises as the official code does, over the group's W+ rows of each
  channel (rosinality's PixelNorm, `dim=1`, applied to the `[N, rows, D]` slice; orpatashnik/StyleCLIP issue #82):
  where the rows are one repeated w, as for sampled latents, the sub-mapper sees sign(w). "vector" normalises each
  W+ vector over its D values, as StyleGAN's mapping network does and the paper's description implies.
* Edit: ŵ = w + 0.1 · M(w). Training always uses the paper's 0.1 (the official training computes
  w + 0.1 · M(w)); the `strength` parameter (default 0.1) scales M(w) at apply only, so a strength sweep reuses
  one trained mapper (`APPLY_ONLY_PARAMS`) and a strength other than 0.1 moves along the learned offset beyond
  (or short of) what the training saw.
* Training loss (per batch): 1.0 · D_CLIP(G(ŵ), target) + 0.1 · ID(G(ŵ), G(w)) + 0.8 · MSE(ŵ, w), D_CLIP being
  StyleCLIP's 1 − cos with raw pixels and the area resize (`methods.losses`), the target text without templates.
  The ID term needs the backbone set's `identity` network: an `id_lambda` > 0 set by the suite without one is an
  error (as in `styleclip_optimization`); the default 0.1 then trains without the term, and the prepared state's
  `id_loss` says whether the term was on.
* Ranger (RAdam + Lookahead, `methods.ranger`), lr 0.5, batch 2, `steps` (50,000), validation loss on
  `val_count` held-out latents every `val_interval` (2,000) steps and at the end; the weights with the lowest
  validation loss are kept (the paper keeps the best checkpoint the same way; the untrained mapper, validated
  before the first step, is not a candidate, as in the official coach).
* Training latents, as the official coach: `train_dataset_size` (5,000) random z mapped to W with truncation 0.7,
  drawn once and visited in shuffled epochs (batches of `batch_size`, the last short one dropped); validation on
  `val_count` (201: the official validation stops after 201 batches of 1) other such latents. With `latents:
  path.pt`, the file's rows instead (the paper's e4e inversions of CelebA-HQ are such a file), its last
  `val_count` rows for validation. The file is read as sources' latents files are (`bench generate`): a W+
  tensor `[N, n_latent, D]`, `{"w": [N, D]}`, or z (`[N, D]` or `{"z": ...}`), which is mapped with `truncation`.

`prepare` trains (its `prepared_state` is the mapper's weights plus the training record, so the harness caches
it); `apply` is one mapper forward + one generator forward.
Differences from the official code: no gradient centralisation in Ranger (see `methods.ranger`); the validation
set is sampled latents (or the file's last `val_count` rows), not the CelebA-HQ test inversions; validation runs in
chunks of `VAL_CHUNK` latents (the official batch is 1: the mean over latents is the same).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from bench.errors import BenchError
from bench.progress import track
from methods.base import EditMethod, EditResult, SourceBatch
from methods.losses import (clip_networks, frozen, generator_of, prompt_features, require_identity,
                            source_latents_or_invert, weighted_clip_loss)
from methods.ranger import Ranger
from zoo.stylegan2.generator import latent_split
from zoo.stylegan2.layers import EqualLinear, PixelNorm

GROUPS = ("coarse", "medium", "fine")
PIXEL_NORMS = ("official", "vector")
VAL_CHUNK = 16  # validation latents per forward pass


def check_groups(groups: Any, who: str = "styleclip_mapper") -> tuple[str, ...]:
    """`groups` as a tuple of mapper group names; a BenchError naming the bad value and the valid names."""
    if isinstance(groups, str) or not isinstance(groups, (list, tuple)):
        raise BenchError(f"{who}: groups must be a list of {', '.join(GROUPS)}; got {groups!r}")
    bad = [g for g in groups if g not in GROUPS]
    if bad:
        raise BenchError(f"{who}: unknown mapper group(s) {bad}; valid: {', '.join(GROUPS)}")
    return tuple(groups)


def check_pixel_norm(pixel_norm: Any) -> str:
    if pixel_norm not in PIXEL_NORMS:
        raise BenchError(f"styleclip_mapper: unknown pixel_norm {pixel_norm!r}; valid: {', '.join(PIXEL_NORMS)}")
    return pixel_norm


class SubMapper(nn.Module):
    """PixelNorm + `layers` × EqualLinear(D, D, lr_mul 0.01, fused leaky ReLU) on a group's W+ rows."""

    def __init__(self, dim: int, layers: int = 4, lr_mul: float = 0.01, pixel_norm: str = "official"):
        super().__init__()
        self.pixel_norm = check_pixel_norm(pixel_norm)
        self.net = nn.Sequential(PixelNorm(), *[EqualLinear(dim, dim, lr_mul=lr_mul, activation=True)
                                                for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x ``[N, rows, D]``, normalised per `pixel_norm` (the official code: over the rows, per channel), then
        every vector through the linear layers."""
        layers = iter(self.net)
        if self.pixel_norm == "official":
            next(layers)  # the per-vector PixelNorm, replaced by rosinality's PixelNorm on dim 1 of the slice
            x = x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)
        flat = x.reshape(-1, x.shape[-1])
        for layer in layers:
            flat = layer(flat)
        return flat.view(x.shape)


class LevelsMapper(nn.Module):
    """M(w) for W+ ``[N, n_latent, D]``: each enabled group's sub-mapper on its indices, zeros elsewhere."""

    def __init__(self, n_latent: int, style_dim: int, enabled: tuple[str, ...] = GROUPS, layers: int = 4,
                 pixel_norm: str = "official"):
        super().__init__()
        enabled = check_groups(enabled, "LevelsMapper")
        self.n_latent, self.style_dim, self.pixel_norm = n_latent, style_dim, check_pixel_norm(pixel_norm)
        self.split = {g: idx for g, idx in latent_split(n_latent).items() if idx}
        self.enabled = tuple(g for g in GROUPS if g in enabled)
        self.mappers = nn.ModuleDict({g: SubMapper(style_dim, layers, pixel_norm=pixel_norm) for g in self.split})

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        parts = []
        for g in GROUPS:
            if g not in self.split:
                continue
            chunk = w[:, self.split[g]]
            parts.append(self.mappers[g](chunk) if g in self.enabled else torch.zeros_like(chunk))
        return torch.cat(parts, dim=1)


def edit_latents(mapper: LevelsMapper, w: torch.Tensor, strength: float = 0.1) -> torch.Tensor:
    """ŵ = w + strength · M(w) (strength 0.1 in StyleCLIP)."""
    return w + strength * mapper(w)


class LatentSampler:
    """Training / validation W+ latents: a pool of `pool_size` generator samples (truncation ψ) or the rows of a
    latents file, visited in shuffled epochs as the official coach's DataLoader (shuffle, drop_last) does."""

    def __init__(self, generator, truncation: float = 0.7, path: str | None = None, val_count: int = 201,
                 seed: int | None = None, pool_size: int = 5000):
        self.generator, self.truncation = generator, truncation
        self.rng = torch.Generator().manual_seed(int(torch.randint(0, 2 ** 31 - 1, ()).item()) if seed is None
                                                 else seed)
        if path:
            from bench.commands.generate import read_latents
            latents, space = read_latents(path, generator.n_latent, generator.style_dim)
            with torch.no_grad():
                latents = latents.to(generator.device)
                w = generator.to_w_plus(latents, "z", truncation) if space == "z" else latents
            if w.ndim == 2:
                w = w.unsqueeze(1).expand(-1, generator.n_latent, -1)
            if len(w) <= val_count:
                raise BenchError(f"latents file {path} holds {len(w)} latents; need more than val_count={val_count}")
            self.pool, self.val = w[:-val_count], w[-val_count:]
        else:
            self.pool, self.val = self._sample(pool_size), self._sample(val_count)
        self._order, self._next = torch.empty(0, dtype=torch.long), 0

    @torch.no_grad()
    def _sample(self, n: int) -> torch.Tensor:
        g = self.generator
        z = torch.randn(n, g.style_dim, generator=self.rng).to(g.device)
        return g.to_w_plus(z, "z", self.truncation)  # mapping, truncation, replicated over W+ (a view)

    def batch(self, n: int) -> torch.Tensor:
        if n > len(self.pool):
            raise BenchError(f"styleclip_mapper: batch_size {n} exceeds the {len(self.pool)} training latents")
        if self._next + n > len(self._order):  # a new epoch; the short remainder is dropped
            self._order, self._next = torch.randperm(len(self.pool), generator=self.rng), 0
        idx = self._order[self._next:self._next + n]
        self._next += n
        return self.pool[idx.to(self.pool.device)]


TRAIN_STRENGTH = 0.1  # the official training's w + 0.1 · M(w), whatever strength apply uses


def embedding_norm(clip, images: torch.Tensor) -> torch.Tensor:
    """‖E_I(x)‖ per image [N]: the CLIP image embedding before L2 normalisation, StyleCLIP's input handling (raw
    [-1, 1] pixels, area resize)."""
    return clip.encode_images(images, resize="area", normalize=False, normalize_embeddings=False).norm(dim=-1)


def mapper_loss(generator, mapper, networks, texts, w, id_loss=None, clip_lambda: float = 1.0,
                id_lambda: float = 0.1, latent_l2_lambda: float = 0.8, norm_lambda: float = 0.0
                ) -> tuple[torch.Tensor, dict[str, float]]:
    """StyleCLIP's mapper loss; `norm_lambda` > 0 adds StyleGAN-NADA's mining term, the MSE between the first CLIP's
    embedding norms of G(w) and G(ŵ) (NADA's copy of the mapper computes it with its first CLIP, ViT-B/32)."""
    with torch.no_grad():
        x = generator(w) if id_loss is not None or norm_lambda > 0 else None
    w_hat = edit_latents(mapper, w, TRAIN_STRENGTH)
    x_hat = generator(w_hat)
    clip = weighted_clip_loss(networks, x_hat, texts).mean()
    latent = (w_hat - w).pow(2).mean()
    loss = clip_lambda * clip + latent_l2_lambda * latent
    parts = {"clip": float(clip.detach()), "latent_l2": float(latent.detach())}
    if id_loss is not None and id_lambda > 0:
        ident = id_loss(x_hat, x)
        loss = loss + id_lambda * ident
        parts["id"] = float(ident.detach())
    if norm_lambda > 0:
        first = networks[0][0]
        with torch.no_grad():
            norm_before = embedding_norm(first, x)
        norm = (embedding_norm(first, x_hat) - norm_before).pow(2).mean()
        loss = loss + norm_lambda * norm
        parts["norm"] = float(norm.detach())
    parts["total"] = float(loss.detach())
    return loss, parts


def train_mapper(generator, networks, texts, mapper: LevelsMapper, sampler: LatentSampler, steps: int,
                 lr: float = 0.5, batch_size: int = 2, val_interval: int = 2000, id_loss=None,
                 clip_lambda: float = 1.0, id_lambda: float = 0.1, latent_l2_lambda: float = 0.8,
                 norm_lambda: float = 0.0) -> tuple[LevelsMapper, dict[str, Any]]:
    """Train `mapper` in place; returns the best (lowest validation loss) copy and a training record. The
    validation before the first step is recorded but, as in the official coach (its step-0 validation returns
    nothing), is not a candidate: an untrained mapper is never the one kept."""
    kwargs = dict(id_loss=id_loss, clip_lambda=clip_lambda, id_lambda=id_lambda, latent_l2_lambda=latent_l2_lambda,
                  norm_lambda=norm_lambda)
    opt = Ranger([p for p in mapper.parameters() if p.requires_grad], lr=lr)
    record: dict[str, Any] = {"val": [], "train": []}
    best, best_loss, best_step = copy.deepcopy(mapper.state_dict()), float("inf"), 0

    def validate(step: int) -> None:
        nonlocal best, best_loss, best_step
        mapper.eval()
        total = 0.0
        with torch.no_grad():
            for chunk in sampler.val.split(VAL_CHUNK):  # the mean over latents, as the official batch-1 average
                total += mapper_loss(generator, mapper, networks, texts, chunk, **kwargs)[1]["total"] * len(chunk)
        total /= len(sampler.val)
        mapper.train()
        record["val"].append((step, total))
        if step > 0 and total < best_loss:
            best, best_loss, best_step = copy.deepcopy(mapper.state_dict()), total, step

    with frozen(generator):
        mapper.train()
        validate(0)
        for step in track(range(1, steps + 1), "mapper training"):
            loss, parts = mapper_loss(generator, mapper, networks, texts, sampler.batch(batch_size), **kwargs)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            record["train"].append(parts["total"])
            if step % val_interval == 0 or step == steps:
                validate(step)
    mapper.load_state_dict(best)
    mapper.eval()
    record.update(best_val_loss=best_loss, best_step=best_step)
    return mapper, record


class StyleClipMapper(EditMethod):
    """StyleCLIP latent mapper: trained per edit in `prepare`, one forward pass in `apply`."""

    independent_prepare = True  # one mapper per edit, nothing shared
    APPLY_ONLY_PARAMS = frozenset({"strength"})  # training uses TRAIN_STRENGTH
    POSITIVE_PARAMS = frozenset({"steps", "val_interval", "val_count", "train_dataset_size", "batch_size", "lr"})
    NON_NEGATIVE_PARAMS = frozenset({"clip_lambda", "id_lambda", "latent_l2_lambda"})  # strength < 0: the opposite
    UNIT_INTERVAL_PARAMS = frozenset({"truncation"})

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"steps": 50000, "val_interval": 2000, "val_count": 201, "train_dataset_size": 5000, "batch_size": 2,
                "lr": 0.5, "clip_lambda": 1.0, "id_lambda": 0.1, "latent_l2_lambda": 0.8,
                "groups": ["coarse", "medium", "fine"], "pixel_norm": "official", "truncation": 0.7, "latents": None,
                "strength": 0.1}

    def __init__(self, **params: Any):
        super().__init__(**params)
        check_groups(self.params["groups"])
        check_pixel_norm(self.params["pixel_norm"])
        self.mapper: LevelsMapper | None = None
        self.record: dict[str, Any] = {}

    def _build(self, generator) -> LevelsMapper:
        return LevelsMapper(generator.n_latent, generator.style_dim, tuple(self.params["groups"]),
                            pixel_norm=self.params["pixel_norm"]).to(generator.device)

    def prepare(self, backbones: Any, edit: Any) -> None:
        p = self.params
        generator = generator_of(backbones)
        networks = clip_networks(backbones)
        texts = [prompt_features(clip, edit.target)[0] for clip, _ in networks]
        id_lambda = float(p["id_lambda"])
        # a suite-set id_lambda > 0 needs an identity network; the default one is dropped (and recorded) without
        id_loss = require_identity(backbones, id_lambda, "styleclip_mapper",
                                   explicit="id_lambda" in self.set_params)
        id_term = (f"on: id_lambda {p['id_lambda']}" if id_loss is not None else
                   f"off: id_lambda {p['id_lambda']}" if id_lambda <= 0 else
                   "off: the backbone set has no 'identity' network")
        sampler = LatentSampler(generator, p["truncation"], p["latents"], int(p["val_count"]),
                                pool_size=int(p["train_dataset_size"]))
        self.mapper, self.record = train_mapper(
            generator, networks, texts, self._build(generator), sampler, int(p["steps"]), lr=float(p["lr"]),
            batch_size=int(p["batch_size"]), val_interval=int(p["val_interval"]), id_loss=id_loss,
            clip_lambda=float(p["clip_lambda"]), id_lambda=float(p["id_lambda"]),
            latent_l2_lambda=float(p["latent_l2_lambda"]))
        self.record["id_loss"] = id_term

    def prepared_state(self) -> dict[str, Any] | None:
        if self.mapper is None:
            return None
        return {"mapper": self.mapper.state_dict(), "n_latent": self.mapper.n_latent,
                "style_dim": self.mapper.style_dim, "groups": list(self.mapper.enabled),
                "pixel_norm": self.mapper.pixel_norm,
                "best_val_loss": float(self.record.get("best_val_loss", float("nan"))),
                "best_step": int(self.record.get("best_step", -1)), "id_loss": self.record.get("id_loss", "")}

    def load_prepared_state(self, state: dict[str, Any]) -> None:
        mapper = LevelsMapper(int(state["n_latent"]), int(state["style_dim"]), tuple(state["groups"]),
                              pixel_norm=state.get("pixel_norm", "vector"))  # states before the option: "vector"
        mapper.load_state_dict(state["mapper"])
        self.mapper = mapper.eval()
        self.record = {"best_val_loss": state.get("best_val_loss"), "best_step": state.get("best_step"),
                       "id_loss": state.get("id_loss", "")}

    def apply(self, backbones: Any, sources: SourceBatch, edit: Any) -> EditResult:
        if self.mapper is None:
            raise BenchError("styleclip_mapper: apply before prepare (no trained mapper)")
        generator = generator_of(backbones)
        w = source_latents_or_invert(backbones, sources).to(generator.device)
        self.mapper.to(generator.device)
        with torch.no_grad():
            w_hat = edit_latents(self.mapper, w, float(self.params["strength"]))
            images = generator(w_hat)
        return EditResult(edited_images=images.clamp(-1, 1), edited_latents=w_hat)
