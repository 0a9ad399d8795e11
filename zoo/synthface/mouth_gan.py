"""A conditional patch discriminator on the mouth, beside the generator's distillation loss (pix2pix's recipe: L1
keeps each image on its target, an adversarial term on patches removes the blur that L1 settles for).

Why (cards/generator.md, 2026-11-28): G draws the mouth as the same flat blurred line for a frown, a neutral mouth
and a grin with teeth; the mouth's loss weight x17 did not change that. Between smile -0.9 and +0.9, G(W*) changed
110 pixels by more than 0.1 (the renderer 84), but spread over edges all over the face, not at the mouth. An L1
regression that cannot place the curve exactly draws the mean mouth; a discriminator that sees 16 x 16 crops around
the mouth, told the smile bin (projection discriminator, Miyato & Koyama 2018), scores a flat mouth labelled
"smiling" as fake wherever the renders of that bin show a curve and teeth.

The discriminator is training-only (saved in the trainer's checkpoints, never exported). Losses: the non-saturating
logistic loss for both players, and R1 on the real crops (StyleGAN2's regulariser) for the discriminator.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.synthface.params import attribute_class
from zoo.synthface.render import landmarks

CROP = 16  # pixels of a 64 x 64 image: the mouth, the lips' corners and the chin's top


def mouth_crops(images: Tensor, params, crop: int = CROP) -> Tensor:
    """[N, C, crop, crop] around each face's mouth landmark, shifted inside the image where it would leave it.
    Differentiable in `images` (plain indexing)."""
    n, _, height, width = images.shape
    centre = landmarks(params, width)["mouth"].round().long().to(images.device)
    x0 = (centre[:, 0] - crop // 2).clamp(0, width - crop)
    y0 = (centre[:, 1] - crop // 2).clamp(0, height - crop)
    offsets = torch.arange(crop, device=images.device)
    rows = (y0[:, None] + offsets)[:, :, None]  # [N, crop, 1]
    cols = (x0[:, None] + offsets)[:, None, :]  # [N, 1, crop]
    batch = torch.arange(n, device=images.device)[:, None, None]
    return images.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def centred(crops: Tensor) -> Tensor:
    """Each crop minus its own mean colour: a discriminator that sees these judges the mouth's shape and contrast,
    not its colours, which stay the distillation loss's job (with raw crops, legs m and n of 2026-11-28 drew the
    smile but shifted blond and grey hair towards brown and red: cards/generator.md)."""
    return crops - crops.mean((2, 3), keepdim=True)


def smile_classes(params) -> Tensor:
    """The smile bin (frowning / neutral / smiling) each crop is judged against."""
    return attribute_class(params, "smile")


class MouthDiscriminator(nn.Module):
    """Crops [N, 3, 16, 16] and classes [N] -> logits [N]: a small conv net, then a linear score plus the
    projection of its features on the class embedding."""

    def __init__(self, n_classes: int = 3, width: int = 32):
        super().__init__()
        act = nn.LeakyReLU(0.2)
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), act,
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), act,  # 8 x 8
            nn.Conv2d(2 * width, 2 * width, 4, stride=2, padding=1), act,  # 4 x 4
            nn.Flatten(), nn.Linear(2 * width * 16, 4 * width), act)
        self.score = nn.Linear(4 * width, 1)
        self.embed = nn.Embedding(n_classes, 4 * width)
        nn.init.zeros_(self.embed.weight)  # starts unconditional; the projection is learnt

    def forward(self, crops: Tensor, classes: Tensor) -> Tensor:
        h = self.features(crops)
        return self.score(h).squeeze(1) + (self.embed(classes) * h).sum(1)


def generator_loss(d: MouthDiscriminator, fake_crops: Tensor, classes: Tensor) -> Tensor:
    """Non-saturating: softplus(-D(fake)). The discriminator's own gradients from this are discarded (its step
    zeroes them first)."""
    return F.softplus(-d(fake_crops, classes)).mean()


def discriminator_loss(d: MouthDiscriminator, real_crops: Tensor, fake_crops: Tensor, classes: Tensor,
                       r1_gamma: float) -> tuple[Tensor, dict[str, Tensor]]:
    """softplus(D(fake)) + softplus(-D(real)) + r1_gamma / 2 * E|grad_real D|^2, and the parts (detached)."""
    real = real_crops.detach().requires_grad_(r1_gamma > 0)
    real_logits = d(real, classes)
    fake_logits = d(fake_crops.detach(), classes)
    loss = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
    parts = {"d_real": torch.sigmoid(real_logits).mean().detach(), "d_fake": torch.sigmoid(fake_logits).mean().detach()}
    if r1_gamma > 0:
        (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
        r1 = grad.square().sum((1, 2, 3)).mean()
        loss = loss + r1_gamma / 2 * r1
        parts["r1"] = r1.detach()
    return loss, parts
