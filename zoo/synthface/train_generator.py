"""The synthetic world's generator: the zoo's StyleGAN2 at 64x64, trained by distillation from the renderer.

Every editing method runs this generator (`zoo.stylegan2.Generator`, rosinality key set) thousands of times on
CPU, so it is narrow: style_dim 128, a 4-layer mapping network and `CHANNELS` feature maps per resolution.

Training (distillation, not adversarial: a GAN needs far more steps than 2 shared CPU cores allow, and here the
ground-truth image of every latent is known): for each step, z ~ N(0, I) from `step_generator(seed, step)`,
params = `latent_params.params_from_z(z)` (photo domain, exactly the renderer's sampling distribution), target =
`render(params)`, and the whole generator (mapping z -> w and synthesis) regresses the target:

    loss = L1(x, y) + L1(pool2 x, pool2 y) + L1(pool4 x, pool4 y) + edge_weight * L1(grad x, grad y)

(grad: horizontal and vertical finite differences, so edges stay sharp). Which W the synthesis draws from is set by
`w_target`:

* "features" (since 2026-11-27): a teacher W*(z) = [param_features(params_from_z(z)), 1] @ basis, exactly linear in
  the renderer's parameters (`FeatureW`). The synthesis is trained on W*; the mapping network regresses W* (MSE on W
  plus MSE on the decoded features), first alone for `mapping_fit_steps` batches (no renders, minutes), then one
  regression batch beside every image step. Every style modulation reads only the span of W* (`project_modulations`
  after each step), so the mapping's error outside that span never reaches the image. Why: the joint recipe's
  bottleneck was the mapping, not the synthesis (FeatureW's docstring has the measurements).
* "mapping" (the earlier legs): the synthesis draws from mapping(z) and the whole generator learns from the image
  loss, with a training-only linear read-out (`AuxProbe`) pulling W towards the parameters.

Noise inputs are the generator's fixed
`noises.noise_i` buffers (the editing methods use fixed noise); their strengths are trained like every other
weight. Adam (betas `betas`, default (0.9, 0.99): a regression problem, StyleGAN2's beta1 = 0 buys nothing here),
linear warmup then cosine decay. An EMA of the weights (rosinality's g_ema convention, half-life `ema_kimg`
thousand images) is kept and exported, with `latent_avg` = mean of mapping(z) over 8192 fixed-seed z.

`--set init_from="weights"` starts from the committed `weights/generator.safetensors` (g and g_ema) so a later
session can continue without the uncommitted `runs/train/generator/last.pt`; any other string is a path to a
generator file `load_generator` accepts. A `channels` table wider than those weights widens them first
(`zoo.stylegan2.widen`: the same images, new channels free to learn); a narrower one is refused.

`load(device)` returns the exported generator through `zoo.stylegan2.load_generator` (with its `latent_avg`).
Gates: over 2,000 samples at truncation 1.0 the attribute judge finds every attribute value at >= 50 % of its
renderer frequency; pixel L1 between G(z) and render(params_from_z(z)) on held-out z is reported.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from zoo.identity.irse50 import ARCFACE_LAYOUT
from zoo.stylegan2 import Generator, load_generator, save_generator
from zoo.stylegan2.w_scale import scale_w, standardise_w, w_coordinate_std
from zoo.stylegan2.widen import widen_generator
from zoo.synthface import mouth_gan, training
from zoo.synthface.latent_params import params_from_z
from zoo.synthface.params import ATTRIBUTE_SPECS, N_ID, SMILE_BINS, attribute_class
from zoo.synthface.render import landmarks, render, render_with_masks

NAME = "generator"
SIZE = 64
WEIGHTS_PATH = training.WEIGHTS_DIR / f"{NAME}.safetensors"
LATENT_AVG_SEED = 0x5A7
LATENT_AVG_SAMPLES = 8192

# The recipe of the committed weights' last leg (cards/generator.md lists every leg as made; from scratch the teacher's
# basis is FeatureW.random, from init_from weights the least-squares fit of their mapping).
DEFAULTS = {
    "seed": 0,
    "steps": 15000,
    "batch": 16,
    "style_dim": 128,
    "n_mlp": 4,
    "channels": {"4": 64, "8": 64, "16": 64, "32": 32, "64": 32},
    "lr": 2e-3,
    "mapping_lr_mult": 1000.0,
    "betas": [0.9, 0.99],
    "warmup": 200,
    "final_lr": 0.05,
    "edge_weight": 0.5,
    "ema_kimg": 5.0,
    "modulation_init": 0.1,
    "aux_weight": 1.0,
    "probe_pretrain_steps": 3000,  # mapping network + read-out alone before the first image step (0: off)
    "probe_pretrain_batch": 512,
    "probe_pretrain_lr": 1e-3,     # x mapping_lr_mult for the mapping network (its lr_mul 0.01 is in the weights)
    "init_from": None,
    # "features": the synthesis draws from the teacher W*(z) = param_features(params_from_z(z)) @ basis + offset and
    # the mapping network regresses W* (see FeatureW); "mapping": both learn jointly from the image loss (the
    # recipe of the legs before 2026-11-27 evening, with the AuxProbe read-out; the probe_* keys apply to it only)
    "w_target": "features",
    "mapping_fit_steps": 30000,    # w_target "features": mapping regression alone before the first image step
    "mapping_fit_batch": 1024,
    "mapping_fit_lr": 1e-3,        # x mapping_lr_mult, as probe_pretrain_lr
    "mapping_feature_weight": 100.0,
    # w_target "features": the share of each batch the synthesis draws from mapping(z) (detached) instead of W*(z),
    # so that it renders the mapping's actual output (never exactly one-hot) as well as the teacher's
    "mapping_mix": 0.5,
    # w_target "features" from a fitted basis: give every categorical class its own direction of this norm, outside
    # the fitted span (0: off). A joint-trained mapping lays a many-class attribute out along one curve in W (the
    # committed one did so for hair colour and background), and style modulations, linear in W, cannot give nine
    # classes nine free colours from positions on one curve
    "w_augment": 0.0,
    # w_target "features" from a fitted basis: give the smile its own direction of this norm outside the fitted span
    # (FeatureW.smile_boosted; 0: off). Leg H used 12, once: a later leg's fitted basis already carries it
    "w_smile_norm": 0.0,
    # w_target "features" from a fitted basis: give each smile bin its own direction of this norm outside the fitted
    # span (FeatureW.smile_binned; 0: off), once, as w_smile_norm
    "w_smile_bins": 0.0,
    # the loss weight around the eyes and the mouth (region_weights): 1 + region_weight * Gaussians of region_sigma px
    # (legs C-H: 4; glasses coverage 0.0075 -> 0.66 over legs D and E; 0 and mouth_weight 0 turn it off)
    "region_weight": 4.0,
    "region_sigma": 4.0,
    # the mouth's own strength (None: region_weight); legs F and H: 16 (lipstick coverage 0.31 -> 0.89, glasses
    # 0.66 -> 0.89; the smile's curve still undrawn)
    "mouth_weight": 16.0,
    # minimal pairs (minimal_pairs / pair_loss): `pair_count` faces of each batch's teacher half are copied with one
    # of `pair_attributes` changed, and the generator's difference image must match the renderer's (normalised by
    # the changed pixels, so a 20-pixel mouth curve weighs as much as a hair colour); [] turns it off. Tried once
    # (cards/generator.md, leg G: smile, lipstick, hair colour, age at weight 1 from leg E): after 2,000 steps pixel
    # L1 0.087 -> 0.100 and every paired attribute's coverage fell; not used since
    "pair_attributes": [],
    "pair_count": 4,
    "pair_weight": 1.0,
    # the hair's mean colour (hair_colour_loss: over the renderer's hair mask, generator against renderer) x this
    # weight (0: off; the batches are then rendered with masks). Blond and grey hair came out browner than the
    # renders, which the per-pixel L1, averaged over the whole face, barely weighs (cards/generator.md)
    "hair_colour_weight": 0.0,
    # the per-pixel loss weight over the renderer's hair mask (hat excluded): x (1 + hair_weight), then normalised to
    # mean 1 per image as region_weights (0: off). Grey hair's stripes were drawn as a bluish blur the judge reads as
    # blue (cards/generator.md): the mean-colour term above cannot ask for the stripes, a pixel weight can
    "hair_weight": 0.0,
    "render_device": "cpu",  # "model": render the batches on the training device (a GPU), see training.render_device
    # a conditional patch discriminator on 16 x 16 mouth crops, told the smile bin (zoo/synthface/mouth_gan.py): the
    # generator's loss adds mouth_gan_weight x its non-saturating loss (0: off); the discriminator trains beside it
    # (Adam, mouth_gan_lr, betas (0, 0.99), R1 weight mouth_gan_r1 on the real crops)
    "mouth_gan_weight": 0.0,
    "mouth_gan_lr": 1e-3,
    "mouth_gan_r1": 1.0,
    "mouth_gan_centre": False,  # the discriminator sees each crop minus its mean colour (mouth_gan.centred)
}

SUMMARY = """Distilled StyleGAN2 generator of the synthetic face world (zoo.stylegan2.Generator, 64x64, style_dim 128,
4-layer mapping network, channels 64/64/64/32/32 at 4/8/16/32/64 px, 0.39 M parameters). Distilled, not trained as a
GAN: adversarial training is too slow on 2 shared CPU cores, and every latent's ground truth is known; only the mouth
has a small conditional discriminator beside the distillation loss (legs M-Q, below). For z ~ N(0, I),
latent_params.params_from_z(z) gives renderer parameters with exactly the renderer's (photo) sampling distribution
(a scale-invariant Student-t transform of 28 coordinates, because the mapping network's PixelNorm discards |z|) and
the generator (fixed noise buffers) regresses render(params) with L1 + multi-scale L1 (1/2, 1/4) + an L1 on image
gradients. Last leg (w_target "features"): the synthesis draws from a teacher W*(z), a fixed linear map of the
renderer's parameter features (the least-squares fit of the previous mapping's W plus, per categorical class, a
random direction of norm 10 outside that fit's span), every style modulation reads only the span of W*, half of each
batch is drawn from mapping(z) instead, and the mapping network regresses W* (30,000 regression batches of 1,024 z
before the first image step, then one beside each image step). Legs C-H also weigh the loss per pixel, x5 around
the eyes and the mouth (`region_weight=4`), where glasses, lipstick and the mouth's curve are; legs F and H the mouth
x17 (`mouth_weight=16`); leg H gave the smile its own direction in W* (`w_smile_norm=12`). Legs M-Q drew the smile:
each smile class (frowning / neutral / smiling) got its own direction in W* (`w_smile_bins=12`, leg M), and a
conditional patch discriminator on 16 x 16 mouth crops, told the smile class, adds 0.15 x its non-saturating loss
(`mouth_gan_weight`, zoo/synthface/mouth_gan.py; from leg O it sees each crop minus its mean colour,
`mouth_gan_centre`). Legs Z and Z2 also weigh the renderer's hair pixels x5 (`hair_weight=4`), where grey hair's
stripes are.
Earlier legs (w_target "mapping"): mapping and synthesis learnt jointly from the image loss; before their first
image step the mapping network alone learns a W that linearly encodes every parameter (3,000 steps of a
training-only linear read-out, `probe_pretrain`; read-out loss 2.0 -> 0.13, chance ~1.45); the read-out stays on
during training (weight 1). Adam (betas 0.9, 0.99), lr 2e-3 with
warmup + cosine decay, the mapping network at 1000x the StyleGAN2 mapping rate (lr_mul 0.01 is kept in the weights
so that load_generator reads them; the optimizer compensates), modulation weights scaled by 0.1 at init. The
exported weights are the EMA (g_ema) plus latent_avg (mean of mapping(z) over 8192 z), with W standardised to
coordinate std 1 (the same images; see "W's scale" below)."""

W_TARGETS = ("mapping", "features")

EVAL_L1_SEED = 9_101  # held-out z for the pixel L1
EVAL_COVERAGE_SEED = 9_102  # the 2,000 samples of the coverage gate
EVAL_SAMPLES = 2000


def channel_table(config) -> dict[int, int]:
    return {int(k): int(v) for k, v in config["channels"].items()}


def make_generator(config) -> Generator:
    return Generator(SIZE, config["style_dim"], config["n_mlp"], channels=channel_table(config))


# ---------------------------------------------------------------------------------------------- loss
def image_gradients(x: Tensor) -> tuple[Tensor, Tensor]:
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def distillation_loss(fake: Tensor, real: Tensor, edge_weight: float = 0.5,
                      weight: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """L1 + multi-scale L1 (1/2, 1/4) + edge_weight * L1 of the finite differences, each optionally weighted per
    pixel by `weight` [N, 1, H, W] (mean 1 per image, `region_weights`). The parts come back as detached tensors,
    so that a GPU step never waits for them (the trainer reads them only when it logs)."""
    def wl1(a: Tensor, b: Tensor, w: Tensor | None) -> Tensor:
        return (a - b).abs().mean() if w is None else ((a - b).abs() * w).mean()

    pooled = {k: None if weight is None else F.avg_pool2d(weight, k) for k in (2, 4)}
    l1 = wl1(fake, real, weight)
    ms = sum(wl1(F.avg_pool2d(fake, k), F.avg_pool2d(real, k), pooled[k]) for k in (2, 4))
    fx, fy = image_gradients(fake)
    rx, ry = image_gradients(real)
    wx, wy = (None, None) if weight is None else (weight[..., :, 1:], weight[..., 1:, :])
    edge = wl1(fx, rx, wx) + wl1(fy, ry, wy)
    loss = l1 + ms + edge_weight * edge
    return loss, {"l1": l1.detach(), "ms": ms.detach(), "edge": edge.detach()}


REGION_LANDMARKS = ("left_eye", "right_eye", "mouth")


def region_weights(params, size: int, strength: float, sigma_px: float,
                   device: str | torch.device = "cpu", mouth_strength: float | None = None) -> Tensor:
    """Per-pixel loss weights [N, 1, size, size]: 1 + strength * a Gaussian (sigma_px pixels) around each eye and the
    mouth (the mouth's own `mouth_strength` when given), normalised to mean 1 per image. Glasses, closed eyes,
    lipstick and the smile's curve cover a few dozen of the 4,096 pixels, so an unweighted L1 barely sees them (leg
    B's generator drew them at 1-8 % of their renderer frequency, cards/generator.md); this spends more of the loss
    where they are."""
    marks = landmarks(params, size)
    axis = torch.arange(size, device=device, dtype=torch.float32) + 0.5
    bumps = 0.0
    for name in REGION_LANDMARKS:
        xy = marks[name].to(device=device, dtype=torch.float32)
        dx = axis.view(1, 1, size) - xy[:, 0].view(-1, 1, 1)
        dy = axis.view(1, size, 1) - xy[:, 1].view(-1, 1, 1)
        scale = mouth_strength if name == "mouth" and mouth_strength is not None else strength
        bumps = bumps + scale * torch.exp(-(dx * dx + dy * dy) / (2 * sigma_px ** 2))
    weight = 1.0 + bumps.unsqueeze(1)
    return weight / weight.mean((2, 3), keepdim=True)


def hair_weights(hair: Tensor, strength: float, weight: Tensor | None = None) -> Tensor:
    """Per-pixel loss weights [N, 1, H, W]: `weight` (or 1) x (1 + strength x the hair mask `hair` [N, H, W]),
    normalised to mean 1 per image."""
    out = 1.0 + strength * hair.unsqueeze(1)
    if weight is not None:
        out = out * weight
    return out / out.mean((2, 3), keepdim=True)


def check_pair_attributes(attributes: list[str]) -> None:
    unknown = [a for a in attributes if a not in ATTRIBUTE_SPECS]
    if unknown:
        raise ValueError(f"pair_attributes: unknown {unknown}; valid: {', '.join(ATTRIBUTE_SPECS)}")


def minimal_pairs(params, attributes: list[str], count: int, rng: torch.Generator):
    """A copy of `params` whose faces count..2*count-1 are faces 0..count-1 with one attribute (drawn from
    `attributes`) moved to another class: a categorical or binary one to a different value, smile to a uniform value
    inside another caption bin. Everything else (identity, pose, the other attributes) is the first face's."""
    check_pair_attributes(attributes)
    if 2 * count > len(params):
        raise ValueError(f"pair_count {count} needs a batch of at least {2 * count} faces, got {len(params)}")
    out = params.clone()
    src, dst = slice(0, count), slice(count, 2 * count)
    out.identity[dst] = params.identity[src]
    out.pose[dst] = params.pose[src]
    out.domain[dst] = params.domain[src]
    for name in ATTRIBUTE_SPECS:
        out.attrs[name][dst] = params.attrs[name][src]
    which = torch.randint(len(attributes), (count,), generator=rng)
    for i in range(count):
        name = attributes[int(which[i])]
        spec = ATTRIBUTE_SPECS[name]
        n_classes = len(spec.values)
        current = int(attribute_class(params[i], name))
        new = (current + 1 + int(torch.randint(n_classes - 1, (), generator=rng))) % n_classes
        if spec.continuous:
            edges = (-1.0, *spec.bins, 1.0)
            u = float(torch.rand((), generator=rng))
            out.attrs[name][count + i] = edges[new] + u * (edges[new + 1] - edges[new])
        else:
            out.attrs[name][count + i] = new
    return out


def pair_loss(fake: Tensor, real: Tensor, count: int, threshold: float = 0.02) -> Tensor:
    """Minimal-pair loss: L1 between the generator's and the renderer's difference images of faces i and count + i,
    summed over pixels and divided by the number of pixels the renderer changed (at least 16). The plain L1 averages
    over 4,096 pixels, where a smile's curve or lipstick is a few dozen; this term weighs each pair's change as a
    whole, and also penalises changes the renderer did not make."""
    d_fake = fake[:count] - fake[count:2 * count]
    d_real = real[:count] - real[count:2 * count]
    changed = (d_real.abs().amax(1) > threshold).sum((1, 2)).clamp_min(16)
    return ((d_fake - d_real).abs().mean(1).sum((1, 2)) / changed).mean()


def hair_colour_loss(fake: Tensor, real: Tensor, hair: Tensor, min_area: float = 8.0) -> Tensor:
    """L1 between the generator's and the renderer's mean colour over each face's hair mask (`hair` [N, H, W] in
    [0, 1], `render_with_masks`), averaged over the faces with at least `min_area` pixels of hair (bald heads have
    none); a per-pixel L1 weighs a colour cast over the hair no more than the same error anywhere else."""
    area = hair.sum((1, 2))
    keep = area >= min_area
    if not keep.any():
        return fake.new_zeros(())
    m = hair[keep].unsqueeze(1)
    difference = ((fake[keep] - real[keep]) * m).sum((2, 3)) / area[keep].unsqueeze(1)  # of the two means
    return difference.abs().mean()


class EMA(nn.Module):
    """g_ema: an exponential moving average of the generator's parameters (buffers copied)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, beta: float) -> None:
        # one fused update for all parameters (a per-parameter loop costs one kernel launch each on a GPU)
        torch._foreach_lerp_(list(self.model.parameters()), [p.detach() for p in model.parameters()], 1 - beta)
        for e, b in zip(self.model.buffers(), model.buffers()):
            e.copy_(b)


CATEGORICAL = [k for k, s in ATTRIBUTE_SPECS.items() if not s.continuous]
CATEGORICAL_SIZES = [len(ATTRIBUTE_SPECS[k].values) for k in CATEGORICAL]
N_CONTINUOUS = N_ID + 1 + 3  # identity, smile, pose
N_FEATURES = N_CONTINUOUS + sum(CATEGORICAL_SIZES)
SMILE_FEATURE = N_ID  # param_features' smile column
# the teacher's own columns after param_features: the smile's caption bin as a one-hot (FeatureW.features)
SMILE_BIN_FEATURES = slice(N_FEATURES, N_FEATURES + len(SMILE_BINS) + 1)
N_TEACHER_FEATURES = SMILE_BIN_FEATURES.stop


def param_features(params) -> Tensor:
    """[N, N_FEATURES]: identity (as 2u - 1), smile and pose in [-1, 1], then one one-hot block per categorical
    attribute (CATEGORICAL order)."""
    cont = torch.cat([params.identity * 2 - 1, params.attrs["smile"][:, None], params.pose], 1)
    hot = [F.one_hot(params.attrs[k], n).to(cont) for k, n in zip(CATEGORICAL, CATEGORICAL_SIZES)]
    return torch.cat([cont, *hot], 1)


class AuxProbe(nn.Module):
    """Training-only auxiliary head: a linear probe from w to the renderer parameters (identity, smile and pose by
    MSE on their [-1, 1] values, categorical attributes by cross-entropy). It hands the mapping network a direct
    gradient towards a W space that linearly encodes the parameters; it is not part of the exported generator."""

    def __init__(self, style_dim: int):
        super().__init__()
        self.linear = nn.Linear(style_dim, N_FEATURES)

    def loss(self, w: Tensor, params) -> Tensor:
        out = self.linear(w)
        total = F.mse_loss(out[:, :N_CONTINUOUS], param_features(params)[:, :N_CONTINUOUS])
        logits = out[:, N_CONTINUOUS:].split(CATEGORICAL_SIZES, 1)
        for name, lg in zip(CATEGORICAL, logits):
            total = total + F.cross_entropy(lg, params.attrs[name]) / len(CATEGORICAL)
        return total


class FeatureW(nn.Module):
    """The teacher W of the "features" recipe: W*(z) = [param_features(params_from_z(z)), 1] @ basis, a W that is
    exactly linear in the renderer's parameters.

    Why (cards/generator.md, 2026-11-27): in the joint recipe the mapping network, not the synthesis, was the
    bottleneck. Replacing the committed mapping's W by its least-squares projection onto the parameter features
    lowered pixel L1 from 0.122 to 0.106 without any training, and a synthesis trained from scratch on such a W
    reached L1 0.140 after 1,200 steps of 16 where the joint recipe stood at 0.297 after 600. The MLP learns a
    9-class staircase of one z coordinate (hair colour) slowly, and under the image loss alone it never did; as a
    plain regression it costs no renders and converges in minutes. `mapping_loss` adds an MSE on the decoded
    features (weight `feature_weight`) to the MSE on W, so weakly encoded attributes weigh as much as strong ones.

    `fit(g)`: the basis is the least-squares fit of g's mapping (8,192 fixed-seed z), so a generator trained jointly
    continues smoothly; `random(style_dim)`: a fixed-seed Gaussian basis for a run from scratch."""

    FIT_SEED = 77
    FIT_SAMPLES = 8192

    def __init__(self, basis: Tensor):
        super().__init__()
        self.register_buffer("basis", basis.float())
        # the one-hot blocks each sum to the constant feature, so the basis has 9 (numerically) zero singular values:
        # a relative cutoff keeps the pseudo-inverse from amplifying them (float32 rounding, ~1e-7) a million-fold
        self.register_buffer("decode", torch.linalg.pinv(basis.double(), rtol=1e-5).float())

    @staticmethod
    def features(params) -> Tensor:
        """[N, N_TEACHER_FEATURES + 1]: param_features, the smile's bin as a one-hot (SMILE_BIN_FEATURES) and a
        constant 1 (the basis's last row is W*'s offset). The bin columns let a teacher give each smile class its own
        direction (`smile_binned`): a frown's curve, a flat mouth and a grin with teeth are three shapes, and style
        modulations, linear in W, draw them poorly from positions along one smile coordinate."""
        f = param_features(params)
        bins = F.one_hot(attribute_class(params, "smile"), SMILE_BIN_FEATURES.stop - SMILE_BIN_FEATURES.start)
        return torch.cat([f, bins.to(f), torch.ones_like(f[:, :1])], 1)

    def of_params(self, params) -> Tensor:
        """W* of renderer parameters (e.g. of a render's, for an encoder's latent loss)."""
        return self.features(params.to("cpu")).to(self.basis) @ self.basis

    @classmethod
    @torch.no_grad()
    def fit(cls, g: Generator) -> FeatureW:
        z = torch.randn(cls.FIT_SAMPLES, g.style_dim, generator=torch.Generator().manual_seed(cls.FIT_SEED))
        w = torch.cat([g.mapping(z[i:i + 1024].to(g.device)).cpu() for i in range(0, len(z), 1024)])
        return cls(torch.linalg.lstsq(cls.features(params_from_z(z)).double(), w.double()).solution)

    @classmethod
    def random(cls, style_dim: int, seed: int = 0) -> FeatureW:
        g = torch.Generator().manual_seed(FeatureW.FIT_SEED + seed)
        return cls(torch.randn(N_TEACHER_FEATURES + 1, style_dim, generator=g) * 3 / (N_TEACHER_FEATURES + 1) ** 0.5)

    def augmented(self, norm: float, seed: int = 0) -> FeatureW:
        """A teacher whose W* adds, for every categorical class, a random direction of length `norm` orthogonal to
        this teacher's span. A synthesis whose modulations read only the old span (`project_modulations`) draws
        the same images from the new W* as from the old, so a run can switch teachers without a jump."""
        return self._with_directions(slice(N_CONTINUOUS, N_FEATURES), norm, FeatureW.FIT_SEED + 1 + seed)

    def _with_directions(self, rows: slice, norm: float, seed: int) -> FeatureW:
        """A teacher whose basis `rows` each gain a random direction of length `norm` orthogonal to this span."""
        n = len(range(*rows.indices(self.basis.shape[0])))
        extra = torch.randn(n, self.basis.shape[1], generator=torch.Generator().manual_seed(seed)).to(self.basis)
        extra = extra - extra @ self.projection()
        basis = self.basis.clone()
        basis[rows] += extra * norm / extra.norm(dim=1, keepdim=True)
        return FeatureW(basis)

    def smile_boosted(self, norm: float, seed: int = 0) -> FeatureW:
        """A teacher whose smile row gains a random direction of length `norm`, orthogonal to this teacher's span
        (as `augmented` does for the categorical classes). The fitted smile row is short (2.35 for leg E's mapping,
        so frowning to smiling moved W by 4.7, where any two classes of a categorical attribute lie 15-18 apart),
        and the synthesis never learnt to draw the mouth's curve from it. Orthogonal, so G(W*) is unchanged until
        training uses the new direction (after `project_modulations`)."""
        return self._with_directions(slice(SMILE_FEATURE, SMILE_FEATURE + 1), norm, FeatureW.FIT_SEED + 2 + seed)

    def smile_binned(self, norm: float, seed: int = 0) -> FeatureW:
        """A teacher whose three smile-bin rows each gain a random direction of length `norm`, orthogonal to this
        teacher's span: W* then moves by about norm * sqrt(2) between any two smile classes, as `augmented` does for
        the categorical classes, and G(W*) is unchanged until training uses the new directions."""
        return self._with_directions(SMILE_BIN_FEATURES, norm, FeatureW.FIT_SEED + 3 + seed)

    def forward(self, z: Tensor) -> Tensor:
        return self.of_params(params_from_z(z.cpu()))

    def projection(self) -> Tensor:
        """[D, D]: the orthogonal projection of W onto the span of the teacher's W* (the basis's row space)."""
        return self.decode @ self.basis

    @torch.no_grad()
    def project_modulations(self, g: Generator) -> None:
        """Make every style modulation read only the span of W*: weight <- weight @ P. G(W*) is unchanged, and the
        part of mapping(z) outside that span (which the synthesis never sees in training) no longer reaches the
        image."""
        p = self.projection()
        for name, weight in g.named_parameters():
            if name.endswith("modulation.weight"):
                weight.copy_(weight @ p)

    @torch.no_grad()
    def report(self, g: Generator, n: int = 4000, seed: int = 9_103) -> dict[str, float]:
        """How well g's mapping reproduces W*: the decoded categorical features' accuracy per attribute and the
        continuous features' mean absolute error (on [-1, 1]), over n held-out z."""
        z = torch.randn(n, g.style_dim, generator=torch.Generator().manual_seed(seed))
        decoded = g.mapping(z.to(g.device)).cpu() @ self.decode.cpu()
        truth = self.features(params_from_z(z))
        out = {"continuous_mae": float((decoded - truth)[:, :N_CONTINUOUS].abs().mean())}
        blocks = decoded[:, N_CONTINUOUS:N_FEATURES].split(CATEGORICAL_SIZES, 1)
        truths = truth[:, N_CONTINUOUS:N_FEATURES].split(CATEGORICAL_SIZES, 1)
        for name, block, labels in zip(CATEGORICAL, blocks, truths):
            out[name] = float((block.argmax(1) == labels.argmax(1)).float().mean())
        return out

    def mapping_loss(self, w: Tensor, z: Tensor, feature_weight: float) -> Tensor:
        d = w - self(z)
        return d.pow(2).mean() + feature_weight * (d @ self.decode).pow(2).mean()


def ema_beta(config, step: int) -> float:
    """rosinality's 0.5 ** (batch / (ema_kimg * 1000)), ramped in over the first steps (warm start)."""
    beta = 0.5 ** (config["batch"] / (config["ema_kimg"] * 1000))
    return min(beta, (1 + step) / (10 + step))


def targets(z: Tensor, device: str | torch.device = "cpu") -> Tensor:
    """The renders the generator must reproduce for z, drawn on `device`."""
    with torch.no_grad():
        return render(params_from_z(z), device=device)


def _init_path(init_from) -> Path | None:
    if init_from in (None, "", False):
        return None
    return WEIGHTS_PATH if init_from == "weights" else Path(init_from)


def trained_scale(g: Generator, path: Path) -> Generator:
    """An exported generator back at the W scale it was trained at (its sidecar's `w_coordinate_std_trained`; the same
    images), so that a further leg's optimiser meets the weights it left; unchanged without a sidecar."""
    sidecar = Path(path).with_suffix(".json")
    trained = json.loads(sidecar.read_text()).get("w_coordinate_std_trained") if sidecar.exists() else None
    return scale_w(g, trained / w_coordinate_std(g)) if trained else g


def build(config) -> training.Trainable:
    g = make_generator(config)
    init = _init_path(config.get("init_from"))
    if init is not None:
        loaded = trained_scale(load_generator(init), init)
        if loaded.channels != g.channels:  # more channels than the weights: widened, drawing the same images
            loaded = widen_generator(loaded, g.channels, seed=config["seed"])
        g.load_state_dict(loaded.state_dict())
    elif config["modulation_init"] != 1.0:
        with torch.no_grad():  # small style modulation at init: every sample starts as the same image
            for name, p in g.named_parameters():
                if name.endswith("modulation.weight"):
                    p.mul_(config["modulation_init"])
    if config["w_target"] not in W_TARGETS:
        raise ValueError(f"w_target must be one of {W_TARGETS}, got {config['w_target']!r}")
    teacher = None
    if config["w_target"] == "features":  # the synthesis draws from W*(z); the mapping regresses it (FeatureW)
        teacher = FeatureW.fit(g) if init is not None else FeatureW.random(config["style_dim"], config["seed"])
        teacher.project_modulations(g)
        if config["w_augment"] > 0:
            teacher = teacher.augmented(config["w_augment"], config["seed"])
            teacher.project_modulations(g)
        if config.get("w_smile_norm", 0) > 0:
            teacher = teacher.smile_boosted(config["w_smile_norm"], config["seed"])
            teacher.project_modulations(g)
        if config.get("w_smile_bins", 0) > 0:
            teacher = teacher.smile_binned(config["w_smile_bins"], config["seed"])
            teacher.project_modulations(g)
    ema = EMA(g)
    mapping = [p for n, p in g.named_parameters() if n.startswith("style.")]
    synthesis = [p for n, p in g.named_parameters() if not n.startswith("style.")]
    groups = [{"params": synthesis, "lr_mult": 1.0},
              {"params": mapping, "lr_mult": float(config["mapping_lr_mult"])}]
    extra: dict = {"g_ema": ema}
    if teacher is not None:
        extra["w_teacher"] = teacher
    aux = None
    if config["aux_weight"] > 0 and teacher is None:  # training-only linear probe w -> parameters (not exported)
        aux = AuxProbe(config["style_dim"])
        groups.append({"params": list(aux.parameters()), "lr_mult": 1.0})
        extra["aux"] = aux
    optimizer = torch.optim.Adam(groups, lr=config["lr"], betas=tuple(config["betas"]))
    mouth_d = None
    if config.get("mouth_gan_weight", 0) > 0:  # training-only, saved in checkpoints with its optimizer
        if teacher is None:
            raise ValueError("mouth_gan_weight needs w_target 'features' (the recipe it was written for)")
        mouth_d = mouth_gan.MouthDiscriminator()
        extra["mouth_d"] = mouth_d
        extra["mouth_d_optimizer"] = torch.optim.Adam(mouth_d.parameters(), lr=config["mouth_gan_lr"],
                                                      betas=(0.0, 0.99))
    training.render_device(config, torch.device("cpu"))  # an unknown render_device fails here, not at step 0
    steps = config["steps"]
    pairs = list(config.get("pair_attributes") or [])
    if pairs:
        if teacher is None:
            raise ValueError("pair_attributes needs w_target 'features' (a pair's W comes from the teacher)")
        teacher_half = config["batch"] - int(round(config["mapping_mix"] * config["batch"]))
        if 2 * config["pair_count"] > teacher_half:
            raise ValueError(f"pair_count {config['pair_count']} x 2 exceeds the batch's teacher part ({teacher_half} "
                             f"of {config['batch']}; mapping_mix {config['mapping_mix']})")
        check_pair_attributes(pairs)  # an unknown attribute fails here, not at step 0

    def step(i: int) -> dict[str, Any]:
        if i == 0 and aux is not None and init is None and config.get("probe_pretrain_steps", 0) > 0:
            probe_pretrain(g, aux, config)
            ema.model.load_state_dict(g.state_dict())
        if i == 0 and teacher is not None and config["mapping_fit_steps"] > 0:
            fit_mapping(g, teacher, config)
            ema.model.load_state_dict(g.state_dict())
        dev = training.device_of(g)
        rng = training.step_generator(config["seed"], i)
        z = torch.randn(config["batch"], config["style_dim"], generator=rng)
        params = params_from_z(z)  # once per step: the render, the read-out and the teacher share it
        if pairs:
            params = minimal_pairs(params, pairs, config["pair_count"], rng)
        with torch.no_grad():
            hair = None
            if config.get("hair_colour_weight", 0) > 0 or config.get("hair_weight", 0) > 0:
                real, masks = render_with_masks(params, device=training.render_device(config, dev))
                real, hair = real.to(dev), (masks["hair"] * (1 - masks["hat"])).to(dev)  # a hat covers the hair
            else:
                real = render(params, device=training.render_device(config, dev)).to(dev)
            weight = None
            if config["region_weight"] > 0 or config.get("mouth_weight"):
                weight = region_weights(params, real.shape[-1], config["region_weight"], config["region_sigma"], dev,
                                        config.get("mouth_weight"))
            if config.get("hair_weight", 0) > 0:
                weight = hair_weights(hair, config["hair_weight"], weight)
            if not config.get("hair_colour_weight", 0) > 0:
                hair = None  # the masks were rendered for the pixel weight only
        lr = lr_at(config, i, steps)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_mult"]
        parts: dict[str, Tensor] = {}
        if teacher is None:
            w = g.mapping(z.to(dev))
            fake = g(w)
            loss, parts = distillation_loss(fake, real, config["edge_weight"], weight)
            if aux is not None:
                aux_loss = aux.loss(w, params.to(dev))
                loss = loss + config["aux_weight"] * aux_loss
                parts["aux"] = aux_loss.detach()
        else:
            w = teacher.of_params(params).to(dev)
            n_mapped = int(round(config["mapping_mix"] * len(z)))
            if n_mapped:
                with torch.no_grad():
                    w[len(z) - n_mapped:] = g.mapping(z[len(z) - n_mapped:].to(dev))
            fake = g(w)
            loss, parts = distillation_loss(fake, real, config["edge_weight"], weight)
            if mouth_d is not None:
                smile = mouth_gan.smile_classes(params).to(dev)
                fake_crops, real_crops = mouth_gan.mouth_crops(fake, params), mouth_gan.mouth_crops(real, params)
                if config.get("mouth_gan_centre"):
                    fake_crops, real_crops = mouth_gan.centred(fake_crops), mouth_gan.centred(real_crops)
                parts["mouth_g"] = mouth_gan.generator_loss(mouth_d, fake_crops, smile)
                loss = loss + config["mouth_gan_weight"] * parts["mouth_g"]
                parts["mouth_g"] = parts["mouth_g"].detach()
            if pairs:
                parts["pair"] = pair_loss(fake, real, config["pair_count"])
                loss = loss + config["pair_weight"] * parts["pair"]
                parts["pair"] = parts["pair"].detach()
            zm = torch.randn(config["mapping_fit_batch"], config["style_dim"], generator=rng)
            map_loss = teacher.mapping_loss(g.mapping(zm.to(dev)), zm, config["mapping_feature_weight"])
            loss = loss + map_loss
            parts["mapping"] = map_loss.detach()
        if hair is not None:
            parts["hair_colour"] = hair_colour_loss(fake, real, hair)
            loss = loss + config["hair_colour_weight"] * parts["hair_colour"]
            parts["hair_colour"] = parts["hair_colour"].detach()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if mouth_d is not None:  # the discriminator's step (its gradients from the generator's loss are dropped)
            d_optimizer = extra["mouth_d_optimizer"]
            d_optimizer.zero_grad(set_to_none=True)
            d_loss, d_parts = mouth_gan.discriminator_loss(mouth_d, real_crops, fake_crops, smile,
                                                           config["mouth_gan_r1"])
            d_loss.backward()
            d_optimizer.step()
            parts.update(mouth_d=d_loss.detach(), **d_parts)
        if teacher is not None:
            teacher.project_modulations(g)
        ema.update(g, ema_beta(config, i))
        return {"loss": loss.detach(), **parts, "lr": lr}  # tensors: the trainer reads them when it logs

    return training.Trainable(NAME, g, optimizer, step, dict(config), extra_state=extra)


def probe_pretrain(g: Generator, aux: AuxProbe, config) -> float:
    """Teach the mapping network a W that linearly encodes every renderer parameter before any image is drawn:
    mapping + read-out alone on `probe_pretrain_steps` batches of z (no synthesis, ~20 s for 1,500 steps on one
    thread). Without it the image loss alone taught W only the background and skin tone (cards/generator.md).
    Returns the final read-out loss (chance ~1.45)."""
    mapping = [p for n, p in g.named_parameters() if n.startswith("style.")]
    lr = config["probe_pretrain_lr"]
    opt = torch.optim.Adam([{"params": mapping, "lr": lr * config["mapping_lr_mult"]},
                            {"params": list(aux.parameters()), "lr": 10 * lr}])
    rng = torch.Generator().manual_seed(config["seed"] + 0x9B0)
    loss = torch.zeros(())
    for _ in tqdm(range(config["probe_pretrain_steps"]), desc="generator: W read-out pretraining", leave=False):
        z = torch.randn(config["probe_pretrain_batch"], config["style_dim"], generator=rng)
        loss = aux.loss(g.mapping(z.to(training.device_of(g))), params_from_z(z).to(training.device_of(g)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    print(f"generator: W read-out pretraining done, read-out loss {loss.item():.3f} (chance ~1.45)", flush=True)
    return loss.item()


def fit_mapping(g: Generator, teacher: FeatureW, config) -> float:
    """The "features" recipe's first stage: the mapping network alone regresses the teacher's W*(z)
    (`mapping_fit_steps` batches of `mapping_fit_batch` z, Adam, cosine decay; no renders, ~18 ms a step on one
    CPU thread). Returns the final loss."""
    mapping = [p for n, p in g.named_parameters() if n.startswith("style.")]
    lr = config["mapping_fit_lr"] * config["mapping_lr_mult"]
    opt = torch.optim.Adam(mapping, lr=lr, betas=tuple(config["betas"]))
    rng = torch.Generator().manual_seed(config["seed"] + 0x3A9)
    steps, loss = config["mapping_fit_steps"], torch.zeros(())
    for i in tqdm(range(steps), desc="generator: mapping regression onto W*", leave=False):
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (i + 1) / 100) * 0.5 * (1 + math.cos(math.pi * i / steps))
        z = torch.randn(config["mapping_fit_batch"], config["style_dim"], generator=rng)
        loss = teacher.mapping_loss(g.mapping(z.to(training.device_of(g))), z, config["mapping_feature_weight"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    report = {k: round(v, 4) for k, v in teacher.report(g).items()}
    print(f"generator: mapping regression onto W* done, loss {loss.item():.4f}; decoded W: {report}", flush=True)
    return loss.item()


def lr_at(config, step: int, steps: int) -> float:
    warmup, lr = config["warmup"], config["lr"]
    if step < warmup:
        return lr * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, steps - warmup))
    final = config["final_lr"]
    return lr * (final + (1 - final) * 0.5 * (1 + math.cos(math.pi * t)))


# ---------------------------------------------------------------------------------------------- export / load
@torch.no_grad()
def compute_latent_avg(g: Generator, n: int = LATENT_AVG_SAMPLES) -> Tensor:
    z = torch.randn(n, g.style_dim, generator=torch.Generator().manual_seed(LATENT_AVG_SEED))
    return torch.cat([g.mapping(z[i:i + 1024]) for i in range(0, n, 1024)]).mean(0)


def export_generator(g_ema: Generator, config, weights_dir: Path = training.WEIGHTS_DIR) -> Path:
    """`<weights_dir>/generator.safetensors` (g_ema state dict + latent_avg, float32; loads through
    `zoo.stylegan2.load_generator` unchanged) and the JSON sidecar. W is standardised on the way (`standardise_w`:
    coordinate std 1, the same images); the sidecar records the trained scale."""
    weights_dir = Path(weights_dir)
    # W rescaled to coordinate std 1, the scale the methods' absolute defaults assume (zoo/stylegan2/w_scale.py)
    g_ema, factor = standardise_w(g_ema.eval())
    latent_avg = compute_latent_avg(g_ema)
    path = save_generator(g_ema, weights_dir / f"{NAME}.safetensors", latent_avg=latent_avg)
    sidecar = dict(config)
    sidecar["w_coordinate_std_trained"] = round(1.0 / factor, 6)  # the factor is its inverse
    sidecar.update({"architecture": {k: v for k, v in g_ema.config().items()},
                    "parameters": sum(p.numel() for p in g_ema.parameters()),
                    "latent_avg_samples": LATENT_AVG_SAMPLES, "format": "rosinality g_ema state dict + latent_avg",
                    "z_to_params": "zoo.synthface.latent_params.params_from_z"})
    sidecar["architecture"]["channels"] = {str(k): v for k, v in sidecar["architecture"]["channels"].items()}
    sidecar["architecture"]["channel_multiplier"] = None  # unused: the channel table is given explicitly
    (weights_dir / f"{NAME}.json").write_text(json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
    return path


def export(trainable: training.Trainable, weights_dir: Path = training.WEIGHTS_DIR) -> Path:
    return export_generator(trainable.extra_state["g_ema"].model, trainable.config, weights_dir)


FACE_LAYOUT = ARCFACE_LAYOUT  # the renderer draws faces where the ArcFace 5-point template puts them


def load(device: str = "cpu", weights_dir: Path = training.WEIGHTS_DIR) -> Generator:
    """The exported synthetic generator (eval mode, frozen, with latent_avg) via `zoo.stylegan2.load_generator`,
    marked with its `face_layout` (identity judges read it to crop, `metrics.identity`)."""
    generator = load_generator(Path(weights_dir) / f"{NAME}.safetensors", device=device).requires_grad_(False)
    generator.face_layout = FACE_LAYOUT
    return generator


# ---------------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def pixel_l1(g: Generator, n: int = 500, seed: int = EVAL_L1_SEED, batch: int = 100) -> float:
    """Mean |G(z) - render(params_from_z(z))| over n held-out z (images in [-1, 1])."""
    z = torch.randn(n, g.style_dim, generator=torch.Generator().manual_seed(seed))
    total = 0.0
    for i in range(0, n, batch):
        zi = z[i:i + batch].to(g.device)
        total += float((g(zi, input_space="z").cpu() - targets(zi.cpu())).abs().mean()) * len(zi)
    return total / n


def renderer_frequencies() -> dict[str, list[float]]:
    """Per attribute, the renderer's class frequencies (smile: the probabilities of its bins under uniform)."""
    out = {}
    for name, spec in ATTRIBUTE_SPECS.items():
        if spec.continuous:
            lo, hi = SMILE_BINS
            out[name] = [(lo + 1) / 2, (hi - lo) / 2, (1 - hi) / 2]
        else:
            p = spec.probs if spec.probs else [1.0] * len(spec.values)
            out[name] = [x / sum(p) for x in p]
    return out


@torch.no_grad()
def coverage(g: Generator, judge, n: int = EVAL_SAMPLES, seed: int = EVAL_COVERAGE_SEED, truncation: float = 1.0,
             batch: int = 250) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Judge-predicted class frequencies on n samples, and the judge's agreement with params_from_z's labels."""
    z = torch.randn(n, g.style_dim, generator=torch.Generator().manual_seed(seed))
    preds: dict[str, list[Tensor]] = {k: [] for k in ATTRIBUTE_SPECS}
    for i in range(0, n, batch):
        zi = z[i:i + batch].to(g.device)
        p = judge.predict(g(zi, input_space="z", truncation=truncation).clamp(-1, 1))
        for k in preds:
            preds[k].append(p[k].cpu())
    labels = params_from_z(z).labels()
    freqs, agree = {}, {}
    for name, spec in ATTRIBUTE_SPECS.items():
        pred = torch.cat(preds[name])
        freqs[name] = (torch.bincount(pred, minlength=len(spec.values)).float() / n).tolist()
        agree[name] = float((pred == labels[name]).float().mean())
    return freqs, agree


def gates(device: str = "cpu", weights_dir: Path = training.WEIGHTS_DIR, seed: int = EVAL_COVERAGE_SEED
          ) -> list[dict]:
    """The gates: pixel L1 (info) and coverage on the 2,000 z of `seed` (other seeds: tools/gate_draws.py)."""
    g = load(device, weights_dir)
    results = []
    l1 = pixel_l1(g)
    results.append({"name": "pixel L1 |G(z) - render(params_from_z(z))|, 500 held-out z (info)", "value": l1,
                    "threshold": "info", "passed": True})
    from zoo.synthface.train_attributes import attribute_judge_or_none
    judge = attribute_judge_or_none(device, "attribute-coverage gate")
    if judge is None:
        return results
    freqs, agree = coverage(g, judge, seed=seed)
    expected = renderer_frequencies()
    for name, spec in ATTRIBUTE_SPECS.items():
        ratios = [f / e for f, e in zip(freqs[name], expected[name])]
        worst = min(range(len(ratios)), key=lambda j: ratios[j])
        results.append({"name": f"{name}: lowest judge frequency / renderer frequency ({spec.values[worst]}), "
                                f"{EVAL_SAMPLES} samples, truncation 1", "value": ratios[worst],
                        "threshold": ">= 0.5", "passed": ratios[worst] >= 0.5})
    for name in ATTRIBUTE_SPECS:
        results.append({"name": f"{name}: judge(G(z)) == label of params_from_z(z) (info)", "value": agree[name],
                        "threshold": "info", "passed": True})
    return results


# ---------------------------------------------------------------------------------------------- helpers
def g_ema_from_checkpoint(path: Path = training.DEFAULT_RUN_DIR / NAME / "last.pt") -> tuple[Generator, dict, int]:
    """(g_ema, config, step) from a training checkpoint (e.g. to export a run that was stopped early)."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    g = make_generator(state["config"])
    g.load_state_dict({k.removeprefix("model."): v for k, v in state["extra"]["g_ema"].items()})
    return g.eval(), state["config"], state["step"]


@torch.no_grad()
def sample_sheet(g: Generator, path: Path, n: int = 10, rows: int = 3, seed: int = 2024, scale: int = 2) -> Path:
    """A PNG: `rows` pairs of rows, generator samples G(z) above the renders of params_from_z(z) (nearest x scale)."""
    from torchvision.utils import save_image
    z = torch.randn(n * rows, g.style_dim, generator=torch.Generator().manual_seed(seed))
    fake = g(z.to(g.device), input_space="z").cpu().clamp(-1, 1)
    real = targets(z)
    grid = torch.cat([torch.cat([fake[r * n:(r + 1) * n], real[r * n:(r + 1) * n]]) for r in range(rows)])
    grid = F.interpolate(grid * 0.5 + 0.5, scale_factor=scale, mode="nearest")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, str(path), nrow=n, padding=2, pad_value=1.0)
    return path
