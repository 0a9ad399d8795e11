"""StyleCLIP latent optimisation (Patashnik et al. 2021), written from the facts in reference-defaults.md.

For each source latent w_s and the edit's target text t, minimise over w (initialised at w_s)::

    L(w) = D_CLIP(G(w), t) + λ_L2 · Σ (w − w_s)² + λ_ID · (1 − cos(ID(G(w)), ID(G(w_s))))

* D_CLIP = 1 − logit/100, logit = 100 · cos(E_I(x), E_T(t)); the image enters CLIP as raw [-1, 1] pixels (no
  mean/std) after the exact area resize to CLIP's input size (`methods.losses.styleclip_clip_loss`); t is the
  plain target text (no templates), as the official script encodes its description.
* The L2 term is a *sum* over all n_latent × style_dim values (not a mean).
* Adam, lr0 0.1, `steps` 300, lr(t) = lr0 · min(1, t/0.05) · (0.5 − 0.5 cos(π · min(1, (1 − t)/0.25))),
  t = step/steps (`methods.losses.lr_schedule`); fixed noise.
* `space: s` optimises the style-space vectors of the conv layers instead (ToRGB styles frozen at the source's);
  λ_L2 then sums (s − s_s)² over the optimised vectors.

Batching: all samples of a source batch (and in `optimize` any set of (source, prompt) pairs) are optimised as one
batch with the per-sample losses *summed*. Each latent's gradient then only depends on its own loss and Adam is
element-wise, so the result equals separate runs (tested to ~1e-6).
"""

from __future__ import annotations

from typing import Any

import torch

from bench.errors import BenchError
from bench.progress import track
from methods.base import EditMethod, EditResult, SourceBatch
from methods.losses import (clip_networks, frozen, generator_of, lr_schedule, prompt_features, require_identity,
                            source_latents_or_invert, weighted_clip_loss)


SPACES = ("w+", "s")


def objective(networks, texts, image: torch.Tensor, variables: list[torch.Tensor], anchors: list[torch.Tensor],
              l2_lambda: float, id_lambda: float = 0.0, id_loss=None, source_img: torch.Tensor | None = None
              ) -> torch.Tensor:
    """Per-sample loss ``[N]``: D_CLIP + λ_L2 · Σ (v − v_s)² (summed over every value) + λ_ID · ID loss."""
    loss = weighted_clip_loss(networks, image, texts)
    l2 = sum((v - a).pow(2).flatten(1).sum(1) for v, a in zip(variables, anchors))
    loss = loss + l2_lambda * l2
    if id_lambda > 0:
        loss = loss + id_lambda * id_loss.per_sample(image, source_img)
    return loss


def optimize(generator, networks: list[tuple[Any, float]], w_source: torch.Tensor, texts: list[torch.Tensor],
             steps: int = 300, lr: float = 0.1, l2_lambda: float = 0.008, id_lambda: float = 0.0,
             id_loss=None, space: str = "w+") -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    """Optimise a batch of W+ latents ``[N, L, D]``; `texts[k]` is ``[D_k]`` or ``[N, D_k]`` (one prompt per
    sample) for CLIP network k. Returns (W+ or None, S vectors or None) depending on `space`."""
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    w_source = w_source.detach()
    with frozen(generator):
        with torch.no_grad():
            styles0 = generator.styles(w_source)
            source_img = generator.synthesis(styles0) if id_lambda > 0 else None
        if space == "w+":
            variables = [w_source.clone().requires_grad_(True)]
            anchors = [w_source]
        else:
            trainable = [layer.kind == "conv" for layer in generator.style_layers]
            variables = [s.clone().requires_grad_(True) for s, t in zip(styles0, trainable) if t]
            anchors = [s for s, t in zip(styles0, trainable) if t]
        opt = torch.optim.Adam(variables, lr=lr)
        for step in track(range(steps), "optimisation"):
            for group in opt.param_groups:
                group["lr"] = lr_schedule(step / steps, lr)
            if space == "w+":
                image = generator(variables[0])
            else:
                it = iter(variables)
                styles = [next(it) if layer.kind == "conv" else s0
                          for layer, s0 in zip(generator.style_layers, styles0)]
                image = generator.synthesis(styles)
            loss = objective(networks, texts, image, variables, anchors, l2_lambda, id_lambda, id_loss, source_img)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            opt.step()
    if space == "w+":
        return variables[0].detach(), None
    it = iter(variables)
    return None, [next(it).detach() if layer.kind == "conv" else s0
                  for layer, s0 in zip(generator.style_layers, styles0)]


class StyleClipOptimization(EditMethod):
    """StyleCLIP latent optimisation in W+ (or S)."""

    POSITIVE_PARAMS = frozenset({"steps", "lr"})
    NON_NEGATIVE_PARAMS = frozenset({"l2_lambda", "id_lambda"})

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"steps": 300, "lr": 0.1, "l2_lambda": 0.008, "id_lambda": 0.0, "space": "w+"}

    def __init__(self, **params: Any):
        super().__init__(**params)
        if self.params["space"] not in SPACES:
            raise BenchError(f"styleclip_optimization: space {self.params['space']!r} unknown; "
                             f"valid: {', '.join(SPACES)}")

    def apply(self, backbones: Any, sources: SourceBatch, edit: Any) -> EditResult:
        p = self.params
        generator = generator_of(backbones)
        networks = clip_networks(backbones)
        texts = [prompt_features(clip, edit.target)[0] for clip, _ in networks]
        id_loss = require_identity(backbones, p["id_lambda"], "styleclip_optimization")
        w0 = source_latents_or_invert(backbones, sources).to(generator.device)
        w, styles = optimize(generator, networks, w0, texts, steps=int(p["steps"]), lr=float(p["lr"]),
                             l2_lambda=float(p["l2_lambda"]), id_lambda=float(p["id_lambda"]), id_loss=id_loss,
                             space=p["space"])
        with torch.no_grad():
            images = generator(w) if w is not None else generator.synthesis(styles)
        return EditResult(edited_images=images.clamp(-1, 1), edited_latents=w)
