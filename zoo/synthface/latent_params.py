"""The deterministic map from a generator latent z to renderer parameters: `params_from_z(z) -> FaceParams`.

The synthetic generator (`train_generator.py`) is trained by distillation: for a standard-normal z it must draw
`render(params_from_z(z))`. This module fixes that correspondence, with exactly the renderer's sampling
distribution (`params.sample_params`, photo domain) when z ~ N(0, I):

Layout of z `[N, D]` (D = style_dim >= 30; the project uses 128), in this order::

    z[:, 0:15]    identity          IDENTITY_PARAMS order          uniform [0, 1]
    z[:, 15:25]   attributes        ATTRIBUTE_SPECS order          categorical / binary classes; smile uniform [-1, 1]
    z[:, 25:28]   pose              (x shift, y shift, light)      uniform [-1, 1]
    z[:, 28:28+nu] scale reference  nu = the largest even number <= D - 28 (100 at D = 128); the last coordinate
                                    is ignored when D - 28 is odd

Every parameter coordinate k gives a uniform number u_k through a scale-invariant statistic:

    t_k = z_k / sqrt(mean(z_ref ** 2))          (z_ref = the scale-reference block)
    u_k = F_nu(t_k)                              (F_nu: Student-t CDF with nu degrees of freedom)

For z ~ N(0, I), z_k is independent of the chi-square sum of the reference block, so t_k follows Student's t with
nu degrees of freedom exactly and u_k is exactly uniform on (0, 1). Why not simply Phi(z_k): the generator's
mapping network starts with PixelNorm, which divides z by its root-mean-square and so throws |z| away; Phi(z_k)
is not a function of z / |z| and the generator could only learn it up to a ~6 % error of every coordinate
(blurring every categorical boundary). t_k is invariant to rescaling z, so the parameters are an exact function
of what the generator sees. The price: the u_k share one denominator, so they are not exactly independent (a
multivariate-t-like dependence with nu = 100 degrees of freedom: every marginal is exact, pairwise correlations
of |u - 1/2| are of order 1/nu). Every marginal is exact.

From u:
* identity: u itself; smile and pose: 2u - 1 (as `sample_params`);
* categorical and binary attributes: quantile bins of u with the renderer's class probabilities from
  `ATTRIBUTE_SPECS` (uniform when a spec gives none), i.e. `bucketize(u, cumsum(probs)[:-1], right=True)`, as
  `sample_attributes` does with its own uniform draw;
* domain: always photo.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .domains import domain_index
from .params import ATTRIBUTE_SPECS, N_ID, FaceParams

__all__ = ["N_PARAM_COORDS", "IDENTITY_SLICE", "ATTRIBUTE_COORDS", "POSE_SLICE", "reference_dof", "student_t_cdf",
           "uniforms_from_z", "params_from_z", "z_from_uniforms"]

IDENTITY_SLICE = slice(0, N_ID)
ATTRIBUTE_COORDS: dict[str, int] = {name: N_ID + i for i, name in enumerate(ATTRIBUTE_SPECS)}
POSE_SLICE = slice(N_ID + len(ATTRIBUTE_SPECS), N_ID + len(ATTRIBUTE_SPECS) + 3)
N_PARAM_COORDS = POSE_SLICE.stop  # 28


def reference_dof(style_dim: int) -> int:
    """Degrees of freedom nu: the even number of scale-reference coordinates used (100 at style_dim 128)."""
    nu = (style_dim - N_PARAM_COORDS) // 2 * 2
    if nu < 2:
        raise ValueError(f"style_dim must be >= {N_PARAM_COORDS + 2}, got {style_dim}")
    return nu


def student_t_cdf(t: Tensor, nu: int) -> Tensor:
    """CDF of Student's t with an even number nu of degrees of freedom (closed-form finite series, float64):

    F(t) = 1/2 + t / (2 sqrt(nu + t^2)) * sum_{j=0}^{nu/2-1} a_j x^j,  x = nu / (nu + t^2),
    a_0 = 1, a_j = a_{j-1} (2j - 1) / (2j)."""
    if nu % 2 or nu < 2:
        raise ValueError(f"nu must be a positive even integer, got {nu}")
    t = t.double()
    x = nu / (nu + t * t)
    total = torch.zeros_like(t)
    term = torch.ones_like(t)
    a = 1.0
    for j in range(nu // 2):
        if j > 0:
            a *= (2 * j - 1) / (2 * j)
            term = term * x
        total = total + a * term
    return (0.5 + t / (2 * torch.sqrt(nu + t * t)) * total).clamp(0.0, 1.0)


def uniforms_from_z(z: Tensor) -> Tensor:
    """[N, 28] float64 uniforms u_k = F_nu(z_k / rms(z_ref)) (see the module docstring)."""
    if z.ndim != 2:
        raise ValueError(f"z must be [N, style_dim], got {tuple(z.shape)}")
    nu = reference_dof(z.shape[1])
    z = z.double()
    scale = z[:, N_PARAM_COORDS:N_PARAM_COORDS + nu].pow(2).mean(1, keepdim=True).sqrt().clamp_min(1e-12)
    return student_t_cdf(z[:, :N_PARAM_COORDS] / scale, nu)


def _class_from_uniform(name: str, u: Tensor) -> Tensor:
    spec = ATTRIBUTE_SPECS[name]
    probs = torch.tensor(spec.probs if spec.probs else [1.0] * len(spec.values), dtype=torch.float64)
    cdf = (probs.cumsum(0) / probs.sum())[:-1]
    return torch.bucketize(u.contiguous(), cdf.to(u.device), right=True)


def params_from_z(z: Tensor, domain: str | int = "photo") -> FaceParams:
    """Renderer parameters of the faces the synthetic generator draws for z `[N, style_dim]` (deterministic;
    distributed exactly as `sample_params(N, domain="photo")` when z ~ N(0, I)). Tensors on z's device."""
    u = uniforms_from_z(z.detach())
    identity = u[:, IDENTITY_SLICE].float()
    attrs: dict[str, Tensor] = {}
    for name, k in ATTRIBUTE_COORDS.items():
        if ATTRIBUTE_SPECS[name].continuous:
            attrs[name] = (u[:, k] * 2 - 1).float()
        else:
            attrs[name] = _class_from_uniform(name, u[:, k])
    pose = (u[:, POSE_SLICE] * 2 - 1).float()
    dom = torch.full((z.shape[0],), domain_index(domain), dtype=torch.long, device=z.device)
    return FaceParams(identity, attrs, pose, dom)


def z_from_uniforms(u: Tensor, style_dim: int = 128, generator: torch.Generator | None = None) -> Tensor:
    """A z whose parameter uniforms are approximately `u` [N, 28] (for building latents of chosen faces): the
    reference block is drawn from N(0, I) (with `generator`), then z_k = F_nu^-1(u_k) * rms(z_ref), the inverse
    CDF found by bisection. Exact up to the bisection tolerance (1e-10 in u)."""
    nu = reference_dof(style_dim)
    n = u.shape[0]
    z = torch.randn(n, style_dim, generator=generator, dtype=torch.float64)
    scale = z[:, N_PARAM_COORDS:N_PARAM_COORDS + nu].pow(2).mean(1, keepdim=True).sqrt()
    target = u.double().clamp(1e-9, 1 - 1e-9)
    lo = torch.full_like(target, -60.0)
    hi = torch.full_like(target, 60.0)
    for _ in range(80):
        mid = (lo + hi) / 2
        below = student_t_cdf(mid, nu) < target
        lo = torch.where(below, mid, lo)
        hi = torch.where(below, hi, mid)
    z[:, :N_PARAM_COORDS] = (lo + hi) / 2 * scale
    return z.float()
