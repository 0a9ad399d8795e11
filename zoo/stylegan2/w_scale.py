"""Rescaling a StyleGAN2 generator's W without changing a single image it draws.

Every latent-space method states its step sizes and penalties in absolute W units: StyleCLIP optimisation's Adam
lr 0.1 and λ_L2 0.008 on Σ(w - w_s)², the mapper's residual 0.1 · M(w) and latent MSE 0.8, e4e-style encoder
regularisers. Those numbers were tuned on generators whose mapping network keeps W at order one (StyleGAN2's
equalised-lr mapping: unit-variance inputs, each layer's leaky ReLU followed by a √2 gain). A generator whose W is
much larger (the synthetic world's was 4.7 per coordinate, its mapping regressed onto a hand-made target) turns
every such default into a weaker edit and a stronger penalty.

W is only ever read by the mapping's last layer (which writes it) and by the style modulations (which read it), so
it can be scaled by any factor f > 0 exactly:

* the mapping's last EqualLinear (fused leaky ReLU, positively homogeneous): weight and bias x f, so w -> f w;
* every modulation EqualLinear (``s = w @ (W_m scale)^T + b``): weight / f, bias unchanged, so s is unchanged;
* ``latent_avg`` x f, so truncation still pulls towards the same image.

No library offers this for rosinality's layout, hence the few lines here (as ``widen.py``).
"""

from __future__ import annotations

import copy

import torch

from zoo.stylegan2.generator import Generator

W_STD_SAMPLES = 4096
W_STD_SEED = 0x5753  # a fixed z draw, so that the measured scale and the standardised weights are deterministic


@torch.no_grad()
def w_coordinate_std(g: Generator, n: int = W_STD_SAMPLES, seed: int = W_STD_SEED) -> float:
    """The standard deviation of each W coordinate over ``n`` mapped z (truncation 1), averaged over coordinates."""
    z = torch.randn(n, g.style_dim, generator=torch.Generator().manual_seed(seed)).to(g.device)
    return float(g.mapping(z).std(0).mean())


@torch.no_grad()
def scale_w(g: Generator, factor: float) -> Generator:
    """A copy of ``g`` whose W is ``factor`` x ``g``'s W and whose images (from z, from its own W / W+ and through S)
    are ``g``'s."""
    if not factor > 0:
        raise ValueError(f"factor must be a positive number, got {factor!r}")
    out = copy.deepcopy(g)
    last = out.style[-1]
    last.weight.mul_(factor)
    last.bias.mul_(factor)
    for layer in out.style_layers:
        out.style_module(layer.name).conv.modulation.weight.div_(factor)
    if g.latent_avg is not None:
        out.set_latent_avg(g.latent_avg * factor)
    else:
        out.set_latent_avg(None)
    return out


def standardise_w(g: Generator, target_std: float = 1.0, n: int = W_STD_SAMPLES,
                  seed: int = W_STD_SEED) -> tuple[Generator, float]:
    """``(scale_w(g, f), f)`` with f chosen so that the W coordinates' mean standard deviation is ``target_std``."""
    factor = target_std / w_coordinate_std(g, n, seed)
    return scale_w(g, factor), factor
