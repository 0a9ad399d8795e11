"""StyleGAN-NADA (Gal et al.): text- or image-guided domain adaptation of a StyleGAN2 generator with CLIP.

`prepare` fine-tunes a copy of the suite's generator (the *trainable* twin) while a frozen copy keeps rendering the
source domain; `apply` renders the sources' W+ latents with the adapted generator (through the mined latent mapper
when `mine` is on). The harness caches `prepare` through `prepared_state` (the adapted generator's state dict, plus
the mapper's); `save_adapted(path)` writes the adapted generator as a rosinality checkpoint.

Losses, each summed over the suite's CLIP models (`backbones["clip"]`: one network or weighted `Weighted` entries):

* directional: ΔT = mean-over-templates E_T(target) − E_T(source) (NADA's convention: the per-template embeddings are
  L2-normalised and averaged, the means are *not* re-normalised before the difference); ΔI = E_I(G_train(w)) −
  E_I(G_frozen(w)) with L2-normalised image embeddings; L = 1 − cos(ΔI, ΔT), averaged over the batch.
  Image-guided (`edit.target_images`): ΔT = mean E_I(style images) − mean E_I(`source_image_count` source renders).
* global (ablation, `global_weight`): 1 − cos(E_I(G_train(w)), E_T(target)), the plain target text without templates.

`guidance`: "auto" (default) follows the edit (image-guided when it names `target_images`), "text" ignores its
`target_images` (so one edit list serves text- and image-guided variants), "image" requires them.
`edit.target_images` is a folder of style images, or `synthface:<domain>`: `target_image_count` renders of that
domain drawn from `zoo.synthface` (seed `target_image_seed`), i.e. real renders of the target domain.

Training latents: z ~ N(0, I) mapped by the frozen mapping network (no truncation unless `truncation` < 1),
replicated into W+; with probability `mixing` a second w takes over from a random crossover index (style mixing).
Noise: every render during training (the twins, the adaptive-layer probe, the source renders of an image-guided ΔT)
draws fresh noise, independently in each twin, as the official code's `randomize_noise=True` does. This is what
makes ΔI nonzero at the first step, while the twins' weights are still equal: with shared fixed noise ΔI is exactly 0
there, the first gradient of cos(ΔI, ΔT) is ~10⁶ times a normal one, and it fills Adam's second moment (β₂ ≈ 0.992)
so that every later step barely moves the weights (`tests/test_nada.py` checks that later steps move). `apply`
renders with the generator's fixed noise buffers, like every other method of the harness.

Layer selection and freezing (phases, adaptive top-k): see `methods/nada_layers.py`.

Latent-mapper mining (`mine: true`): after fine-tuning, StyleCLIP's latent mapper is trained on the adapted generator
(NADA's `mapper/` copy of StyleCLIP's trainer; here `methods.styleclip_mapper.train_mapper`): LevelsMapper with
`mapper_layers` EqualLinear (lr_mul 0.01) per W+ level after the official code's PixelNorm (over each level's rows:
`styleclip_mapper`'s `pixel_norm: official`), ŵ = w + 0.1 · M(w), Ranger lr `mapper_lr` 0.5, batch 2, a pool of
5,000 latents z mapped with truncation `mapper_truncation` 0.7 (no mixing) visited in shuffled epochs; loss `mapper_clip_weight` 1.0 · StyleCLIP's
global CLIP loss of G_adapted(ŵ) against the plain target text + `mapper_id_weight` 0.1 · ID(G_adapted(ŵ),
G_adapted(w)) (with the set's `identity` network; without one the term is off, and an explicitly set weight is an
error) + `mapper_l2_weight` 0.8 · MSE(ŵ, w) + `mapper_norm_weight` 0.5 · MSE between the first CLIP's
image-embedding norms (before L2 normalisation) of G_adapted(w) and G_adapted(ŵ). Validation on `mapper_val_count`
(201) held-out latents every `mapper_val_interval` steps and at the end keeps the best mapper. `mapper_iterations`
defaults to the official 50,000 (NADA's 50,001); CPU suites set fewer. `mapper_scale` (0.1) scales M(w) at apply
only (`APPLY_ONLY_PARAMS`).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from bench.errors import BenchError
from bench.progress import track
from methods.base import EditMethod, EditResult, SourceBatch
from methods.losses import clip_networks, generator_of, prompt_features, require_identity
from methods.nada_layers import (PHASES, candidate_modules, modules_for_w_indices, phase_modules, set_trainable,
                                 top_w_indices, w_plus_change)
from methods.styleclip_mapper import LatentSampler, LevelsMapper, train_mapper

SYNTHFACE_PREFIX = "synthface:"
GUIDANCE = ("auto", "text", "image")
# NADA's CLIP loss resizes generator tensors with torchvision's Resize, which did not antialias tensors in the
# versions it ran on (zoo/clip.py); CLIP's PIL preprocessing, the harness default, does
NADA_ANTIALIAS = False


# ------------------------------------------------------------------------------------------------------ CLIP side
# The loss CLIPs: `methods.losses.clip_networks` (one network, weight 1, or a list of `Weighted` entries).
# Text ΔT: `ClipBackbone.text_direction(source, target, renormalize=False)` (NADA's un-renormalised template means).


def image_direction(clip, style_images: torch.Tensor, source_images: torch.Tensor) -> torch.Tensor:
    """Image-guided ΔT [D]: mean normalised embedding of the style images minus that of the source renders."""
    with torch.no_grad():
        delta = (clip.encode_images(style_images, antialias=NADA_ANTIALIAS).mean(0)
                 - clip.encode_images(source_images, antialias=NADA_ANTIALIAS).mean(0))
    norm = float(delta.norm())
    if not norm > 1e-12:
        raise BenchError("image direction (style images vs source renders) is zero")
    return delta / norm


def directional_loss(embed_train: torch.Tensor, embed_frozen: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """1 − cos(ΔI, ΔT) per sample [B], from normalised image embeddings [B, D] and a unit ΔT [D]."""
    return 1 - F.cosine_similarity(embed_train - embed_frozen, direction[None], dim=-1)


def global_loss(embed: torch.Tensor, text_embedding: torch.Tensor) -> torch.Tensor:
    """1 − cos(E_I, E_T) per sample [B] (CLIP's logit / 100)."""
    return 1 - F.cosine_similarity(embed, text_embedding[None], dim=-1)


# ----------------------------------------------------------------------------------------------------- the method
class StyleGANNada(EditMethod):
    """StyleGAN-NADA domain adaptation (see the module docstring)."""

    independent_prepare = True  # one generator adapted per domain, nothing shared
    APPLY_ONLY_PARAMS = frozenset({"mapper_scale"})  # the mined mapper trains with the official 0.1
    POSITIVE_PARAMS = frozenset({"iterations", "batch", "lr", "auto_layer_iters", "auto_layer_batch", "auto_layer_lr",
                                 "source_image_count", "target_image_count", "mapper_iterations", "mapper_batch",
                                 "mapper_lr", "mapper_layers", "mapper_val_interval", "mapper_val_count"})
    NON_NEGATIVE_PARAMS = frozenset({"mixing", "direction_weight", "global_weight", "target_image_seed",
                                     "mapper_clip_weight", "mapper_id_weight", "mapper_l2_weight",
                                     "mapper_norm_weight"})
    UNIT_INTERVAL_PARAMS = frozenset({"truncation", "mapper_truncation"})

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {
            "iterations": 301,  # README example
            "batch": 2,
            "lr": 0.002 * 4 / 5,
            "betas": [0.0, 0.99 ** (4 / 5)],
            "mixing": 0.0,  # style-mixing probability of the training latents
            "truncation": 1.0,  # of the training latents
            "direction_weight": 1.0,
            "global_weight": 0.0,
            "phase": "all",  # fixed trainable set, used when auto_layer_k is 0: all, shape, texture, no_fine
            "auto_layer_k": 18,  # README example (k ≥ n_latent trains every StyledConv); 0 = fixed phase
            "auto_layer_iters": 1,
            "auto_layer_batch": 8,
            "auto_layer_lr": 0.01,
            "source_image_count": 16,  # image-guided: source renders averaged for ΔT
            "target_image_count": 16,  # image-guided synthface:<domain>: style images rendered
            "target_image_seed": 0,
            "guidance": "auto",  # auto: image-guided when the edit has target_images; text / image: forced
            "clip_role": "clip",
            "mine": False,  # latent-mapper mining after fine-tuning
            "mapper_iterations": 50000,  # StyleCLIP's mapper steps (NADA's copy: 50,001)
            "mapper_batch": 2,
            "mapper_lr": 0.5,  # Ranger, as StyleCLIP's mapper
            "mapper_layers": 4,
            "mapper_truncation": 0.7,  # of the mapper's training latents
            "mapper_val_interval": 2000,
            "mapper_val_count": 201,  # the official coach validates on 201 latents
            "mapper_scale": 0.1,  # apply only: training uses the official 0.1
            "mapper_clip_weight": 1.0,
            "mapper_id_weight": 0.1,
            "mapper_l2_weight": 0.8,
            "mapper_norm_weight": 0.5,
        }

    def __init__(self, **params: Any):
        super().__init__(**params)
        if self.params["guidance"] not in GUIDANCE:
            raise BenchError(f"nada: guidance {self.params['guidance']!r} unknown; valid: {', '.join(GUIDANCE)}")
        if self.params["phase"] not in PHASES:
            raise BenchError(f"nada: phase {self.params['phase']!r} unknown; valid: {', '.join(PHASES)}")
        k = self.params["auto_layer_k"]
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise BenchError(f"nada: auto_layer_k must be an integer >= 0 (0: the fixed `phase`); got {k!r}")
        if k > 0 and "phase" in self.set_params:
            raise BenchError(f"nada: phase {self.params['phase']!r} is used only with auto_layer_k: 0 (adaptive "
                             f"selection, auto_layer_k {k}, chooses the layers itself); set auto_layer_k: 0 or drop "
                             "phase")
        betas = self.params["betas"]
        if not (isinstance(betas, (list, tuple)) and len(betas) == 2
                and all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in betas)):
            raise BenchError(f"nada: betas must be two numbers in [0, 1) (Adam's β₁, β₂); got {betas!r}")
        self._adapted = None  # the trainable twin after prepare (or rebuilt from a cached state)
        self._mapper: LevelsMapper | None = None
        self._state: dict[str, Any] | None = None
        self.history: list[dict[str, Any]] = []  # per training step: loss, trained modules
        self.mining_record: dict[str, Any] = {}  # the mined mapper's training record (losses, best step)

    # -- targets
    def _style_images(self, edit, size: int, device) -> torch.Tensor:
        source = edit.target_images
        where = f"nada: edit {edit.name!r}: target_images"
        if source.startswith(SYNTHFACE_PREFIX):
            from zoo.synthface import render, sample_params

            domain = source[len(SYNTHFACE_PREFIX):]
            try:
                params = sample_params(int(self.params["target_image_count"]),
                                       seed=int(self.params["target_image_seed"]), domain=domain)
            except ValueError as exc:  # an unknown domain: the message lists the known ones
                raise BenchError(f"{where} {source!r}: {exc}") from None
            return render(params).to(device)
        from bench.sources import image_folder_problem, load_image_folder
        problem = image_folder_problem(source)
        if problem:
            raise BenchError(f"{where} {problem} (a folder of style images, or {SYNTHFACE_PREFIX}<domain>)")
        return load_image_folder(source, size).to(device)

    def _directions(self, clips, edit, frozen) -> list[torch.Tensor]:
        guidance = self.params["guidance"]
        if guidance == "image" and not edit.target_images:
            raise BenchError(f"nada: guidance 'image' but edit {edit.name!r} has no target_images")
        if guidance == "text" or not edit.target_images:
            return [clip.text_direction(edit.neutral, edit.target, renormalize=False) for clip, _ in clips]
        style = self._style_images(edit, frozen.size, frozen.device)
        with torch.no_grad():
            sources = frozen(self._sample_w_plus(frozen, int(self.params["source_image_count"]), mixing=0.0),
                             randomize_noise=True)
        return [image_direction(clip, style, sources) for clip, _ in clips]

    # -- latents
    def _sample_w(self, frozen, n: int) -> torch.Tensor:
        with torch.no_grad():
            w = frozen.mapping(torch.randn(n, frozen.style_dim).to(frozen.device))
            return frozen.truncate(w, float(self.params["truncation"]))

    def _sample_w_plus(self, frozen, n: int, mixing: float | None = None) -> torch.Tensor:
        mixing = self.params["mixing"] if mixing is None else mixing
        w_plus = self._sample_w(frozen, n).unsqueeze(1).repeat(1, frozen.n_latent, 1)
        if mixing > 0 and float(torch.rand(())) < mixing:
            crossover = int(torch.randint(1, frozen.n_latent, ()))
            w_plus[:, crossover:] = self._sample_w(frozen, n).unsqueeze(1)
        return w_plus

    # -- losses
    def _loss(self, clips, directions, targets, images, frozen_images) -> torch.Tensor:
        p = self.params
        total = images.new_zeros(())
        for (clip, weight), direction, target in zip(clips, directions, targets):
            embed = clip.encode_images(images, antialias=NADA_ANTIALIAS)
            if p["direction_weight"]:
                with torch.no_grad():
                    embed_frozen = clip.encode_images(frozen_images, antialias=NADA_ANTIALIAS)
                total = total + weight * p["direction_weight"] * directional_loss(embed, embed_frozen,
                                                                                  direction).mean()
            if p["global_weight"]:
                total = total + weight * p["global_weight"] * global_loss(embed, target).mean()
        return total

    def _global_only(self, clips, targets):
        def loss(images):
            return sum(weight * global_loss(clip.encode_images(images, antialias=NADA_ANTIALIAS), target).mean()
                       for (clip, weight), target in zip(clips, targets))
        return loss

    def trainable_modules(self, train, clips, targets) -> list[str]:
        """This step's trainable modules: the fixed phase, or the adaptive top-k choice."""
        p = self.params
        if int(p["auto_layer_k"]) <= 0:
            return phase_modules(train, p["phase"])
        if int(p["auto_layer_k"]) >= train.n_latent:  # every index is chosen whatever the ranking: skip the SGD step
            return modules_for_w_indices(train, range(train.n_latent))
        w = self._sample_w(train, int(p["auto_layer_batch"]))
        change = w_plus_change(lambda w_plus: train(w_plus, randomize_noise=True), self._global_only(clips, targets),
                               w, train.n_latent,
                               int(p["auto_layer_iters"]), float(p["auto_layer_lr"]))
        return modules_for_w_indices(train, top_w_indices(change, int(p["auto_layer_k"])))

    # -- phases of the method
    def prepare(self, backbones, edit) -> None:
        p = self.params
        source = generator_of(backbones)
        frozen = copy.deepcopy(source).eval().requires_grad_(False)
        train = copy.deepcopy(source).eval()
        clips = clip_networks(backbones, p["clip_role"])
        directions = self._directions(clips, edit, frozen)
        targets = [clip.encode_text(edit.target)[0] for clip, _ in clips] if p["global_weight"] or \
            int(p["auto_layer_k"]) > 0 else [None] * len(clips)
        parameters = [q for module in candidate_modules(train).values() for q in module.parameters()]
        optimizer = torch.optim.Adam(parameters, lr=float(p["lr"]), betas=tuple(float(b) for b in p["betas"]))
        self.history = []
        for _ in track(range(int(p["iterations"])), "NADA iterations"):
            names = self.trainable_modules(train, clips, targets)
            set_trainable(train, names)
            w_plus = self._sample_w_plus(frozen, int(p["batch"]))
            with torch.no_grad():  # fresh noise in each twin (see the module docstring)
                frozen_images = frozen(w_plus, randomize_noise=True)
            loss = self._loss(clips, directions, targets, train(w_plus, randomize_noise=True), frozen_images)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            self.history.append({"loss": float(loss.detach()), "trained": names})
        train.requires_grad_(False)
        self._adapted = train
        self._mapper = self._mine(backbones, train, clips, edit) if p["mine"] else None
        self._state = None

    def _mine(self, backbones, adapted, clips, edit) -> LevelsMapper:
        p = self.params
        texts = [prompt_features(clip, edit.target)[0] for clip, _ in clips]
        id_loss = require_identity(backbones, float(p["mapper_id_weight"]), "nada (mine)",
                                   explicit="mapper_id_weight" in self.set_params)
        sampler = LatentSampler(adapted, float(p["mapper_truncation"]), None, int(p["mapper_val_count"]))
        mapper = LevelsMapper(adapted.n_latent, adapted.style_dim, layers=int(p["mapper_layers"])).to(adapted.device)
        mapper, self.mining_record = train_mapper(
            adapted, clips, texts, mapper, sampler, int(p["mapper_iterations"]), lr=float(p["mapper_lr"]),
            batch_size=int(p["mapper_batch"]), val_interval=int(p["mapper_val_interval"]), id_loss=id_loss,
            clip_lambda=float(p["mapper_clip_weight"]), id_lambda=float(p["mapper_id_weight"]),
            latent_l2_lambda=float(p["mapper_l2_weight"]), norm_lambda=float(p["mapper_norm_weight"]))
        return mapper.requires_grad_(False)

    def prepared_state(self) -> dict[str, Any] | None:
        if self._adapted is None:
            return self._state
        state = {"generator": {k: v.detach().cpu().clone() for k, v in self._adapted.state_dict().items()}}
        if self._mapper is not None:
            state["mapper"] = {k: v.detach().cpu().clone() for k, v in self._mapper.state_dict().items()}
        return state

    def load_prepared_state(self, state: dict[str, Any]) -> None:
        self._state, self._adapted, self._mapper = state, None, None

    def adapted_generator(self, backbones=None):
        """The adapted generator (rebuilt on the backbone generator's architecture from a cached state)."""
        if self._adapted is None:
            if self._state is None or backbones is None:
                raise BenchError("nada: no adapted generator yet; run prepare (or load a prepared state and pass the "
                                 "backbones)")
            source = generator_of(backbones)
            adapted = copy.deepcopy(source)
            adapted.load_state_dict(self._state["generator"])
            self._adapted = adapted.eval().requires_grad_(False)
            if "mapper" in self._state:
                mapper = LevelsMapper(source.n_latent, source.style_dim, layers=int(self.params["mapper_layers"]))
                mapper.load_state_dict(self._state["mapper"])
                self._mapper = mapper.to(source.device).eval().requires_grad_(False)
        return self._adapted

    def apply(self, backbones, sources: SourceBatch, edit) -> EditResult:
        if sources.latents is None:
            raise BenchError("nada renders W+ latents with the adapted generator; these sources have none")
        adapted = self.adapted_generator(backbones)
        with torch.no_grad():
            latents = sources.latents.to(adapted.device)
            if self._mapper is not None:
                latents = latents + self.params["mapper_scale"] * self._mapper(latents)
            return EditResult(edited_images=adapted(latents), edited_latents=latents)

    def save_adapted(self, path: str | Path, backbones=None) -> Path:
        """Write the adapted generator as a rosinality checkpoint (`{"g_ema": ..., "latent_avg": ...}` for `.pt`),
        loadable by `bench generate`, `zoo.stylegan2.load_generator` and rosinality's own tools."""
        from zoo.stylegan2.checkpoint import save_generator

        return save_generator(self.adapted_generator(backbones), path)
